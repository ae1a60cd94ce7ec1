"""``hopnet train``: train a barrier model (ALIGNN ``gnn`` or the ``classical`` baseline) from a
YAML run file and/or flags; flags override the file."""

from __future__ import annotations

import argparse
import dataclasses
import logging
from pathlib import Path
from typing import Any

from hopnet.cli.common import add_optimiser_flags
from hopnet.infra.errors import HopnetError

log = logging.getLogger(__name__)


def register(subparsers: Any) -> None:
    p = subparsers.add_parser(
        "train", help="train a barrier model and write a model folder",
        description="Train a migration-barrier model. Settings come from --config FILE.yaml "
                    "(top-level keys data, model, out, folds, fold, gnn, training, classical; "
                    "see hopnet.training.config) and the flags below, which override the file.",
    )
    p.add_argument("--config", default=None, metavar="FILE.yaml",
                   help="YAML run file, e.g. examples/run.yaml (default: none; flags override it)")
    p.add_argument("--data", default=None, help="registered data set name or .json/.json.gz path "
                                                "(default migration-barriers)")
    p.add_argument("--data-dir", default=None, help="data folder (default: $HOPNET_DATA_DIR)")
    p.add_argument("--model", choices=("gnn", "classical"), default=None, help="model kind (default gnn)")
    p.add_argument("--variant", default=None,
                   choices=("initial-final", "initial-delta", "band", "band-attention"),
                   help="GNN variant = published Model 1, 2, 3, 4 (default band)")
    p.add_argument("--small", action="store_true", default=None,
                   help="small encoder for CPU runs (default: the paper-size encoder)")
    add_optimiser_flags(p)
    p.add_argument("--folds", type=int, default=None,
                   help="number of compound-grouped folds, with --fold (default 5 when --fold is given)")
    p.add_argument("--fold", type=int, default=None,
                   help="train on this fold's training part only (default: all the data)")
    p.add_argument("--out", default=None,
                   help="output folder, new or existing (the model folder is OUT/model for gnn; required "
                        "unless the run file has out:)")
    p.add_argument("--resume", action="store_true",
                   help="continue from the last checkpoints in OUT (default: start afresh)")
    p.add_argument("--no-progress", action="store_true", help="no progress bar (default: a bar on stderr)")
    p.set_defaults(func=_run)


def build_run_config(args: argparse.Namespace) -> Any:
    """The RunConfig of the file (if any) with the flags applied."""
    from hopnet.nn.config import EncoderConfig
    from hopnet.training.config import RunConfig, TrainingConfigError, load_run_config

    run = load_run_config(args.config) if args.config else RunConfig()
    for name in ("data", "model", "out", "folds", "fold"):
        value = getattr(args, name)
        if value is not None:
            setattr(run, name, value)
    gnn: dict[str, Any] = {}
    if args.variant is not None:
        gnn["variant"] = args.variant
    if args.small:
        enc = run.gnn.encoder
        gnn["encoder"] = EncoderConfig.small(atom_input_features=enc.atom_input_features, pooling=enc.pooling)
    if gnn:
        run.gnn = dataclasses.replace(run.gnn, **gnn)
    tr: dict[str, Any] = {}
    for flag, key in (("epochs", "epochs"), ("batch_size", "batch_size"), ("lr", "lr"),
                      ("seed", "seed"), ("ensemble", "ensemble")):
        value = getattr(args, flag)
        if value is not None:
            tr[key] = value
    if args.no_progress:
        tr["progress_bar"] = False
    if tr:
        run.training = dataclasses.replace(run.training, **tr)
    if run.fold is not None and run.folds is None:
        run.folds = 5
    if run.fold is not None and not 0 <= run.fold < run.folds:
        raise TrainingConfigError(f"fold must be in 0..{run.folds - 1}, got {run.fold}")
    if not run.out:
        raise TrainingConfigError("no output folder: give --out DIR or 'out:' in the run file")
    if Path(run.out).exists() and not Path(run.out).is_dir():
        raise TrainingConfigError(f"--out {run.out} is a file, not a folder: give a new or existing folder")
    return run


def _run(args: argparse.Namespace) -> int:
    from hopnet.datasets import load

    run = build_run_config(args)
    ds = load(run.data, data_dir=args.data_dir)
    extra: dict[str, Any] = {}
    if run.fold is not None:
        from hopnet.datasets.splits import grouped_kfold

        train_idx, test_idx = grouped_kfold(ds, run.folds, seed=run.training.seed)[run.fold]
        ds = ds.subset(train_idx)
        extra["fold"] = {"n_folds": run.folds, "fold": run.fold, "seed": run.training.seed,
                         "n_train": int(len(train_idx)), "n_test": int(len(test_idx))}
    out = Path(run.out)
    if run.model == "classical":
        folder = _train_classical(ds, out, run)
    else:
        from hopnet.training.train import train

        folder = train(ds, run.gnn, run.training, out, resume=args.resume, extra_metadata=extra)
    if folder is not None:  # None in a DDP worker process; rank 0 reports
        print(f"model written to {folder}")
    return 0


def _train_classical(ds: Any, out: Path, run: Any) -> Path:
    try:
        from hopnet.models.classical import ClassicalConfig, train_classical
    except ImportError as exc:
        raise HopnetError(f"the classical model is not available in this build ({exc})") from None
    try:
        config = ClassicalConfig(**run.classical)
    except TypeError as exc:
        raise HopnetError(f"classical config: {exc}") from None
    seeds = tuple(run.training.seed + k for k in range(run.training.ensemble))
    return Path(train_classical(ds, out, config, seeds=seeds))
