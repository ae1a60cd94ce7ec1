"""`hopnet reproduce`: the published barrier-model comparison, end to end, resumable.

Models (scratch): Model 1 (add / subtract / concat), Model 2, Model 3, Model 4, our hybrid
(Model 3 + path descriptors) and the classical path-descriptor baseline; the published MACE-NEB
numbers of the same test paths (columns of ``metadata_train.csv``) stand beside them.

Protocols:
* default: the published class-stratified split of the 559 training paths (~10 % test);
* ``test=PATH``: train on all 559 paths, test on the paths in ``PATH`` (band format);
* ``cv=K``: grouped K-fold cross-validation (all paths of one compound in one fold), the same
  folds for every model — the protocol of the numbers in the README.

Every model writes ``OUT/<protocol>/<model>/*.json`` as soon as it finishes, so a run that stops
resumes where it stopped. The summary (``reproduce.json``, ``reproduce.md``, parity plots) is
recomputed from those files at the end of every run.

GNN models train at a CPU-sized configuration (small encoder, band cropped to 5 Å around the
path) unless ``paper=True`` asks for the published sizes (4 ALIGNN + 4 GCN layers, hidden 256,
full band) — hours per model on a CPU, minutes on a GPU.
"""

from __future__ import annotations

import json
import logging
import time
from copy import deepcopy
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from hopnet.crossval import cross_validate, load_records, run_fold, summarize
from hopnet.metrics import DEFAULT_THRESHOLD_EV, classifier_metrics, regression_metrics
from hopnet.infra.provenance import atomic_write_text, run_record

log = logging.getLogger(__name__)

CPU_TRAINING = {"epochs": 40, "batch_size": 16, "lr": 2e-3, "patience": 10, "val_fraction": 0.1,
                "schedule": "onecycle"}
QUICK_TRAINING = {"epochs": 2, "batch_size": 8, "lr": 2e-3, "patience": 0, "val_fraction": 0.0,
                  "schedule": "onecycle"}
_CROP = {"crop_radius": 5.0}
_LOCAL = {"crop_radius": 5.0, "pool_scope": "path", "path_radius": 4.0, "graph": {"mobile_flag": True}}

# name -> (label, gnn config overrides or None for the classical model)
MODELS: dict[str, tuple[str, dict | None]] = {
    "model1-add": ("Model 1 (initial + final, add)", {"variant": "initial-final", "combine": "add", **_CROP}),
    "model1-subtract": ("Model 1 (initial + final, subtract)",
                        {"variant": "initial-final", "combine": "subtract", **_CROP}),
    "model1-concat": ("Model 1 (initial + final, concat)",
                      {"variant": "initial-final", "combine": "concat", **_CROP}),
    "model2": ("Model 2 (initial + bond-length change)", {"variant": "initial-delta", **_CROP}),
    "model3": ("Model 3 (band)", {"variant": "band", **_LOCAL}),
    "model4": ("Model 4 (band, attention pooling)", {"variant": "band-attention", **_LOCAL}),
    "hybrid": ("Hybrid (Model 3 + path descriptors)", {"variant": "band", "hybrid": True, **_LOCAL}),
    "model3-mpt": ("Model 3 fine-tuned from the shipped MPT encoder",
                   {"variant": "band", **_LOCAL, "pretrained_encoder": "mpt"}),
    "model4-mpt": ("Model 4 fine-tuned from the shipped MPT encoder",
                   {"variant": "band-attention", **_LOCAL, "pretrained_encoder": "mpt"}),
    "classical": ("Classical (extra trees on path descriptors)", None),
}


def model_spec(name: str, quick: bool = False, paper: bool = False) -> dict:
    """The run spec (as in a ``hopnet train`` run file) of a named model of the comparison."""
    if name not in MODELS:
        from hopnet.infra.errors import HopnetError

        raise HopnetError(f"unknown model '{name}' (choose from {', '.join(MODELS)})")
    _, gnn = MODELS[name]
    if gnn is None:
        classical = {"n_estimators": 50} if quick else {}
        return {"model": "classical", "classical": classical, "seeds": [0]}
    gnn = deepcopy(gnn)
    if paper and gnn.get("pretrained_encoder"):
        from hopnet.infra.errors import HopnetError

        raise HopnetError(f"{name} starts from the shipped CPU-size '{gnn['pretrained_encoder']}' encoder; "
                          "--paper needs a paper-size pre-trained encoder (hopnet pretrain --properties all)")
    if paper:
        gnn.pop("crop_radius", None)
        gnn["encoder"] = "paper"
    else:
        gnn["encoder"] = "small"
    return {"model": "gnn", "gnn": gnn, "training": dict(QUICK_TRAINING if quick else CPU_TRAINING)}


