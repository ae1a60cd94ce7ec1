"""Bad input at the edges of the command line: one ``hopnet: error:`` line naming the problem,
exit status 2, nothing half-written (the cases of the screening-you-can-trust issue)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from hopnet.cli import main

ROOT = Path(__file__).resolve().parents[1]
OLIVINE = str(ROOT / "examples" / "LiFePO4_olivine.cif")


def _one_error(capsys) -> str:
    err = [ln for ln in capsys.readouterr().err.splitlines() if ln.strip()]
    assert len(err) == 1 and err[0].startswith("hopnet: error: "), err
    return err[0]


def _files(folder: Path) -> list[str]:
    return sorted(str(p.relative_to(folder)) for p in folder.rglob("*"))


def test_predict_output_that_is_a_folder(tmp_path, capsys):
    before = _files(tmp_path)
    rc = main(["predict", OLIVINE, "--ion", "Li", "--from", "0", "--to", "4", "--output", str(tmp_path)])
    line = _one_error(capsys)
    assert rc == 2 and "--output" in line and "is a folder" in line
    assert _files(tmp_path) == before


@pytest.mark.parametrize("value", ["-1", "0", "nan", "inf"])
@pytest.mark.parametrize("command", [
    ["predict", OLIVINE, "--ion", "Li", "--from", "0", "--to", "4"],
    ["screen", OLIVINE, "--ion", "Li"],
])
def test_threshold_must_be_a_positive_number(command, value, capsys):
    assert main([*command, "--threshold", value]) == 2
    assert "--threshold must be a positive number of eV" in _one_error(capsys)


def test_evaluate_threshold_checked_before_any_work(capsys):
    assert main(["evaluate", "--model", "default", "--data", "no-such-file.json", "--threshold", "0"]) == 2
    assert "--threshold" in _one_error(capsys)


def test_train_lr_nan_leaves_nothing(tmp_path, capsys):
    out = tmp_path / "m"
    rc = main(["train", "--data", str(tmp_path / "whatever.json"), "--small", "--epochs", "1", "--lr", "nan",
               "--out", str(out)])
    assert rc == 2 and "training.lr must be a positive number" in _one_error(capsys)
    assert not out.exists()


def test_train_out_that_is_a_file_is_refused(tmp_path, capsys):
    target = tmp_path / "precious.txt"
    target.write_text("the user's file\n")
    rc = main(["train", "--model", "classical", "--data", "migration-barriers", "--out", str(target)])
    assert rc == 2 and "is a file, not a folder" in _one_error(capsys)
    assert target.read_text() == "the user's file\n" and _files(tmp_path) == ["precious.txt"]


def test_finetune_binary_csv(tmp_path, capsys):
    data = tmp_path / "binary.csv"
    data.write_bytes(bytes(range(256)) * 4)
    rc = main(["finetune", "--from", "mpt", "--data", str(data), "--out", str(tmp_path / "ft")])
    assert rc == 2 and "not a text CSV file" in _one_error(capsys)
    assert not (tmp_path / "ft").exists()


def test_evaluate_says_when_the_paths_were_in_training(data_dir, tmp_path, band_entries, capsys):
    """The shipped default was trained on all 559 paths: an evaluation on (some of) them is
    in-sample, and the command and the report say so."""
    few = tmp_path / "few.json"
    few.write_text(json.dumps(band_entries[:12]))
    out = tmp_path / "r.json"
    assert main(["evaluate", "--model", "default", "--data", str(few), "--output", str(out)]) == 0
    err = capsys.readouterr().err
    assert "all 12 evaluated paths were in the model's training set" in err and "in-sample" in err
    seen = json.loads(out.read_text())["in_training_set"]
    assert seen["n"] == seen["of"] == 12
