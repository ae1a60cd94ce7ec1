"""`hopnet.evaluate` and `hopnet evaluate`: metrics by hand on a controlled predictor, CLI files,
and error cases that must leave no file behind."""

from __future__ import annotations

import gzip
import json
from pathlib import Path

import numpy as np
import pytest

from hopnet.cli import main
from hopnet.infra.errors import DataError, ModelFileError
from hopnet.evaluate import evaluate
from hopnet.models.folder import Prediction

# a tiny band: Li hopping along x through a simple cubic O/Mg frame (5 images, then the host)
LATTICE = [[6.0, 0, 0], [0, 6.0, 0], [0, 0, 6.0]]
HOST = [("O", [0.0, 0.0, 0.0]), ("O", [0.5, 0.5, 0.0]), ("Mg", [0.5, 0.0, 0.5]), ("Mg", [0.0, 0.5, 0.5])]


def band_entry(name: str, target: float, x0: float) -> dict:
    images = [[x0 + 0.1 * k, 0.25, 0.25] for k in range(5)]
    return {
        "sys_name": name,
        "target": target,
        "atoms": {
            "lattice_mat": LATTICE,
            "coords": images + [c for _, c in HOST],
            "elements": ["Li"] * 5 + [s for s, _ in HOST],
            "cartesian": False,
        },
    }


TARGETS = [0.2, 0.5, 0.9, 1.4]
PREDS = [0.3, 0.8, 0.6, 1.4]  # errors 0.1, 0.3, 0.3, 0.0


class FakePredictor:
    """Predicts PREDS[i] for the i-th path, identified by its start x coordinate."""

    name = "fake"
    metadata: dict = {"git_commit": "abc", "data_hash": "def"}

    def predict_paths(self, paths, batch_size=None):
        idx = [int(round(p.initial_frac[0] * 10)) for p in paths]
        mean = np.array([PREDS[i] for i in idx])
        return Prediction(mean=mean, std=np.full(len(idx), 0.05), model=self.name)


@pytest.fixture()
def data_file(tmp_path) -> Path:
    entries = [band_entry(f"LiMgO_{i}", t, 0.1 * i) for i, t in enumerate(TARGETS)]
    p = tmp_path / "bands.json.gz"
    with gzip.open(p, "wt") as fh:
        json.dump(entries, fh)
    return p


def test_metrics_by_hand(data_file):
    r = evaluate(FakePredictor(), data_file, threshold=0.65)
    assert set(r) == {"n", "mae", "rmse", "r2", "spearman", "classifier", "predictions", "provenance", "in_training_set"}
    assert r["n"] == 4
    assert r["mae"] == pytest.approx(0.7 / 4)
    assert r["rmse"] == pytest.approx(np.sqrt(0.19 / 4))
    ss_tot = sum((t - 0.75) ** 2 for t in TARGETS)
    assert r["r2"] == pytest.approx(1 - 0.19 / ss_tot)
    assert r["spearman"] == pytest.approx(0.8)  # ranks (1,2,3,4) vs (1,3,2,4)
    # good (< 0.65): true {0.2, 0.5}; predicted {0.3, 0.6} -> entries 0 and 2
    c = r["classifier"]
    assert c == {"threshold": 0.65, "accuracy": 0.5, "precision_good": 0.5, "precision_poor": 0.5,
                 "recall_good": 0.5, "recall_poor": 0.5}
    assert [p["sys_name"] for p in r["predictions"]] == [f"LiMgO_{i}" for i in range(4)]
    assert [p["prediction"] for p in r["predictions"]] == PREDS
    assert [p["target"] for p in r["predictions"]] == TARGETS
    assert all(p["std"] == 0.05 for p in r["predictions"])
    prov = r["provenance"]
    assert prov["model"] == "fake" and len(prov["data_hash"]) == 64 and prov["hopnet_version"]
    # at 0.85 eV entry 1 (0.5 -> 0.8) becomes a hit and entry 2 (0.9 -> 0.6) stays a false "good"
    c2 = evaluate(FakePredictor(), data_file, threshold=0.85)["classifier"]
    assert c2["accuracy"] == 0.75 and c2["recall_good"] == 1.0 and c2["recall_poor"] == 0.5
    assert c2["precision_good"] == pytest.approx(2 / 3) and c2["precision_poor"] == 1.0