def _mace_rows(test_entries: Sequence[Any]) -> dict[str, dict]:
    """The published MACE-MP NEB predictions for the test paths (where the metadata has them)."""
    rows = {}
    for key, label in (("mace_relax_ev", "MACE-NEB, relaxed end points (published)"),
                       ("mace_norelax_ev", "MACE-NEB, unrelaxed (published)")):
        pairs = [(e.target, e.meta.get(key)) for e in test_entries if e.meta.get(key) is not None]
        if pairs:
            t, p = map(np.asarray, zip(*pairs))
            rows[key] = {"label": label, "n": len(pairs), **regression_metrics(t, p),
                         "classifier": classifier_metrics(t, p)}
    return rows


def _neb_rows(path: str | Path, test_entries: Sequence[Any], threshold: float) -> dict[str, dict]:
    """CHGNet-NEB (``hopnet neb`` results file) on the test paths it covers, and the published
    MACE-NEB on exactly those paths, so the two rows compare like with like."""
    from hopnet.neb import read_results

    by_id = {r["id"]: r for r in read_results(path)}
    covered = [e for e in test_entries if e.id in by_id]
    if not covered:
        return {}
    t = np.array([e.target for e in covered])
    p = np.array([by_id[e.id]["barrier"] for e in covered])
    rows = {"chgnet_neb": {"label": f"CHGNet-NEB (hopnet neb, {Path(path).name})", "n": len(covered),
                           **regression_metrics(t, p), "classifier": classifier_metrics(t, p, threshold)}}
    same = [(e.target, e.meta.get("mace_relax_ev")) for e in covered if e.meta.get("mace_relax_ev") is not None]
    if same:
        tm, pm = map(np.asarray, zip(*same))
        rows["mace_same_paths"] = {"label": "MACE-NEB relaxed (published), same paths as CHGNet-NEB",
                                   "n": len(same), **regression_metrics(tm, pm),
                                   "classifier": classifier_metrics(tm, pm, threshold)}
    return rows


def run(out_dir: str | Path = "results", models: Sequence[str] | None = None, test: str | None = None,
        quick: bool = False, paper: bool = False, cv: int = 0, seed: int = 0,
        threshold: float = DEFAULT_THRESHOLD_EV, data: Any = "migration-barriers",
        neb_results: str | Path | None = None) -> dict:
    """Run (or resume) the comparison and write the summary files; returns the summary.

    ``neb_results``: a JSONL file of ``hopnet neb`` results (``run_neb_many``); its paths that
    are test paths here add a CHGNet-NEB row, with the published MACE-NEB on the same paths."""
    from hopnet import datasets
    from hopnet.datasets.splits import published_split

    out_dir = Path(out_dir)
    names = list(models or [n for n, (_, g) in MODELS.items()
                            if not (paper and g and g.get("pretrained_encoder"))])  # mpt is CPU-size
    for n in names:
        model_spec(n, paper=paper)  # unknown names (and --paper misuse) fail before the data is read
    ds = datasets.load(data) if isinstance(data, str) else data
    test_set = None
    if quick and test is None:
        # a CI-sized run: 60 paths of the published training part, 20 of its test part
        tr, te = published_split(ds, seed=seed)
        rng = np.random.default_rng(seed)
        ds = ds.subset(np.sort(np.concatenate([rng.choice(tr, min(60, len(tr)), replace=False),
                                               rng.choice(te, min(20, len(te)), replace=False)])))
    if test is not None:
        test_set = datasets.load(test)
        protocol = "test"
    elif cv:
        protocol = f"cv{cv}-seed{seed}"
    else:
        protocol = f"split-seed{seed}"
    if quick:
        protocol += "-quick"
    base = out_dir / protocol
    for name in names:
        spec = model_spec(name, quick=quick, paper=paper)
        folder = base / name
        t0 = time.perf_counter()
        if cv:
            records = cross_validate(spec, ds, folder, n_folds=cv, fold_seeds=(seed,))
        else:
            if test_set is not None:
                combined = _concat(ds, test_set)
                tr = np.arange(len(ds))
                te = np.arange(len(ds), len(ds) + len(test_set))
            else:
                combined = ds
                tr, te = published_split(ds, seed=seed)
            folder.mkdir(parents=True, exist_ok=True)
            records = [run_fold(spec, combined, tr, te, folder / "seed0_fold0.json", folder / "work",
                                meta={"protocol": protocol})]
        log.info("%s: %d fold(s) done in %.0f s", name, len(records), time.perf_counter() - t0)
    # the summary covers every model finished under this protocol, not only this run's
    done = {n: load_records(base / n) for n in MODELS if (base / n).is_dir()}
    return write_summary(base, done, threshold, protocol, dataset_hash=ds.sha256, neb_results=neb_results)


