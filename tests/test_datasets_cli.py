"""``hopnet datasets`` through :func:`hopnet.cli.main`."""

from __future__ import annotations

import gzip
import json
from pathlib import Path

import numpy as np
import pytest

from hopnet.cli import main


def band(sys_name: str, cls: str, ion: str, target: float, seed: int) -> dict:
    elements = [ion] * 6 + ["Mn"] * 4 + ["O"] * 8
    coords = np.random.default_rng(seed).random((len(elements), 3)).round(6).tolist()
    return {"sys_name": sys_name, "class": cls, "target": target,
            "atoms": {"lattice_mat": [[8.0, 0, 0], [0, 8.0, 0], [0, 0, 8.0]], "coords": coords,
                      "elements": elements, "cartesian": False}}


@pytest.fixture
def tiny_data_dir(tmp_path, monkeypatch) -> Path:
    """A data dir holding only a 20-path migration file; empty cache; no network fall-back."""
    d = tmp_path / "data"
    (d / "migration").mkdir(parents=True)
    recs = [band(f"LiMnO2_{i}", "LAYERED", "Li", 0.1 * (i + 1), i) for i in range(10)]
    recs += [band(f"NaMnO2_{i}", "SPINEL", "Na", 1.0 + 0.1 * i, 50 + i) for i in range(10)]
    (d / "migration" / "band_train.json.gz").write_bytes(gzip.compress(json.dumps(recs).encode()))
    monkeypatch.setenv("HOPNET_DATA_DIR", str(d))
    monkeypatch.setenv("HOPNET_CACHE_DIR", str(tmp_path / "cache"))
    monkeypatch.setenv("HOPNET_OFFLINE", "1")
    monkeypatch.delenv("HOPNET_DATA_URL", raising=False)
    return d


def test_list_table(tiny_data_dir, capsys):
    assert main(["datasets"]) == 0
    captured = capsys.readouterr()
    out = captured.out.splitlines()
    assert "not available: set HOPNET_DATA_DIR" in captured.err  # what to do about the missing sets
    assert out[0].split()[:3] == ["name", "entries", "source"]
    rows = {line.split()[0]: line for line in out[1:]}
    assert set(rows) == {"migration-barriers", "fe", "bg", "gv", "ph", "dc", "pz", "ebg", "jarvis2d"}
    assert "HOPNET_DATA_DIR" in rows["migration-barriers"] and "not available" in rows["fe"]
    assert rows["fe"].split()[1] == "8741"


def test_list_json(tiny_data_dir, capsys, tmp_path):
    assert main(["datasets", "list", "--json"]) == 0
    rows = {r["name"]: r for r in json.loads(capsys.readouterr().out)}
    assert rows["migration-barriers"]["source"] == "HOPNET_DATA_DIR"
    assert rows["migration-barriers"]["file"].endswith("band_train.json.gz")
    assert rows["jarvis2d"]["source"] == "not available" and rows["jarvis2d"]["file"] is None
    # --data-dir given before the action is kept
    assert main(["datasets", "--data-dir", str(tmp_path / "nowhere"), "--json"]) == 0
    rows = {r["name"]: r for r in json.loads(capsys.readouterr().out)}
    assert rows["migration-barriers"]["source"] == "not available"


def test_info_json(tiny_data_dir, capsys):
    assert main(["datasets", "info", "migration-barriers", "--json"]) == 0
    info = json.loads(capsys.readouterr().out)
    assert info["entries"] == 20 and info["source"] == "HOPNET_DATA_DIR"
    assert info["target"]["min"] == pytest.approx(0.1) and info["target"]["max"] == pytest.approx(1.9)
    assert info["target"]["mean"] == pytest.approx(1.0)
    assert info["split"] == {"seed": 0, "train": 18, "test": 2}
    assert info["classes"] == {"LAYERED": 10, "SPINEL": 10} and info["ions"] == {"Li": 10, "Na": 10}
    assert info["compounds"] == 2
    assert info["grouped_kfold"]["error"].startswith("cannot make 5 folds from 2 groups")
    assert main(["datasets", "info", "migration-barriers", "--folds", "2", "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["grouped_kfold"]["test_sizes"] == [10, 10]


def test_info_text_and_path(tiny_data_dir, capsys):
    f = tiny_data_dir / "migration" / "band_train.json.gz"
    assert main(["datasets", "info", str(f), "--seed", "3"]) == 0
    out = capsys.readouterr().out
    assert "band_train: 20 entries (migration-barrier), from path" in out
    assert "train 18  test 2  (seed 3)" in out


def test_errors_exit_2_one_line(tiny_data_dir, capsys):
    assert main(["datasets", "info", "nope"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("hopnet: error: unknown data set 'nope'") and "\n" not in err
    assert main(["datasets", "info", "fe"]) == 2  # not in the data dir, downloads forbidden
    err = capsys.readouterr().err.strip()
    assert "HOPNET_DATA_DIR" in err and "\n" not in err
