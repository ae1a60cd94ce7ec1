"""Does a universal-potential NEB barrier help the trees? Grouped CV of the `accurate` candidates.

    HOPNET_DATA_DIR=../shared/data python experiments/accurate_model.py \
        --features experiments/results/neb_features/chgnet_shard*.jsonl --out results/accurate-cv

The folds are those of the shipped `default` (``grouped_kfold`` of all 559 paths, fold seeds
0-2); each fold is restricted to the paths that have NEB features, and every model is fitted on
the same restricted training part and scored on the same restricted test part:

* ``default``   -- the shipped recipe: extra trees on the path-geometry descriptors, log1p(E_m);
* ``neb``       -- the potential's own forward barrier, as is;
* ``geom+neb``  -- the trees on descriptors + the NEB features (``hopnet.neb.NEB_FEATURE_NAMES``:
  forward / reverse barrier, ΔE of the end points, the top interior image, residual force, flags);
* ``delta``     -- Δ-learning: the trees predict E_m − E_NEB from the same inputs;
* ``geom+mace`` -- the trees on descriptors + the published MACE-NEB barrier (``mace_relax_ev``),
  the stand-in the issue measured (paths without it are left out of that row).

While the feature run is incomplete the numbers are on the paths done so far (``n_paths`` in the
output); a difference smaller than the fold-to-fold spread is not a win.
"""

from __future__ import annotations

import argparse
import glob
import json
from pathlib import Path

import numpy as np

MODELS = ("default", "neb", "geom+neb", "delta", "geom+mace")


def load_features(patterns: list[str]) -> dict[str, dict]:
    rows: dict[str, dict] = {}
    for pat in patterns:
        for f in sorted(glob.glob(pat)):
            with open(f) as fh:
                for line in fh:
                    if line.strip().endswith("}"):
                        r = json.loads(line)
                        if "error" not in r:
                            rows[str(r["id"])] = r
    return rows


def fit_predict(Xtr: np.ndarray, ytr: np.ndarray, Xte: np.ndarray, seeds=(0, 1, 2, 3, 4), log: bool = True) -> np.ndarray:
    from hopnet.models.classical import ClassicalConfig

    cfg = ClassicalConfig.from_dict({"n_estimators": 100})
    target = np.log1p(ytr) if log else ytr
    out = []
    for s in seeds:
        for est in cfg.components():
            p = est.make(int(s)).fit(Xtr, target).predict(Xte)
            out.append(np.expm1(p) if log else p)
    return np.mean(out, axis=0)


def main() -> None:
    from hopnet import datasets
    from hopnet.datasets.splits import grouped_kfold, scenario_labels
    from hopnet.metrics import classifier_metrics, regression_metrics
    from hopnet.neb import NEB_FEATURE_NAMES, neb_features
    from hopnet.models.classical import band_structures, path_descriptors
    from hopnet.provenance import atomic_write_text, run_record

    ap = argparse.ArgumentParser()
    ap.add_argument("--features", nargs="+", default=["experiments/results/neb_features/chgnet_shard*.jsonl"])
    ap.add_argument("--out", default="results/accurate-cv")
    args = ap.parse_args()
    ds = datasets.load("migration-barriers")
    feats = load_features(args.features)
    ids = [str(e.id) for e in ds]
    have = np.array([i in feats for i in ids])
    y = ds.targets
    G = path_descriptors(band_structures(ds))
    N = np.array([neb_features(feats[i]) if i in feats else [np.nan] * len(NEB_FEATURE_NAMES) for i in ids])
    mace = np.array([float(e.meta.get("mace_relax_ev")) if e.meta.get("mace_relax_ev") not in (None, "")
                     else np.nan for e in ds])
    per_fold: dict[str, list[dict]] = {m: [] for m in MODELS}
    scen_err: dict[str, dict[str, list[float]]] = {m: {} for m in MODELS}
    for seed in (0, 1, 2):
        for k, (tr, te) in enumerate(grouped_kfold(ds, 5, seed=seed)):
            tr, te = tr[have[tr]], te[have[te]]
            if len(te) < 3 or len(tr) < 10:
                continue
            labels = scenario_labels([ds[i] for i in te], [ds[i] for i in tr])
            X = np.hstack([G, np.nan_to_num(N)])
            preds = {
                "default": fit_predict(G[tr], y[tr], G[te]),
                "neb": N[te, 0],
                "geom+neb": fit_predict(X[tr], y[tr], X[te]),
                "delta": N[te, 0] + fit_predict(X[tr], y[tr] - N[tr, 0], X[te], log=False),
            }
            mtr, mte = tr[np.isfinite(mace[tr])], te[np.isfinite(mace[te])]
            if len(mte) >= 3:
                XM = np.hstack([G, mace[:, None]])
                preds["geom+mace"] = (fit_predict(XM[mtr], y[mtr], XM[mte]), mte)
            for m, p in preds.items():
                idx = te
                if isinstance(p, tuple):
                    p, idx = p
                reg = regression_metrics(y[idx], p)
                cls = classifier_metrics(y[idx], p, 0.65)
                per_fold[m].append({"seed": seed, "fold": k, "n": int(len(idx)), "mae": reg["mae"], "r2": reg["r2"],
                                    "accuracy": cls["accuracy"]})
                if m != "geom+mace":
                    for lab, err in zip(labels, np.abs(p - y[idx])):
                        scen_err[m].setdefault(lab, []).append(float(err))
    summary = {}
    for m, rows in per_fold.items():
        if not rows:
            continue
        a = {key: np.array([r[key] for r in rows], dtype=float) for key in ("mae", "r2", "accuracy")}
        summary[m] = {"mae": float(a["mae"].mean()), "mae_sd": float(a["mae"].std()),
                      "r2": float(np.nanmean(a["r2"])), "r2_sd": float(np.nanstd(a["r2"])),
                      "accuracy": float(a["accuracy"].mean()), "n_folds": len(rows),
                      "scenarios": {s: {"n": len(v), "mae": float(np.mean(v))} for s, v in sorted(scen_err[m].items())}}
    cost = np.array([feats[i]["cpu_s"] for i in ids if i in feats])
    out = {"n_paths": int(have.sum()), "of": len(ds), "models": summary, "per_fold": per_fold,
           "neb_cpu_s_per_path": {"median": float(np.median(cost)), "mean": float(np.mean(cost))},
           "protocol": "grouped 5-fold CV x fold seeds 0-2 (default's folds), restricted to paths with NEB features",
           "provenance": run_record({"features": args.features}, data_hash=ds.sha256)}
    Path(args.out).mkdir(parents=True, exist_ok=True)
    atomic_write_text(Path(args.out) / "summary.json", json.dumps(out, indent=1) + "\n")
    print(f"{int(have.sum())} of {len(ds)} paths have NEB features")
    for m, s in summary.items():
        print(f"{m:10s} MAE {s['mae']:.3f} ± {s['mae_sd']:.3f}  R² {s['r2']:.2f} ± {s['r2_sd']:.2f}  "
              f"acc {s['accuracy']:.3f}  ({s['n_folds']} folds)")


if __name__ == "__main__":
    main()