def _concat(train: Any, test: Any) -> Any:
    """One Dataset holding ``train`` then ``test`` (ids of the test set made unique)."""
    import hashlib
    from dataclasses import replace

    from hopnet.datasets.core import Dataset

    taken = set(train.ids)
    entries = list(train) + [replace(e, id=f"test:{e.id}") if e.id in taken else e for e in test]
    sha = hashlib.sha256(f"{train.sha256}+{test.sha256}".encode()).hexdigest()
    return Dataset(f"{train.name}+{test.name}", entries, sha, task=train.task, units=train.units)


def write_summary(base: Path, records: dict[str, list[dict]], threshold: float, protocol: str,
                  dataset_hash: str | None = None, neb_results: str | Path | None = None) -> dict:
    """``reproduce.json`` + ``reproduce.md`` + ``parity_<model>.png`` in ``base``."""
    from hopnet.plots import parity_plot

    rows: dict[str, dict] = {}
    test_ids: set[str] = set()
    for name, recs in records.items():
        if not recs:
            continue
        s = summarize(recs, threshold)
        s["label"] = MODELS.get(name, (name, None))[0]
        rows[name] = s
        preds = [p for r in recs for p in r["predictions"]]
        test_ids |= {p["sys_name"] for p in preds}
        parity_plot([p["target"] for p in preds], [p["prediction"] for p in preds],
                    base / f"parity_{name}.png", std=[p["std"] for p in preds], threshold=threshold,
                    title=f"{s['label']} — {protocol}")
    mace = {}
    if test_ids:
        from hopnet import datasets

        try:
            full = datasets.load("migration-barriers")
            mace = _mace_rows([e for e in full if e.id in test_ids])
            if neb_results is not None:
                mace.update(_neb_rows(neb_results, [e for e in full if e.id in test_ids], threshold))
        except Exception as exc:  # the published columns are a comparison, not a requirement
            log.warning("published MACE-NEB numbers unavailable: %s", exc)
    summary = {"protocol": protocol, "threshold": threshold, "models": rows, "published_mace_neb": mace,
               "provenance": run_record(data_hash=dataset_hash)}
    atomic_write_text(base / "reproduce.json", json.dumps(summary, indent=1))
    atomic_write_text(base / "reproduce.md", markdown_table(summary))
    return summary


def markdown_table(summary: dict) -> str:
    """The comparison as a Markdown table (fold mean ± sd where there are several folds)."""
    lines = [f"# Barrier models — {summary['protocol']}", "",
             f"Classifier threshold {summary['threshold']} eV (good conductor below). "
             "Scenario MAE: A same compound in training, B same class + ion, C same class other ion, D none.",
             "", "| model | n | MAE (eV) | RMSE | R² | Spearman | accuracy | scenario MAE | train (min) |",
             "|---|---|---|---|---|---|---|---|---|"]

    def pm(s: dict, k: str) -> str:
        sd = s.get(f"{k}_sd", 0.0)
        return f"{s[k]:.3f} ± {sd:.3f}" if s.get("n_folds", 1) > 1 else f"{s[k]:.3f}"

    for name, s in summary["models"].items():
        scen = ", ".join(f"{k} {v['mae']:.2f} ({v['n']})" for k, v in s["scenarios"].items())
        lines.append(f"| {s['label']} | {s['n_predictions']} | {pm(s, 'mae')} | {pm(s, 'rmse')} | "
                     f"{pm(s, 'r2')} | {pm(s, 'spearman')} | {s['classifier']['accuracy']:.3f} | {scen} | "
                     f"{s['train_seconds'] / 60:.1f} |")
    for row in summary.get("published_mace_neb", {}).values():
        lines.append(f"| {row['label']} | {row['n']} | {row['mae']:.3f} | {row['rmse']:.3f} | {row['r2']:.3f} | "
                     f"{row['spearman']:.3f} | {row['classifier']['accuracy']:.3f} | | |")
    prov = summary["provenance"]
    lines += ["", f"hopnet {prov['hopnet_version']}, commit {prov['git_commit']}, data {prov['data_hash']}", ""]
    return "\n".join(lines)
