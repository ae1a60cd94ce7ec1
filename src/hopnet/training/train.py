"""``train``: fit a barrier model (or an ensemble) with Lightning and write a ``gnn`` model folder.

Output layout::

    OUT/
      model/                   the model folder (kind "gnn"): config.json, metadata.json, weights.pt
      runs/member-K/           per ensemble member: checkpoints/last.ckpt (+ best.ckpt with a
                               validation fold), logs/version_N/metrics.csv, final.pt (done marker)

``resume=True`` continues each unfinished member from its ``last.ckpt`` (``ckpt_path="last"``)
and reuses members that already finished; without it, the members' run folders are started afresh.
"""

from __future__ import annotations

import logging
import os
import shutil
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np
import torch

from hopnet.infra.errors import DataError, HopnetError
from hopnet.infra.integrity import CorruptFileError, load_torch_sealed, save_torch_sealed
from hopnet.models.barrier import BarrierModelConfig, GNNPredictor, build_model
from hopnet.models.folder import WEIGHTS_FILE
from hopnet.training.checkpoint import SealedCheckpointIO, read_checkpoint
from hopnet.training.config import TrainingConfig
from hopnet.training.transfer import start_from
from hopnet.models.inputs import BarrierGraphs, make_loader

log = logging.getLogger(__name__)

MODEL_DIR = "model"
RUNS_DIR = "runs"
FINAL_FILE = "final.pt"


def check_targets(dataset: Sequence[Any]) -> np.ndarray:
    """Targets (eV) as float64; DataError naming the first entry whose target is not finite."""
    y = np.array([getattr(e, "target", np.nan) for e in dataset], dtype=float)
    bad = np.flatnonzero(~np.isfinite(y))
    if bad.size:
        e = dataset[int(bad[0])]
        raise DataError(f"entry {getattr(e, 'id', int(bad[0]))!r} has a non-finite target "
                        f"({y[bad[0]]}); {bad.size} such entries; fix the data before training")
    return y


