"""``hopnet pretrain``: pre-train an ALIGNN encoder on one property (pair-wise transfer) or on
several at once (multi-property pre-training, one head per property) and write a property model
folder OUT/model."""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

from hopnet.cli.common import add_config_flag, add_optimiser_flags, require


def add_training_flags(p: argparse.ArgumentParser) -> None:
    """Flags shared by ``pretrain`` and ``finetune`` (TrainingConfig fields, Lightning pass-through)."""
    add_config_flag(p)
    size = p.add_mutually_exclusive_group()
    size.add_argument("--small", dest="size_preset", action="store_const", const="small",
                      help="small encoder (CPU runs; the default)")
    size.add_argument("--paper", dest="size_preset", action="store_const", const="paper",
                      help="published ALIGNN size (4 ALIGNN + 4 GCN layers, 256 hidden; default: --small)")
    add_optimiser_flags(p)
    p.add_argument("--val-fraction", type=float, default=None,
                   help="fraction held out for early stopping (default 0.1)")
    p.add_argument("--patience", type=int, default=None,
                   help="epochs without validation improvement before stopping (default 20)")
    p.add_argument("--cache-dir", default=None,
                   help="graph cache folder, 'none' = no disk cache (default: the user cache)")
    p.add_argument("--devices", default=None, help="Lightning devices, e.g. 2 = two processes (default 1)")
    p.add_argument("--accelerator", default=None, help="Lightning accelerator: cpu, gpu, auto (default cpu)")
    p.add_argument("--strategy-ddp", dest="dist_strategy", nargs="?", const="ddp", default=None,
                   metavar="NAME", help="Lightning strategy (bare flag = ddp; gloo on CPU; default: auto)")
    p.add_argument("--num-nodes", type=int, default=None, help="machines for DDP (default 1)")
    p.add_argument("--data-dir", default=None, help="data folder (default: $HOPNET_DATA_DIR)")
    p.add_argument("--out", default=None, help="output folder (the model folder is OUT/model); required")
    p.add_argument("--resume", action="store_true",
                   help="continue from the last checkpoints in OUT (default: start afresh)")
    p.add_argument("--no-progress", action="store_true", help="no progress bar (default: a bar on stderr)")


def training_config(args: argparse.Namespace) -> Any:
    from hopnet.training.config import TrainingConfig

    require(args, out="--out")

    kw: dict[str, Any] = {}
    for flag in ("epochs", "batch_size", "lr", "seed", "ensemble", "val_fraction", "patience",
                 "cache_dir", "accelerator", "num_nodes"):
        v = getattr(args, flag, None)
        if v is not None:
            kw[flag] = v
    if args.devices is not None:
        kw["devices"] = int(args.devices) if str(args.devices).isdigit() else args.devices
    if args.dist_strategy is not None:
        kw["strategy"] = args.dist_strategy
    if args.no_progress:
        kw["progress_bar"] = False
    return TrainingConfig(**kw)


def encoder_config(args: argparse.Namespace) -> Any:
    from hopnet.nn.config import EncoderConfig

    return EncoderConfig.paper() if args.size_preset == "paper" else EncoderConfig.small()


def register(subparsers: Any) -> None:
    p = subparsers.add_parser(
        "pretrain", help="pre-train an encoder on one or several properties",
        description="Pre-train an ALIGNN encoder with one head per property on the pre-training "
                    "sets (fe bg gv ph dc pz ebg). Several properties are merged into one table "
                    "(same structure = one row with several targets and a presence mask).",
    )
    p.add_argument("--properties", default="fe",
                   help="a property, a comma list, or 'all' (default fe)")
    p.add_argument("--exclude", action="append", default=[], metavar="P",
                   help="leave property P out (repeatable); e.g. --properties all --exclude pz (default: none)")
    p.add_argument("--max-size", type=int, default=None,
                   help="cap each property's set at N structures (seeded sample, before merging; default: no cap)")
    p.add_argument("--normalisation", choices=("row", "property", "sum"), default="row",
                   help="masked-loss averaging (see hopnet.training.pretrain; default row)")
    add_training_flags(p)
    p.set_defaults(func=_run)


def _run(args: argparse.Namespace) -> int:
    from hopnet.datasets.multiprop import load_multiprop
    from hopnet.training.pretrain import pretrain

    training = training_config(args)
    data = load_multiprop(args.properties, args.exclude, max_size=args.max_size, seed=training.seed,
                          data_dir=args.data_dir)
    print(json.dumps({"rows": len(data), **data.stats}))
    folder = pretrain(data, encoder_config(args), training, Path(args.out), resume=args.resume,
                      normalisation=args.normalisation)
    if folder is not None:
        print(f"model written to {folder}")
    return 0
