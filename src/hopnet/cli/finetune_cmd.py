"""``hopnet finetune``: start from a pre-trained model and train on new data with a named transfer
strategy. Property data (a pre-training set, a JSON list, a CSV of structure files) gives a
property model; migration-barrier data (``migration-barriers``, a band file, ``hopnet
import-neb`` output) gives a barrier model of ``--variant`` whose encoder starts from the source.
``--from none`` trains the same model from scratch (the baseline)."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from hopnet.cli.common import require
from hopnet.cli.pretrain_cmd import add_training_flags, encoder_config, training_config

VARIANTS = ("initial-final", "initial-delta", "band", "band-attention")


def register(subparsers: Any) -> None:
    p = subparsers.add_parser(
        "finetune", help="fine-tune a pre-trained encoder on a property or on migration barriers",
        description="Fine-tune a model folder on new data. Strategies (see "
                    "hopnet.training.transfer): all, last-layer, freeze-graph (2-body GCN layers "
                    "frozen), freeze-line (3-body ALIGNN layers frozen), new-head, "
                    "new-head-freeze-N (fresh head, embeddings + first N layers frozen). A "
                    "multi-property source always gets a fresh head, and so does a barrier model.",
    )
    p.add_argument("--from", dest="source", default=None,
                   help="model folder (OUT/model of hopnet pretrain / train), 'mpt' (shipped) or 'none' "
                        "(scratch); required")
    p.add_argument("--data", default=None,
                   help="registered name (e.g. migration-barriers, fe), a .json/.json.gz list like the "
                        "shared files, or a CSV of (structure file, target) rows; required")
    p.add_argument("--property", default=None,
                   help="property data: name of the new head (default: the data's name)")
    p.add_argument("--variant", choices=VARIANTS, default="band",
                   help="barrier data: the barrier model (published Model 1, 2, 3, 4; default band)")
    p.add_argument("--strategy", default="new-head", help="transfer strategy (default new-head)")
    p.add_argument("--user-weight", type=float, default=5.0,
                   help="--from a classical model (e.g. default): weight of each of your paths against one "
                        "path of the model's own training data in the refit (default 5)")
    p.add_argument("--size", type=int, default=None, help="fine-tune on N entries of the data (default: all)")
    p.add_argument("--sampling", choices=("random", "match"), default="random",
                   help="how the N are drawn: uniformly, or matching the target distribution (default random)")
    add_training_flags(p)
    p.set_defaults(func=_run)


def _run(args: argparse.Namespace) -> int:
    from hopnet.datasets.multiprop import load_finetune_data
    from hopnet.training.pretrain import sample_indices
    from hopnet.training.transfer import check_strategy

    require(args, source="--from", data="--data")
    check_strategy(args.strategy)
    training = training_config(args)
    ds = load_finetune_data(args.data, data_dir=args.data_dir)
    idx = sample_indices(ds.targets, args.size, args.sampling, training.seed)
    source = None if args.source.lower() == "none" else args.source
    extra = {"finetune_data": {"spec": args.data, "size": len(idx), "sampling": args.sampling,
                               "n_available": len(ds), "data_hash": getattr(ds, "sha256", None)}}
    if getattr(ds, "task", "") == "migration-barrier":
        folder = _barrier(args, ds.subset(idx), source, training, extra)
    else:
        folder = _property(args, ds.subset(idx), source, training, extra)
    if folder is not None:
        print(f"model written to {folder}")
    return 0


def _property(args: argparse.Namespace, ds: Any, source: str | None, training: Any, extra: dict) -> Any:
    from hopnet.datasets.multiprop import MultiPropertyDataset
    from hopnet.training.pretrain import finetune

    prop = args.property or Path(str(ds.name)).name.split(".")[0] or "target"
    data = MultiPropertyDataset.single(ds, prop)
    return finetune(source, data, args.strategy, training, Path(args.out), resume=args.resume,
                    encoder=encoder_config(args), extra_metadata=extra)


def _barrier(args: argparse.Namespace, ds: Any, source: str | None, training: Any, extra: dict) -> Any:
    """A barrier model of ``args.variant``: the source's encoder architecture and weights (a
    property or gnn model folder, or a shipped name), trained with the strategy; --from none:
    the same model from scratch with the --small/--paper encoder."""
    from hopnet.infra.errors import HopnetError
    from hopnet.models.barrier import BarrierModelConfig
    from hopnet.models.folder import read_model_files, resolve_model_dir
    from hopnet.training.train import train

    if source is None:
        config = BarrierModelConfig(variant=args.variant, encoder=encoder_config(args))
        return train(ds, config, training, Path(args.out), resume=args.resume, extra_metadata=extra)
    folder = resolve_model_dir(source)
    src_config, src_meta = read_model_files(folder)
    if src_config.get("kind") == "classical":
        return _refit_classical(args, ds, folder, src_config, src_meta, extra)
    encoder = (src_config.get("model") or {}).get("encoder")
    if src_config.get("kind") not in ("property", "gnn") or encoder is None:
        raise HopnetError(f"--from {source}: a {src_config.get('kind')!r} model has no graph encoder to "
                          "start from; give a property (hopnet pretrain, 'mpt') or gnn model folder")
    graph = dict((src_config.get("model") or {}).get("graph") or {})
    config = BarrierModelConfig(variant=args.variant, encoder=encoder,
                                graph={**graph, "mobile_flag": True}, pretrained_encoder=str(folder))
    return train(ds, config, training, Path(args.out), resume=args.resume, extra_metadata=extra,
                 strategy=args.strategy)


def _refit_classical(args: argparse.Namespace, ds: Any, folder: Path, config: dict, meta: dict, extra: dict) -> Any:
    """A classical source (trees) is refitted, with its own recipe and seeds, on the union of its
    training data and the user's paths (a user path replaces a training path of the same id),
    each user path weighted ``--user-weight``."""
    import hashlib

    import numpy as np

    from hopnet.datasets import Dataset, load
    from hopnet.infra.errors import HopnetError
    from hopnet.models.classical import ClassicalConfig, train_classical

    cfg = ClassicalConfig.from_dict(config)
    if cfg.neb:
        raise HopnetError(f"--from {args.source}: a model with NEB features refits only with hopnet neb results "
                          "of your paths; fine-tune 'default' instead")
    if not (np.isfinite(args.user_weight) and args.user_weight > 0):
        raise HopnetError(f"--user-weight must be a positive number, got {args.user_weight}")
    base = load((meta.get("data") or {}).get("name") or "migration-barriers", data_dir=args.data_dir)
    mine = {str(e.id) for e in ds}
    entries = [e for e in base if str(e.id) not in mine] + list(ds)
    weights = np.array([1.0] * (len(entries) - len(ds)) + [args.user_weight] * len(ds))
    union = Dataset(f"{base.name}+{ds.name}", entries, hashlib.sha256(f"{base.sha256}+{ds.sha256}".encode()).hexdigest(),
                    task=base.task, units=base.units, source="union")
    seeds = meta.get("seeds") or [0]
    extra = {**extra, "finetune": {"from": str(folder), "base_data": base.provenance(), "user_weight": args.user_weight,
                                   "n_user": len(ds), "n_base": len(entries) - len(ds)}}
    return train_classical(union, Path(args.out), cfg, seeds=seeds, extra_metadata=extra, sample_weight=weights)
