"""Fitting property models (:mod:`hopnet.models.property`): single- and multi-property
pre-training (MPT) and fine-tuning. Targets are in the data's units (the pre-training sets are
min-max scaled to [-1, 1]).

**Loss** (:func:`masked_l1`), with e_ip = |ŷ_ip − y_ip| on the standardised scale and δ_ip the
presence mask. ``normalisation``:

* ``"row"`` (default): L = (1/N) Σ_i (1/|P_i|) Σ_p e_ip δ_ip, with |P_i| = Σ_p δ_ip. Each
  structure counts once whatever number of properties it carries: a row with 5 properties does
  not weigh 5 times a row with one. The property sets then weigh by their number of rows.
* ``"property"``: L = (1/P_b) Σ_p (Σ_i e_ip δ_ip / Σ_i δ_ip) over the P_b properties present in
  the batch: every property weighs the same whatever its size (pz's 941 rows = bg's 9,395).
* ``"sum"``: the literal L = (1/N) Σ_i Σ_p e_ip δ_ip (rows with more properties weigh more).

Validation: MAE of each property over its present rows (data units); ``val_mae`` (model
selection, early stopping) is the mean of those per-property MAEs.

**Fine-tuning** (:func:`finetune`): the encoder always comes from the source; the source head is
kept only when the source has exactly one property and the strategy keeps heads
(see :mod:`hopnet.training.transfer`); an MPT source always gives a fresh head.
"""

from __future__ import annotations

import logging
import os
from dataclasses import replace
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np
import torch

from hopnet.datasets.multiprop import MultiPropertyDataset
from hopnet.graphs.config import GraphConfig
from hopnet.infra.errors import DataError
from hopnet.models.folder import WEIGHTS_FILE
from hopnet.models.property import (KIND, MultiPropertyModel, PropertyConfigError, PropertyGraphs,
                                    PropertyModelConfig, load_property_model, predict_graphs)
from hopnet.nn.config import EncoderConfig
from hopnet.training.config import TrainingConfig

log = logging.getLogger(__name__)

MODEL_DIR = "model"
SAMPLINGS = ("random", "match")


def sample_indices(targets: np.ndarray, size: int | None, method: str = "random", seed: int = 0) -> np.ndarray:
    """Sorted indices of a training subset of ``size`` entries (all when None or larger).

    ``"random"``: a seeded uniform sample. ``"match"``: matches the target distribution: the
    entries sorted by target are cut into ``size`` strata of (nearly) equal count and one entry
    is drawn from each, so the subset's quantiles follow the full set's."""
    y = np.asarray(targets, dtype=float)
    n = len(y)
    if method not in SAMPLINGS:
        raise DataError(f"sampling must be one of {', '.join(SAMPLINGS)}, got {method!r}")
    if size is None or size >= n:
        return np.arange(n)
    if size < 1:
        raise DataError(f"fine-tune size must be >= 1, got {size}")
    rng = np.random.default_rng(seed)
    if method == "random":
        return np.sort(rng.permutation(n)[:size])
    order = np.argsort(y, kind="stable")
    edges = np.linspace(0, n, size + 1).round().astype(int)
    picks = [order[rng.integers(a, b)] for a, b in zip(edges[:-1], edges[1:])]
    return np.sort(np.asarray(picks, dtype=np.int64))


def _scaling(data: MultiPropertyDataset, idx: np.ndarray, how: str) -> tuple[np.ndarray, np.ndarray]:
    p = len(data.properties)
    if how == "none":
        return np.zeros(p), np.ones(p)
    mean, std = np.zeros(p), np.ones(p)
    for j in range(p):
        y = data.targets[idx, j][data.mask[idx, j]]
        if y.size:
            mean[j], std[j] = float(y.mean()), float(y.std()) or 1.0
    return mean, std


def _metrics(models: Sequence[MultiPropertyModel], graphs: PropertyGraphs, config: TrainingConfig) -> dict:
    from hopnet.metrics import regression_metrics

    pred = predict_graphs(models, graphs, config.batch_size, config.max_batch_atoms,
                          config.max_batch_line_edges)
    out = {}
    for j, name in enumerate(graphs.properties):
        sel = graphs.mask[:, j]
        if sel.sum() >= 2:
            out[name] = regression_metrics(graphs.targets[sel, j].astype(float), pred[sel, j])
    return out


