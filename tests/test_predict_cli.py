"""``hopnet predict``: output, band files, and one clear line for every kind of bad input."""

from __future__ import annotations

import gzip
import json
import shutil
from pathlib import Path

import pytest

from hopnet.cli import main

EXAMPLES = Path(__file__).resolve().parents[1] / "examples"
LFP = str(EXAMPLES / "LiFePO4_olivine.cif")


def _run(argv: list[str], capsys: pytest.CaptureFixture) -> tuple[int, str, str]:
    rc = main(["predict", *argv])
    cap = capsys.readouterr()
    return rc, cap.out, cap.err


def test_text_output(capsys: pytest.CaptureFixture) -> None:
    rc, out, err = _run([LFP, "--ion", "Li", "--from", "0", "--to", "4"], capsys)
    assert rc == 0 and err == ""
    assert "Li hop 3.00 Å in Li7Fe8(PO4)8 (110 host atoms)" in out
    assert "E_m = " in out and " ± " in out and "conductor (E_m" in out and "0.65 eV" in out


def test_json_output_file_and_threshold(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    out_file = tmp_path / "r.json"
    rc, out, _ = _run([LFP, "--ion", "Li", "--from", "0", "--to", "4", "--json", "--output", str(out_file)], capsys)
    assert rc == 0
    d = json.loads(out)
    assert json.loads(out_file.read_text()) == d
    assert d["ion"] == "Li" and d["model"] == "default" and d["threshold_ev"] == 0.65
    assert d["conductor_class"] == ("good" if d["barrier_ev"] < 0.65 else "poor")
    rc, out, _ = _run([LFP, "--ion", "Li", "--from", "0", "--to", "4", "--json",
                       "--threshold", str(d["barrier_ev"] - 0.01)], capsys)
    assert json.loads(out)["conductor_class"] == "poor"


def test_fractional_end_points(capsys: pytest.CaptureFixture) -> None:
    from pymatgen.core import Structure

    s = Structure.from_file(LFP)
    a, b = (" ".join(map(str, s.frac_coords[i])) for i in (0, 4))
    rc, out, _ = _run([LFP, "--ion", "Li", "--from-frac", *a.split(), "--to-frac", *b.split(), "--json"], capsys)
    rc2, out2, _ = _run([LFP, "--ion", "Li", "--from", "0", "--to", "4", "--json"], capsys)
    assert rc == rc2 == 0
    assert json.loads(out)["barrier_ev"] == json.loads(out2)["barrier_ev"]


def test_band_file_is_accepted_directly(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    from hopnet.inference import predict
    from hopnet.structures import to_jarvis

    ref = predict(LFP, "Li", 0, 4)
    entry = {"sys_name": "LFP_b", "target": 0.27, "atoms": to_jarvis(ref.path.band())}
    one = tmp_path / "band.json"
    one.write_text(json.dumps(entry))
    rc, out, _ = _run([str(one), "--json"], capsys)
    assert rc == 0
    d = json.loads(out)
    assert d["barrier_ev"] == pytest.approx(ref.barrier, abs=1e-9)
    assert d["label"] == "LFP_b" and d["reference_ev"] == 0.27
    many = tmp_path / "bands.json.gz"
    with gzip.open(many, "wt") as fh:
        json.dump([entry, {**entry, "sys_name": "again"}], fh)
    rc, out, _ = _run([str(many)], capsys)
    assert rc == 0 and "LFP_b: Li hop" in out and "again: Li hop" in out and "[reference 0.270 eV]" in out


def test_dataset_band_file(band_entries: list[dict], tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    f = tmp_path / "band.json"
    f.write_text(json.dumps(band_entries[0]))
    rc, out, _ = _run([str(f), "--json"], capsys)
    assert rc == 0
    d = json.loads(out)
    assert d["label"] == band_entries[0]["sys_name"] and d["reference_ev"] == band_entries[0]["target"]


def test_long_hop_warns_but_predicts(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    out_file = tmp_path / "r.json"
    rc, out, err = _run([LFP, "--ion", "Li", "--from-frac", "0", "0", "0", "--to-frac", "0.5", "0.5", "0.5",
                         "--output", str(out_file)], capsys)
    assert rc == 0 and "E_m = " in out
    lines = err.strip().splitlines()
    assert len(lines) == 1
    assert lines[0].startswith("hopnet: warning: out of domain: hop length 9.21 Å is longer than the "
                               "training range 1.5-9.0 Å")
    assert json.loads(out_file.read_text())["warnings"]


def _old_model(tmp_path: Path) -> str:
    from hopnet.models.folder import shipped_models

    folder = tmp_path / "old_model"
    shutil.copytree(shipped_models()["default"], folder)
    meta = json.loads((folder / "metadata.json").read_text())
    meta["format_version"] = 0
    (folder / "metadata.json").write_text(json.dumps(meta))
    return str(folder)


def _overlapping(tmp_path: Path) -> str:
    from pymatgen.core import Structure

    s = Structure.from_file(LFP)
    s.append("O", s[20].coords + [0.3, 0.0, 0.0], coords_are_cartesian=True)
    path = tmp_path / "overlap.vasp"
    from hopnet.structures import write_structure

    write_structure(s, path)
    return str(path)


HOP = ["--ion", "Li", "--from", "0", "--to", "4"]
BAD = {
    "unparsable": (lambda t: (t / "junk.cif").write_text("this is not a crystal\n") and str(t / "junk.cif"),
                   HOP, "cannot read structure from"),
    "missing file": (lambda t: str(t / "nothing.cif"), HOP, "file not found"),
    "bad json": (lambda t: (t / "b.json").write_text("{oops") and str(t / "b.json"), [], "not valid JSON"),
    "unknown ion": (lambda t: LFP, ["--ion", "Xx", "--from", "0", "--to", "4"], "unknown ion 'Xx'"),
    "absent ion": (lambda t: LFP, ["--ion", "Na", "--from", "0", "--to", "4"], "ion Na is absent"),
    "no ion": (lambda t: LFP, ["--from", "0", "--to", "4"], "--ion is required"),
    "same site": (lambda t: LFP, ["--ion", "Li", "--from", "3", "--to", "3"], "--from and --to are the same site"),
    "out of range": (lambda t: LFP, ["--ion", "Li", "--from", "0", "--to", "500"], "out of range (structure has 112 atoms)"),
    "not the ion": (lambda t: LFP, ["--ion", "Li", "--from", "0", "--to", "50"], "site 50 is"),
    "one end": (lambda t: LFP, ["--ion", "Li", "--from", "0"], "give both ends"),
    "both kinds": (lambda t: LFP, ["--ion", "Li", "--from", "0", "--from-frac", "0", "0", "0", "--to", "4"],
                   "not both"),
    "not a band": (lambda t: LFP, ["--ion", "Li"], "no hop given: add --from I --to J"),
    "overlap": (_overlapping, HOP, "overlapping atoms"),
    "too big": (lambda t: LFP, [*HOP, "--max-atoms", "100"], "cell has 112 atoms, over the limit of 100"),
    "old model": (lambda t: LFP, HOP, "model format version 0, this hopnet reads versions 1, 2"),
    "no model": (lambda t: LFP, [*HOP, "--model", "no-such-model"], "neither a shipped model"),
}


@pytest.mark.parametrize("case", list(BAD))
def test_bad_input_one_line_nonzero_no_file(case: str, tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    make, argv, words = BAD[case]
    structure = make(tmp_path)
    if case == "old model":
        argv = [*argv, "--model", _old_model(tmp_path)]
    out_file = tmp_path / "result.json"
    rc, out, err = _run([structure, *argv, "--output", str(out_file)], capsys)
    assert rc != 0
    assert out == ""
    lines = err.strip().splitlines()
    assert len(lines) == 1, err
    assert lines[0].startswith("hopnet: error: ") and words in lines[0], lines[0]
    assert not out_file.exists()
    assert not list(tmp_path.glob(".result.json*"))  # no temporary file left behind either