def test_cli_writes_json_and_png(tmp_path, data_file, monkeypatch, capsys):
    monkeypatch.setattr("hopnet.evaluate.resolve_predictor", lambda m: FakePredictor())
    out, png = tmp_path / "o" / "r.json", tmp_path / "p.png"
    rc = main(["evaluate", "--model", "x", "--data", str(data_file), "--output", str(out), "--plot", str(png)])
    assert rc == 0
    text = capsys.readouterr().out
    assert "MAE        0.175 eV" in text and "accuracy   0.500" in text
    report = json.loads(out.read_text())
    assert report["n"] == 4 and report["classifier"]["threshold"] == 0.65
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_evaluate_real_classical_model(tmp_path, data_file):
    """A trained classical folder through the CLI (overlapping-atom bands are not rejected)."""
    from hopnet.datasets import load
    from hopnet.models.classical import ClassicalConfig, train_classical

    ds = load(data_file)
    cfg = ClassicalConfig.gbr_reference()
    cfg.n_estimators, cfg.max_depth = 5, 2
    folder = train_classical(ds, tmp_path / "m", cfg, seeds=(0, 1))
    out = tmp_path / "r.json"
    assert main(["evaluate", "--model", str(folder), "--data", str(data_file), "--output", str(out)]) == 0
    r = json.loads(out.read_text())
    assert r["n"] == 4 and r["provenance"]["model"] == "m"
    assert max(p["std"] for p in r["predictions"]) > 0  # two seeds, subsample 0.8: members differ


def _bad_files(tmp_path: Path) -> dict[str, Path]:
    nan = tmp_path / "nan.json"
    nan.write_text(json.dumps([band_entry("a", 0.3, 0.0)]).replace("0.3", "NaN"))
    broken = tmp_path / "broken.json"
    broken.write_text("[{\"sys_name\": ")
    return {"missing": tmp_path / "nope.json", "nan": nan, "broken": broken}


@pytest.mark.parametrize("case", ["missing", "nan", "broken"])
def test_bad_data_leaves_no_file(tmp_path, case, monkeypatch, capsys):
    monkeypatch.setattr("hopnet.evaluate.resolve_predictor", lambda m: FakePredictor())
    data = _bad_files(tmp_path)[case]
    out, png = tmp_path / "r.json", tmp_path / "p.png"
    rc = main(["evaluate", "--model", "x", "--data", str(data), "--output", str(out), "--plot", str(png)])
    err = capsys.readouterr().err.strip()
    assert rc != 0 and not out.exists() and not png.exists()
    assert err.startswith("hopnet: error:") and "\n" not in err
    with pytest.raises(DataError):
        evaluate(FakePredictor(), data)


def test_bad_model_leaves_no_file(tmp_path, data_file, capsys):
    out = tmp_path / "r.json"
    assert main(["evaluate", "--model", str(tmp_path / "no_such_model"), "--data", str(data_file),
                 "--output", str(out)]) != 0
    assert "neither a shipped model" in capsys.readouterr().err and not out.exists()
    old = tmp_path / "old_model"
    old.mkdir()
    (old / "config.json").write_text(json.dumps({"kind": "classical"}))
    (old / "metadata.json").write_text(json.dumps({"format_version": 0}))
    assert main(["evaluate", "--model", str(old), "--data", str(data_file), "--output", str(out)]) != 0
    assert "format version 0" in capsys.readouterr().err and not out.exists()
    with pytest.raises(ModelFileError):
        evaluate(str(old), data_file)
