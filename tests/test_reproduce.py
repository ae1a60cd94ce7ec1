"""Cross-validation protocol and `hopnet reproduce` on tiny data (classical + a 1-epoch GNN)."""

from __future__ import annotations

import json

import numpy as np
import pytest

from hopnet import reproduce
from hopnet.cli import main
from hopnet.crossval import cross_validate, load_records, summarize
from hopnet.infra.errors import HopnetError


@pytest.fixture(scope="module")
def small_ds(data_dir):
    from hopnet import datasets

    ds = datasets.load("migration-barriers", data_dir=data_dir)
    rng = np.random.default_rng(0)
    return ds.subset(np.sort(rng.choice(len(ds), 60, replace=False)))


def test_cross_validation_predicts_each_path_once_without_compound_leakage(small_ds, tmp_path):
    spec = {"model": "classical", "classical": {"n_estimators": 20}, "seeds": [0]}
    records = cross_validate(spec, small_ds, tmp_path / "cv", n_folds=3)
    names = [p["sys_name"] for r in records for p in r["predictions"]]
    assert sorted(names) == sorted(small_ds.ids)
    compound = {e.id: e.meta["compound"] for e in small_ds}
    for r in records:
        test_compounds = {compound[p["sys_name"]] for p in r["predictions"]}
        assert r["n_train"] + len(r["predictions"]) == len(small_ds)
        assert all(p["scenario"] in "BCD" for p in r["predictions"])  # never A: compounds are grouped
        assert len(test_compounds) == len({p["compound"] for p in r["predictions"]})
    s = summarize(records)
    assert s["n_folds"] == 3 and s["n_predictions"] == 60 and 0 < s["mae"] < 2
    # resume: the fold files are reused, not recomputed
    before = {p.name: p.stat().st_mtime_ns for p in (tmp_path / "cv").glob("seed*_fold*.json")}
    again = cross_validate(spec, small_ds, tmp_path / "cv", n_folds=3)
    after = {p.name: p.stat().st_mtime_ns for p in (tmp_path / "cv").glob("seed*_fold*.json")}
    assert before == after and [r["metrics"] for r in again] == [r["metrics"] for r in load_records(tmp_path / "cv")]
    # a damaged fold file is run again, not loaded
    damaged = sorted((tmp_path / "cv").glob("seed*_fold*.json"))[1]
    damaged.write_text(damaged.read_text()[:200])
    redone = cross_validate(spec, small_ds, tmp_path / "cv", n_folds=3)
    assert [r["metrics"] for r in redone] == [r["metrics"] for r in again]
    assert damaged.stat().st_mtime_ns != after[damaged.name]
    # the folder holds results of this spec only
    with pytest.raises(HopnetError, match="another model spec"):
        cross_validate({**spec, "seeds": [1]}, small_ds, tmp_path / "cv", n_folds=3)


def test_reproduce_quick_writes_tables_plots_and_provenance(small_ds, tmp_path):
    summary = reproduce.run(tmp_path, models=["classical", "model3"], quick=True, data=small_ds)
    base = tmp_path / summary["protocol"]
    assert summary["protocol"] == "split-seed0-quick"
    for name in ("classical", "model3"):
        row = summary["models"][name]
        assert row["n_predictions"] > 0 and np.isfinite(row["mae"])
        assert set(row["classifier"]) >= {"accuracy", "precision_good", "recall_poor"}
        assert (base / f"parity_{name}.png").read_bytes()[:4] == b"\x89PNG"
    on_disk = json.loads((base / "reproduce.json").read_text())
    # the hash of the data actually used (the quick run's deterministic subset), stable across runs
    data_hash = on_disk["provenance"]["data_hash"]
    assert len(data_hash) == 64 and data_hash != small_ds.sha256
    assert reproduce.run(tmp_path, models=["classical"], quick=True, data=small_ds)["provenance"][
        "data_hash"] == data_hash
    assert "hopnet_version" in on_disk["provenance"] and "git_commit" in on_disk["provenance"]
    table = (base / "reproduce.md").read_text()
    assert "Model 3 (band)" in table and "Classical" in table


def test_reproduce_rejects_unknown_model_before_training(tmp_path, capsys):
    with pytest.raises(HopnetError, match="unknown model 'model9'"):
        reproduce.run(tmp_path, models=["model9"], data=object())
    assert main(["reproduce", "--models", "model9", "--out", str(tmp_path)]) == 2
    assert "unknown model 'model9'" in capsys.readouterr().err
    assert not any(tmp_path.iterdir())


def test_neb_results_add_rows_on_the_paths_they_cover(small_ds, tmp_path):
    first = reproduce.run(tmp_path, models=["classical"], quick=True, data=small_ds)
    base = tmp_path / first["protocol"]
    preds = load_records(base / "classical")[0]["predictions"]
    neb = tmp_path / "neb.jsonl"
    neb.write_text("".join(json.dumps({"id": p["sys_name"], "barrier": p["target"]}) + "\n" for p in preds[:3]))
    summary = reproduce.run(tmp_path, models=["classical"], quick=True, data=small_ds, neb_results=neb)
    row = summary["published_mace_neb"]["chgnet_neb"]
    assert row["n"] == 3 and row["mae"] == pytest.approx(0.0)
    assert "CHGNet-NEB" in (base / "reproduce.md").read_text()


def test_mpt_models_need_the_cpu_size_encoder():
    """model3-mpt / model4-mpt start from the shipped CPU-size mpt encoder: --paper refuses them
    by name, and the default --paper list leaves them out."""
    from hopnet.reproduce import model_spec

    assert model_spec("model4-mpt")["gnn"]["pretrained_encoder"] == "mpt"
    with pytest.raises(HopnetError, match="CPU-size"):
        model_spec("model3-mpt", paper=True)
