"""``hopnet reproduce``: the published barrier-model comparison, written to ``results/``."""

from __future__ import annotations

import argparse
from typing import Any


def register(subparsers: Any) -> None:
    from hopnet.metrics import DEFAULT_THRESHOLD_EV

    p = subparsers.add_parser(
        "reproduce", help="run the published barrier-model comparison (resumable)",
        description="Train and test Models 1-4, the hybrid and the classical baseline on one protocol "
                    "and write JSON, a Markdown table and parity plots. Re-running resumes.",
    )
    p.add_argument("--test", default=None, help="test paths (band-format .json/.json.gz); "
                                                "default: the published split of the 559 paths")
    p.add_argument("--cv", type=int, default=0, metavar="K", help="grouped K-fold cross-validation instead")
    p.add_argument("--quick", action="store_true", help="CI-sized run: 80 paths, 2 epochs")
    p.add_argument("--paper", action="store_true", help="published model sizes (GPU-scale)")
    p.add_argument("--models", nargs="+", default=None, help="subset of the models to run")
    p.add_argument("--seed", type=int, default=0, help="split / fold seed")
    p.add_argument("--threshold", type=float, default=DEFAULT_THRESHOLD_EV, help="conductor cut (eV)")
    p.add_argument("--out", default="results", help="output folder (default results/)")
    p.add_argument("--threads", type=int, default=None, help="torch CPU threads")
    p.add_argument("--neb", default=None, metavar="FILE.jsonl",
                   help="hopnet neb results: adds a CHGNet-NEB row for the test paths they cover")
    p.set_defaults(func=_run)


def _run(args: argparse.Namespace) -> int:
    import torch

    from hopnet import reproduce

    if args.threads:
        torch.set_num_threads(args.threads)
    summary = reproduce.run(args.out, models=args.models, test=args.test, quick=args.quick,
                            paper=args.paper, cv=args.cv, seed=args.seed, threshold=args.threshold,
                            neb_results=args.neb)
    print(reproduce.markdown_table(summary))
    return 0
