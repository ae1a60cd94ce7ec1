"""Path-local options of Model 3, measured on grouped fold(s) of the 559 paths (issue 4).

    HOPNET_DATA_DIR=../shared/data python experiments/ablation.py NAME [--folds 0]

Each NAME changes one option of `hopnet reproduce`'s CPU Model 3 (crop 5 Å, path pooling 4 Å,
mobile-ion flag); results land in results/ablation/NAME/ and compare with
results/cv5-seed0/model3 on the same folds.
"""

from __future__ import annotations

import argparse
from copy import deepcopy

import torch

from hopnet import datasets, reproduce
from hopnet.crossval import cross_validate, summarize
from hopnet.infra.runtime import tune_allocator

VARIANTS = {
    "no-path-pool": {"pool_scope": "all"},
    "no-flag": {"graph": {"mobile_flag": False}},
    "no-crop": {"crop_radius": None},
}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("name", choices=sorted(VARIANTS))
    ap.add_argument("--folds", type=int, nargs="+", default=[0])
    args = ap.parse_args()
    torch.set_num_threads(1)
    tune_allocator()
    spec = deepcopy(reproduce.model_spec("model3"))
    spec["gnn"].update(VARIANTS[args.name])
    ds = datasets.load("migration-barriers")
    recs = cross_validate(spec, ds, f"results/ablation/{args.name}", n_folds=5, fold_seeds=(0,), folds=args.folds)
    s = summarize(recs)
    print(args.name, f"MAE {s['mae']:.3f} R2 {s['r2']:.3f} folds {s['n_folds']}")


if __name__ == "__main__":
    main()
