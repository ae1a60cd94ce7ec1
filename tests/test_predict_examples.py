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


def test_script_regenerates_the_committed_files(tmp_path: Path) -> None:
    assert _script().main(["--out", str(tmp_path)]) == 0
    index = json.loads((tmp_path / "index.json").read_text())
    assert index == json.loads((EXAMPLES / "index.json").read_text())
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
