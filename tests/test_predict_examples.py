"""examples/: the structures are what make_examples.py writes, in the space groups they claim."""

from __future__ import annotations

import importlib.util
import json
import sys
from pathlib import Path

import pytest

from hopnet.structures import read_structure

EXAMPLES = Path(__file__).resolve().parents[1] / "examples"


def _script():
    spec = importlib.util.spec_from_file_location("make_examples", EXAMPLES / "make_examples.py")
    mod = importlib.util.module_from_spec(spec)
    sys.modules.setdefault("make_examples", mod)  # dataclasses look their module up there
    spec.loader.exec_module(mod)
    return mod


def _approx(value):
    """``value`` with every float replaced by ``pytest.approx`` at one unit of the 4th decimal."""
    if isinstance(value, dict):
        return {k: _approx(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_approx(v) for v in value]
    return pytest.approx(value, abs=1.01e-4) if isinstance(value, float) else value


def test_script_regenerates_the_committed_files(tmp_path: Path) -> None:
    assert _script().main(["--out", str(tmp_path)]) == 0
    index = json.loads((tmp_path / "index.json").read_text())
    # numbers to their last written digit: a length at a rounding boundary (Na3PS4's hop,
    # 3.49825 Å) flips with the last bits of pymatgen's distance between releases
    assert index == _approx(json.loads((EXAMPLES / "index.json").read_text()))
    for e in index:
        assert (tmp_path / e["file"]).read_text() == (EXAMPLES / e["file"]).read_text(), e["file"]


@pytest.mark.parametrize("entry", json.loads((EXAMPLES / "index.json").read_text()), ids=lambda e: e["name"])
def test_example_symmetry_and_hop(entry: dict) -> None:
    from pymatgen.symmetry.analyzer import SpacegroupAnalyzer

    s = read_structure(EXAMPLES / entry["file"])
    assert len(s) == entry["n_atoms"]
    assert s.composition.reduced_formula == entry["formula"]
    assert SpacegroupAnalyzer(s, symprec=1e-3).get_space_group_symbol() == entry["spacegroup"]
    hop = entry["hop"]
    assert s[0].specie.symbol == entry["ion"] == s[hop["to"]].specie.symbol
    assert s.get_distance(0, hop["to"]) == pytest.approx(hop["length_a"], abs=1e-3)
