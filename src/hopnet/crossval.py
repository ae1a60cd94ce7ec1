"""One protocol for every number: grouped K-fold cross-validation on the migration paths.

All paths of one compound stay in one fold (``hopnet.datasets.splits.grouped_kfold``); every model
sees the same folds for a given fold seed. Each (model, repeat, fold) writes one JSON file with its
out-of-fold predictions, training time and provenance, so a long run resumes where it stopped and
the summary can be recomputed from the files alone.

A *model spec* is a plain dict, the same keys as a ``hopnet train`` run file::

    {"model": "gnn", "gnn": {...BarrierModelConfig...}, "training": {...TrainingConfig...}}
    {"model": "classical", "classical": {...ClassicalConfig...}}
"""

from __future__ import annotations

import json
import logging
import shutil
import time
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from hopnet.datasets.splits import grouped_kfold, scenario_labels
from hopnet.infra.errors import HopnetError
from hopnet.metrics import DEFAULT_THRESHOLD_EV, classifier_metrics, regression_metrics
from hopnet.infra.provenance import atomic_write_text, run_record

log = logging.getLogger(__name__)


def fit_spec(spec: dict, train_set: Any, out_dir: Path) -> Path:
    """Train the model described by ``spec`` on ``train_set``; returns the model folder."""
    kind = spec.get("model", "gnn")
    if kind == "classical":
        from hopnet.models.classical import ClassicalConfig, train_classical

        config = ClassicalConfig(**spec.get("classical", {}))
        seeds = tuple(spec.get("seeds", (0,)))
        return train_classical(train_set, out_dir, config, seeds=seeds)
    from hopnet.models.barrier import BarrierModelConfig
    from hopnet.training.config import TrainingConfig
    from hopnet.training.train import train

    model_config = BarrierModelConfig.from_dict(spec.get("gnn", {}))
    training = dict(spec.get("training", {}))
    training.setdefault("progress_bar", False)
    # a fold's work folder is fixed, so a killed run continues the fold from its last epoch
    return train(train_set, model_config, TrainingConfig(**training), out_dir, resume=True)


def run_fold(spec: dict, dataset: Any, train_idx: np.ndarray, test_idx: np.ndarray, out_file: Path,
             work_dir: Path, keep_models: bool = False, meta: dict | None = None) -> dict:
    """Train on ``train_idx``, predict ``test_idx``, write ``out_file`` (skipped when it exists)."""
    if out_file.exists():
        try:
            return json.loads(out_file.read_text())
        except (json.JSONDecodeError, UnicodeDecodeError):
            log.warning("%s is damaged; running this fold again", out_file)
    from hopnet.models.folder import load_model

    train_set, test_set = dataset.subset(train_idx), dataset.subset(test_idx)
    t0 = time.perf_counter()
    folder = fit_spec(spec, train_set, work_dir)
    train_seconds = time.perf_counter() - t0
    predictor = load_model(folder)
    t1 = time.perf_counter()
    pred = predictor.predict_paths(list(test_set))
    predict_seconds = time.perf_counter() - t1
    scenarios = scenario_labels(list(test_set), list(train_set))
    record = {
        "spec": spec,
        "meta": meta or {},
        "train_seconds": train_seconds,
        "predict_seconds": predict_seconds,
        "n_train": int(len(train_idx)),
        "predictions": [
            {"sys_name": e.id, "target": float(e.target), "prediction": float(m), "std": float(s),
             "scenario": sc, "compound": e.meta.get("compound"), "class": e.meta.get("class")}
            for e, m, s, sc in zip(test_set, pred.mean, pred.std, scenarios)
        ],
        "metrics": regression_metrics(test_set.targets, pred.mean),
        "provenance": run_record(config=spec, data_hash=dataset.sha256),
    }
    atomic_write_text(out_file, json.dumps(record, indent=1))
    if not keep_models:
        shutil.rmtree(work_dir, ignore_errors=True)
    return record


def cross_validate(spec: dict, dataset: Any, out_dir: str | Path, n_folds: int = 5,
                   fold_seeds: Sequence[int] = (0,), folds: Sequence[int] | None = None,
                   keep_models: bool = False) -> list[dict]:
    """Run (or resume) grouped K-fold CV of ``spec``; one JSON per (fold seed, fold) in ``out_dir``."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    spec_text = json.dumps(spec, indent=1, sort_keys=True)
    spec_file = out_dir / "spec.json"
    if spec_file.is_file() and spec_file.read_text() != spec_text:
        # its fold files would be taken for results of this spec
        raise HopnetError(f"{out_dir} holds cross-validation results of another model spec (spec.json "
                          "differs); use another output folder or delete it")
    atomic_write_text(spec_file, spec_text)
    records = []
    for fs in fold_seeds:
        splits = grouped_kfold(dataset, n_folds=n_folds, seed=fs)
        for k, (tr, te) in enumerate(splits):
            if folds is not None and k not in folds:
                continue
            out_file = out_dir / f"seed{fs}_fold{k}.json"
            log.info("%s: fold seed %d, fold %d/%d", out_dir.name, fs, k + 1, n_folds)
            records.append(run_fold(spec, dataset, tr, te, out_file, out_dir / f"work_seed{fs}_fold{k}",
                                    keep_models, meta={"fold_seed": fs, "fold": k, "n_folds": n_folds}))
    return records


def summarize(records: Sequence[dict], threshold: float = DEFAULT_THRESHOLD_EV) -> dict:
    """Mean ± sd over folds of MAE / RMSE / R² / Spearman; classifier and per-scenario errors over
    all out-of-fold predictions; total training time."""
    if not records:
        return {"n_folds": 0}
    per_fold = {k: np.array([r["metrics"][k] for r in records], dtype=float)
                for k in ("mae", "rmse", "r2", "spearman")}
    preds = [p for r in records for p in r["predictions"]]
    t = np.array([p["target"] for p in preds])
    y = np.array([p["prediction"] for p in preds])
    scen: dict[str, dict] = {}
    for s in sorted({p["scenario"] for p in preds}):
        idx = [i for i, p in enumerate(preds) if p["scenario"] == s]
        scen[s] = {"n": len(idx), "mae": float(np.abs(y[idx] - t[idx]).mean())}
    out = {"n_folds": len(records), "n_predictions": len(preds)}
    for k, v in per_fold.items():
        out[k] = float(np.nanmean(v))
        out[f"{k}_sd"] = float(np.nanstd(v))
    out["pooled"] = regression_metrics(t, y)
    out["classifier"] = classifier_metrics(t, y, threshold)
    out["scenarios"] = scen
    out["train_seconds"] = float(sum(r["train_seconds"] for r in records))
    return out


def load_records(out_dir: str | Path) -> list[dict]:
    """All finished fold records in ``out_dir``."""
    return [json.loads(p.read_text()) for p in sorted(Path(out_dir).glob("seed*_fold*.json"))]