def carve_validation(dataset: Sequence[Any], fraction: float, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """(train, val) indices: whole groups (compounds when every entry has ``meta['compound']``,
    else entries) are moved to validation, in a seeded order, until ``fraction`` of the entries
    is reached; at least one group stays in training."""
    from hopnet.datasets.splits import group_keys

    n = len(dataset)
    idx = np.arange(n)
    if fraction <= 0 or n < 2:
        return idx, idx[:0]
    keys = np.asarray(group_keys(dataset), dtype=object).astype(str)
    names, inverse = np.unique(keys, return_inverse=True)
    if len(names) < 2:
        return idx, idx[:0]
    order = np.random.default_rng(seed).permutation(len(names))
    want = max(1, int(round(fraction * n)))
    val_groups: list[int] = []
    count = 0
    for g in order[:-1]:
        if count >= want:
            break
        val_groups.append(int(g))
        count += int((inverse == g).sum())
    is_val = np.isin(inverse, val_groups)
    return idx[~is_val], idx[is_val]


def _float_state(model: torch.nn.Module) -> dict:
    return {k: v.detach().clone().cpu() for k, v in model.state_dict().items()}


def _graph_cache(config: TrainingConfig) -> Any:
    from hopnet.graphs import GraphCache

    if config.cache_dir == "none":
        return None
    return GraphCache(config.cache_dir) if config.cache_dir else GraphCache()


def _quiet_lightning() -> None:
    """Lightning's banner lines (GPU/TPU available, tips) at hopnet's log level, not above it;
    `hopnet -v` shows them."""
    import warnings

    level = max(logging.getLogger().getEffectiveLevel(), logging.INFO)
    for name in ("lightning", "lightning.pytorch", "lightning.fabric"):
        logging.getLogger(name).setLevel(level)
    warnings.filterwarnings("ignore", message=r".*isinstance\(treespec, LeafSpec\).*")
    warnings.filterwarnings("ignore", message=r".*defined a `validation_step` but have no `val_dataloader`.*")
    # a resumed run writes into its own checkpoint folder on purpose
    warnings.filterwarnings("ignore", message=r"Checkpoint directory .* exists and is not empty")


def launched_worker() -> bool:
    """True in a process that a distributed launcher started besides the main one (rank > 0):
    such a process must not clear run folders or write results."""
    return any(int(os.environ.get(v, "0") or 0) > 0 for v in ("LOCAL_RANK", "NODE_RANK", "RANK"))


def prepare_run(run_dir: Path, resume: bool, seed: int) -> dict | None:
    """Start a run folder: the finished result (``final.pt``) when resuming a finished run, else
    None after clearing the folder (unless resuming, or in a launched DDP worker) and seeding
    python / numpy / torch with ``seed``."""
    import lightning as L

    _quiet_lightning()
    final = run_dir / FINAL_FILE
    if resume and final.exists():
        try:
            return load_torch_sealed(final, "finished-run file")
        except CorruptFileError as exc:  # the run is redone from its last checkpoint
            log.warning("%s; continuing the run from its last checkpoint instead", exc)
            final.unlink()
    if not resume and run_dir.exists() and not launched_worker():
        shutil.rmtree(run_dir)
    run_dir.mkdir(parents=True, exist_ok=True)
    L.seed_everything(seed, workers=True, verbose=False)
    return None


def fit_module(lit: Any, train_data: Any, val_data: Any, config: TrainingConfig, run_dir: Path,
               seed: int, resume: bool, callbacks: Sequence[Any] = (), label: str = "model") -> dict:
    """Fit a Lightning module whose network is ``lit.model`` and which logs ``val_mae``, on
    graph data sets with ``n_atoms`` / ``n_line_edges`` (size-capped batches), with
    ``ModelCheckpoint`` (best on ``val_mae`` + last), early stopping, a CSV log and resume from
    ``run_dir/checkpoints/last.ckpt``. Writes ``run_dir/final.pt`` (rank 0) and returns
    {"state" (best, else last weights), "seed", "epochs", "best_epoch", "best_val_mae", "rank"}."""
    import lightning as L
    from lightning.pytorch.callbacks import EarlyStopping, ModelCheckpoint
    from lightning.pytorch.loggers import CSVLogger

    final = run_dir / FINAL_FILE
    has_val = val_data is not None and len(val_data) > 0
    # last.ckpt, rewritten after every epoch, is the resume point (Lightning >= 2.5 refreshes a
    # save_last copy only in epochs in which a top-k checkpoint was saved: never without a
    # validation fold, so a killed run would lose every epoch); best.ckpt follows val_mae
    cbs: list[Any] = [ModelCheckpoint(dirpath=run_dir / "checkpoints", filename="last", monitor=None,
                                      save_top_k=1, enable_version_counter=False)]
    best = ModelCheckpoint(dirpath=run_dir / "checkpoints", filename="best", monitor="val_mae", mode="min",
                           save_top_k=1) if has_val else None
    cbs += [*([best] if best else []), *callbacks]
    if has_val and config.patience > 0:
        cbs.append(EarlyStopping(monitor="val_mae", mode="min", patience=config.patience))
    # the last GCN layer's bond update feeds nothing, and a multi-property batch may lack a
    # property (its head unused): plain DDP would stop at the first step, so it looks for them
    strategy = {"ddp": "ddp_find_unused_parameters_true",
                "ddp_spawn": "ddp_spawn_find_unused_parameters_true"}.get(config.strategy, config.strategy)
    trainer = L.Trainer(
        max_epochs=config.epochs, accelerator=config.accelerator, devices=config.devices,
        strategy=strategy, num_nodes=config.num_nodes,
        deterministic=True, callbacks=cbs, logger=CSVLogger(run_dir, name="logs"),
        enable_progress_bar=config.progress_bar, enable_model_summary=False,
        num_sanity_val_steps=0, use_distributed_sampler=False, log_every_n_steps=1,
        gradient_clip_val=config.gradient_clip, default_root_dir=run_dir,
        precision=config.precision, plugins=[SealedCheckpointIO()],
    )
    train_loader = make_loader(train_data, config.batch_size, shuffle=True, seed=seed,
                               max_atoms=config.max_batch_atoms,
                               max_line_edges=config.max_batch_line_edges, num_workers=config.num_workers)
    val_loader = make_loader(val_data, config.batch_size, shuffle=False,
                             max_atoms=config.max_batch_atoms,
                             max_line_edges=config.max_batch_line_edges) if has_val else None
    # Lightning creates an epoch's batch iterator before its set_epoch call, and its epoch counters
    # are shifted after a resume; the optimizer step at which the epoch starts is exact in both
    # cases, so it keys the shuffle and a resumed run sees the same batches as an uninterrupted one
    # (the first iterator of a resumed run is even made before the step counter is restored)
    last = run_dir / "checkpoints" / "last.ckpt"
    start = 0
    if resume and last.is_file():
        start = int(read_checkpoint(last).get("global_step", 0))
    train_loader.batch_sampler.epoch_fn = lambda: max(trainer.global_step, start)
    # DDP: every process takes its share of the (identically shuffled) training batches; the
    # validation fold is evaluated whole by each process, so val_mae agrees across processes
    train_loader.batch_sampler.shard_fn = lambda: (trainer.world_size, trainer.global_rank)
    trainer.fit(lit, train_loader, val_loader, ckpt_path="last" if resume and last.is_file() else None)
    if trainer.interrupted:
        raise HopnetError(f"training of {label} was interrupted; rerun with --resume to continue")
    best_path = best.best_model_path if best else ""
    if best_path and Path(best_path).is_file():
        ck = read_checkpoint(best_path)
        state = {key[len("model."):]: v for key, v in ck["state_dict"].items() if key.startswith("model.")}
        best_epoch = int(ck.get("epoch", -1))
    else:
        state = _float_state(lit.model)
        best_epoch = int(trainer.current_epoch) - 1
    score = best.best_model_score if best else None
    result = {
        "state": state,
        "seed": int(seed),
        "epochs": int(trainer.current_epoch),
        "best_epoch": best_epoch,
        "best_val_mae": float(score) if score is not None else None,
    }
    if trainer.global_rank == 0:
        save_torch_sealed(result, final)
    result["rank"] = int(trainer.global_rank)
    return result


def fit_ensemble(make_model: Callable[[int], torch.nn.Module], train_data: Any, val_data: Any,
                 config: TrainingConfig, out_dir: Path, resume: bool = False,
                 callbacks: Sequence[Any] = ()) -> list[dict] | None:
    """Fit ``config.ensemble`` members, member k with seed ``config.seed + k`` in
    ``out_dir/runs/member-k`` (:func:`fit_module` with the one :class:`LitModule`);
    ``make_model(seed)`` builds a member's network (scaling set, weights transferred, strategy
    applied), after the run's seeding. With ``resume`` a finished member is reused and an
    unfinished one continues from its last checkpoint. Returns each member's result dict (None
    in a DDP worker process of rank > 0: rank 0 writes the model folder)."""
    from hopnet.training.module import LitModule

    prev_det = torch.are_deterministic_algorithms_enabled()
    members, rank = [], 0
    try:
        for k in range(config.ensemble):
            seed = config.seed + k
            run_dir = out_dir / RUNS_DIR / f"member-{k}"
            done = prepare_run(run_dir, resume, seed)
            if done is not None:
                log.info("member %d already finished (%s); reusing it", k, run_dir / FINAL_FILE)
                members.append(done)
                continue
            res = fit_module(LitModule(make_model(seed), config), train_data, val_data, config, run_dir, seed,
                             resume, callbacks, label=f"member {k}")
            rank = max(rank, res.pop("rank", 0))
            members.append(res)
    finally:
        torch.use_deterministic_algorithms(prev_det)
    return None if rank > 0 else members


def train(dataset: Any, model_config: BarrierModelConfig, training_config: TrainingConfig,
          out_dir: str | os.PathLike, resume: bool = False, callbacks: Sequence[Any] = (),
          extra_metadata: dict | None = None, strategy: str | None = None) -> Path | None:
    """Train ``training_config.ensemble`` members on ``dataset`` (a ``hopnet.datasets.Dataset``
    or a list of ``Entry``; targets in eV) and write the model folder ``out_dir/model``.

    A validation fold (whole compounds, ``val_fraction``) is carved from ``dataset`` for early
    stopping and model selection; every member shares it. With ``model_config.pretrained_encoder``
    each member starts from that encoder and ``strategy`` (:mod:`hopnet.training.transfer`; None:
    everything trains) says what is frozen. Returns the model folder (None in a DDP worker process
    of rank > 0: rank 0 writes it)."""
    from hopnet.metrics import regression_metrics
    from hopnet.models.folder import new_metadata, write_model_dir

    out_dir = Path(out_dir)
    y = check_targets(dataset)
    if len(y) < 2:
        raise DataError(f"need at least 2 training paths, got {len(y)}")
    config = training_config
    train_idx, val_idx = carve_validation(dataset, config.val_fraction, config.seed)
    entries = list(dataset)
    log.info("building graphs of %d paths (%s)", len(entries), model_config.variant)
    all_data = BarrierGraphs(entries, model_config, targets=y, cache=_graph_cache(config))
    train_data = all_data.subset(train_idx)
    val_data = all_data.subset(val_idx) if len(val_idx) else None

    ty = y[train_idx]
    scaling: dict[str, Any] = {"target_mean": float(ty.mean()), "target_std": float(ty.std()) or 1.0}
    if all_data.descriptors is not None:
        d = all_data.descriptors[train_idx]
        scaling["desc_mean"], scaling["desc_std"] = d.mean(axis=0), d.std(axis=0)

    def make(seed: int) -> torch.nn.Module:
        model = build_model(model_config, train_data.n_descriptors)
        if model_config.pretrained_encoder:
            start_from(model, model_config.pretrained_encoder, strategy)
        model.set_scaling(scaling["target_mean"], scaling["target_std"], scaling.get("desc_mean"),
                          scaling.get("desc_std"))
        return model

    members = fit_ensemble(make, train_data, val_data, config, out_dir, resume, callbacks)
    if members is None:
        return None

    # validation metrics of each member and of the ensemble mean (eV)
    models = []
    for m in members:
        model = build_model(model_config, all_data.n_descriptors)
        model.load_state_dict(m["state"], strict=True)
        models.append(model)
    metrics: dict[str, Any] = {}
    member_info = [{k: m[k] for k in ("seed", "epochs", "best_epoch", "best_val_mae")} for m in members]
    if val_data is not None:
        pred = GNNPredictor("val", model_config, models, {}).predict_graphs(val_data, config.batch_size)
        metrics["val"] = regression_metrics(y[val_idx], pred.mean)
        for info, row in zip(member_info, pred.members):
            r = regression_metrics(y[val_idx], row)
            info["val_mae"], info["val_r2"] = r["mae"], r["r2"]

    from hopnet.descriptors import FEATURE_NAMES

    metadata = new_metadata(
        name=out_dir.name,
        kind="gnn",
        variant=model_config.variant,
        model_number=model_config.model_number,
        data_hash=getattr(dataset, "sha256", None),
        dataset=dataset.provenance() if hasattr(dataset, "provenance") else None,
        n_train=int(len(train_idx)),
        n_val=int(len(val_idx)),
        val_ids=[entries[i].id for i in val_idx],
        train_ids=[str(entries[i].id) for i in train_idx],
        target_scaling={"mean": scaling["target_mean"], "std": scaling["target_std"]},
        n_descriptors=all_data.n_descriptors,
        descriptor_names=list(FEATURE_NAMES) if all_data.n_descriptors else [],
        seeds=[m["seed"] for m in members],
        members=member_info,
        metrics=metrics,
        weights_dtype="float16" if config.float16_weights else "float32",
        **({"transfer": {"from": str(model_config.pretrained_encoder), "strategy": strategy or "all"}}
           if model_config.pretrained_encoder else {}),
        **(extra_metadata or {}),
    )
    run_config = {"kind": "gnn", "model": model_config.to_dict(), "training": config.to_dict()}

    def payload(folder: Path) -> None:
        states = []
        for m in members:
            s = m["state"]
            if config.float16_weights:
                s = {k: v.half() if v.is_floating_point() else v for k, v in s.items()}
            states.append(s)
        torch.save(states, folder / WEIGHTS_FILE)

    folder = write_model_dir(out_dir / MODEL_DIR, run_config, metadata, payload)
    if "val" in metrics:
        log.info("model written to %s (val MAE %.3f eV, R² %.3f)", folder, metrics["val"]["mae"],
                 metrics["val"]["r2"])
    return folder
