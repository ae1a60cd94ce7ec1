"""``hopnet finetune``: fine-tune a pre-trained property model (``hopnet pretrain``) on another
property with a named transfer strategy; ``--from none`` trains the same model from scratch."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from hopnet.cli.pretrain_cmd import add_training_flags, encoder_config, training_config


def register(subparsers: Any) -> None:
    p = subparsers.add_parser(
        "finetune", help="fine-tune a pre-trained encoder on a property",
        description="Fine-tune a property model folder on new data. Strategies (see "
                    "hopnet.training.transfer): all, last-layer, freeze-graph (2-body GCN layers "
                    "frozen), freeze-line (3-body ALIGNN layers frozen), new-head, "
                    "new-head-freeze-N (fresh head, embeddings + first N layers frozen). A "
                    "multi-property source always gets a fresh head.",
    )
    p.add_argument("--from", dest="source", required=True,
                   help="property model folder (OUT/model of hopnet pretrain), 'mpt' (shipped) or 'none' "
                        "(scratch); required")
    p.add_argument("--data", required=True,
                   help="registered name, a .json/.json.gz list like the shared files, or a CSV of "
                        "(structure file, target) rows; required")
    p.add_argument("--property", default=None, help="name of the new head (default: the data's name)")
    p.add_argument("--strategy", default="new-head", help="transfer strategy (default new-head)")
    p.add_argument("--size", type=int, default=None, help="fine-tune on N structures of the data (default: all)")
    p.add_argument("--sampling", choices=("random", "match"), default="random",
                   help="how the N are drawn: uniformly, or matching the target distribution (default random)")
    add_training_flags(p)
    p.set_defaults(func=_run)


def _run(args: argparse.Namespace) -> int:
    from hopnet.datasets.multiprop import MultiPropertyDataset, load_finetune_data
    from hopnet.training.pretrain import finetune, sample_indices

    training = training_config(args)
    ds = load_finetune_data(args.data, data_dir=args.data_dir)
    prop = args.property or Path(str(ds.name)).name.split(".")[0] or "target"
    idx = sample_indices(ds.targets, args.size, args.sampling, training.seed)
    data = MultiPropertyDataset.single(ds.subset(idx), prop)
    source = None if args.source.lower() == "none" else args.source
    extra = {"finetune_data": {"spec": args.data, "size": len(idx), "sampling": args.sampling,
                               "n_available": len(ds)}}
    folder = finetune(source, data, args.strategy, training, Path(args.out), resume=args.resume,
                      encoder=encoder_config(args), extra_metadata=extra)
    if folder is not None:
        print(f"model written to {folder}")
    return 0
