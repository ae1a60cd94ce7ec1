"""Grouped 5-fold cross-validation of barrier models on the 559 training paths (resumable).

    HOPNET_DATA_DIR=../shared/data python experiments/barrier_cv.py SPEC [SPEC ...] \
        [--fold-seeds 0] [--folds 0 1 2 3 4] [--out results/cv] [--threads 1]
    python experiments/barrier_cv.py --summary [--out results/cv]

Each SPEC is a name from SPECS below; results land in OUT/SPEC/seed{S}_fold{K}.json.
"""

from __future__ import annotations

import argparse
import json
import logging
from pathlib import Path

_CPU_TRAINING = {"epochs": 40, "batch_size": 16, "lr": 2e-3, "patience": 10, "val_fraction": 0.1,
                 "schedule": "onecycle"}
_BAND_SMALL = {"variant": "band", "encoder": "small", "graph": {"mobile_flag": True},
               "crop_radius": 5.0, "pool_scope": "path", "path_radius": 4.0}

SPECS: dict[str, dict] = {
    "classical": {"model": "classical", "classical": {}, "seeds": [0]},
    "m3-small-crop5": {"model": "gnn", "gnn": dict(_BAND_SMALL), "training": dict(_CPU_TRAINING)},
    "m3-small-crop5-hybrid": {"model": "gnn", "gnn": dict(_BAND_SMALL, hybrid=True),
                              "training": dict(_CPU_TRAINING)},
    "m4-small-crop5": {"model": "gnn", "gnn": dict(_BAND_SMALL, variant="band-attention"),
                       "training": dict(_CPU_TRAINING)},
    "m3-small-full": {"model": "gnn", "gnn": {"variant": "band", "encoder": "small",
                                               "graph": {"mobile_flag": False}},
                      "training": dict(_CPU_TRAINING)},
    "m1-sub-small": {"model": "gnn", "gnn": {"variant": "initial-final", "combine": "subtract",
                                              "encoder": "small", "crop_radius": 5.0},
                     "training": dict(_CPU_TRAINING)},
    "m2-small": {"model": "gnn", "gnn": {"variant": "initial-delta", "encoder": "small",
                                          "crop_radius": 5.0}, "training": dict(_CPU_TRAINING)},
}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("specs", nargs="*")
    ap.add_argument("--fold-seeds", type=int, nargs="+", default=[0])
    ap.add_argument("--folds", type=int, nargs="+", default=None)
    ap.add_argument("--out", default="results/cv")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--summary", action="store_true")
    args = ap.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s: %(message)s")
    from hopnet.crossval import cross_validate, load_records, summarize

    if args.summary:
        for d in sorted(Path(args.out).iterdir()):
            if d.is_dir():
                s = summarize(load_records(d))
                if s["n_folds"]:
                    print(f"{d.name:28s} folds {s['n_folds']:2d}  MAE {s['mae']:.3f}±{s['mae_sd']:.3f}  "
                          f"R2 {s['r2']:.3f}±{s['r2_sd']:.3f}  acc {s['classifier']['accuracy']:.3f}  "
                          f"train {s['train_seconds'] / 60:.1f} min  "
                          + " ".join(f"{k}:{v['mae']:.3f}({v['n']})" for k, v in s["scenarios"].items()))
        return
    import torch

    from hopnet import datasets
    from hopnet.runtime import tune_allocator

    torch.set_num_threads(args.threads)
    tune_allocator()
    ds = datasets.load("migration-barriers")
    for name in args.specs:
        cross_validate(SPECS[name], ds, Path(args.out) / name, fold_seeds=args.fold_seeds, folds=args.folds)
        print(name, json.dumps(summarize(load_records(Path(args.out) / name)), indent=1))


if __name__ == "__main__":
    main()