def fit_property_model(make_model: Callable[[int], MultiPropertyModel], data: MultiPropertyDataset,
                       training: TrainingConfig, out_dir: str | os.PathLike, resume: bool = False,
                       callbacks: Sequence[Any] = (), extra_metadata: dict | None = None) -> Path | None:
    """Train ``training.ensemble`` members (``make_model(seed)`` builds each, weights transferred
    and strategy applied) on ``data`` and write the model folder ``out_dir/model``.

    A random validation fold (``training.val_fraction``) is carved for model selection.
    Returns the model folder (None in a DDP worker process of rank > 0)."""
    from hopnet.models.folder import new_metadata, write_model_dir
    from hopnet.training.train import _graph_cache, carve_validation, fit_ensemble

    out_dir = Path(out_dir)
    if len(data) < 2:
        raise DataError(f"need at least 2 training structures, got {len(data)}")
    train_idx, val_idx = carve_validation(data, training.val_fraction, training.seed)
    cfg = make_model(training.seed).config
    if tuple(cfg.properties) != tuple(data.properties):
        raise PropertyConfigError(f"model properties {list(cfg.properties)} differ from the data's "
                                  f"{list(data.properties)}")
    mean, std = _scaling(data, train_idx, cfg.target_scaling)
    log.info("building graphs of %d structures", len(data))
    graphs = PropertyGraphs(data, cfg.graph, _graph_cache(training))
    train_g = graphs.subset(train_idx)
    val_g = graphs.subset(val_idx) if len(val_idx) else None

    def make(seed: int) -> MultiPropertyModel:
        model = make_model(seed)
        model.set_scaling(mean, std)
        return model

    members = fit_ensemble(make, train_g, val_g, training, out_dir, resume, callbacks)
    if members is None:
        return None

    models = []
    for m in members:
        model = MultiPropertyModel(cfg)
        model.load_state_dict(m["state"], strict=True)
        models.append(model)
    metrics = {"val": _metrics(models, val_g, training)} if val_g is not None else {}
    member_info = [{k: m[k] for k in ("seed", "epochs", "best_epoch", "best_val_mae")} for m in members]
    metadata = new_metadata(
        name=out_dir.name, kind=KIND, target=", ".join(cfg.properties), units="data units",
        properties=list(cfg.properties), data_hash=data.sha256, dataset=data.provenance(),
        n_train=int(len(train_idx)), n_val=int(len(val_idx)),
        target_scaling={"mean": mean.tolist(), "std": std.tolist()},
        seeds=[m["seed"] for m in members], members=member_info, metrics=metrics,
        **(extra_metadata or {}),
    )
    run_config = {"kind": KIND, "model": cfg.to_dict(), "training": training.to_dict()}

    def payload(folder: Path) -> None:
        torch.save([m["state"] for m in members], folder / WEIGHTS_FILE)

    folder = write_model_dir(out_dir / MODEL_DIR, run_config, metadata, payload)
    log.info("property model written to %s", folder)
    return folder


def pretrain(data: MultiPropertyDataset, encoder: EncoderConfig, training: TrainingConfig,
             out_dir: str | os.PathLike, resume: bool = False, graph: GraphConfig | None = None,
             head_hidden: int | None = None, normalisation: str = "row",
             target_scaling: str = "standardize", callbacks: Sequence[Any] = ()) -> Path | None:
    """Pre-train one encoder with one head per property of ``data`` (P = 1: pair-wise PT;
    P > 1: MPT). Returns the model folder ``out_dir/model``."""
    cfg = PropertyModelConfig(properties=data.properties, encoder=encoder, graph=graph or GraphConfig(),
                              head_hidden=head_hidden, normalisation=normalisation,  # type: ignore[arg-type]
                              target_scaling=target_scaling)  # type: ignore[arg-type]
    return fit_property_model(lambda seed: MultiPropertyModel(cfg), data, training, out_dir, resume,
                              callbacks, extra_metadata={"stage": "pretrain"})


def finetune(source: str | os.PathLike | None, data: MultiPropertyDataset, strategy: str,
             training: TrainingConfig, out_dir: str | os.PathLike, resume: bool = False,
             encoder: EncoderConfig | None = None, callbacks: Sequence[Any] = (),
             extra_metadata: dict | None = None) -> Path | None:
    """Fine-tune the property model folder ``source`` on ``data`` (its properties name the new
    heads) with a strategy of :mod:`hopnet.training.transfer`. ``source=None`` trains from
    scratch with ``encoder`` (the baseline). Returns the model folder ``out_dir/model``."""
    from hopnet.training.transfer import apply_strategy, plan_strategy, read_state, transfer

    if source is None:
        cfg = PropertyModelConfig(properties=data.properties, encoder=encoder or EncoderConfig.small())
        return fit_property_model(lambda seed: MultiPropertyModel(cfg), data, training, out_dir, resume,
                                  callbacks, extra_metadata={"stage": "scratch", **(extra_metadata or {})})
    src_models, src_cfg, src_meta = load_property_model(source)
    cfg = replace(src_cfg, properties=data.properties)
    state = read_state(src_models[0].state_dict())
    plan = plan_strategy(strategy, MultiPropertyModel(cfg))
    keep_head = len(src_cfg.properties) == 1 and len(cfg.properties) == 1 and not plan.new_head

    def make(seed: int) -> MultiPropertyModel:
        torch.manual_seed(seed)
        model = MultiPropertyModel(cfg)
        transfer(state, model, include=["encoder"])
        if keep_head:
            old, new = f"head.heads.{src_cfg.properties[0]}.", f"head.heads.{cfg.properties[0]}."
            head = {new + k[len(old):]: v for k, v in state.items() if k.startswith(old)}
            transfer(head, model, include=["head"])
        apply_strategy(model, strategy, force_new_head=not keep_head)
        return model

    meta = {"stage": "finetune", "strategy": strategy, "head": "kept" if keep_head else "new",
            "source": {"folder": str(source), "properties": list(src_cfg.properties),
                       "data_hash": src_meta.get("data_hash"), "git_commit": src_meta.get("git_commit")}}
    return fit_property_model(make, data, training, out_dir, resume, callbacks,
                              extra_metadata={**meta, **(extra_metadata or {})})


