"""Transfer learning: named parameter groups, freezing, weight transfer, fine-tuning strategies.

**Parameter groups** (:func:`parameter_groups`), for any model with an ``encoder``
(:class:`~hopnet.nn.AlignnEncoder`) and a ``head``, in forward order:

* ``embeddings``: atom, bond-length and bond-angle embeddings (``encoder.*_embedding``);
* ``alignn.{i}``: the i-th ALIGNN layer (3-body: line-graph + crystal-graph convolution);
* ``gcn.{i}``: the i-th edge-gated GCN layer (2-body, crystal graph only);
* ``pooling``: the readout (parameters only with attention pooling);
* ``head``: everything under ``model.head``;
* any other top-level module is its own group (e.g. ``delta_embedding`` of barrier Model 2).

Group names accept shell patterns in :func:`freeze` / :func:`transfer` (``alignn.*``), and
``encoder`` stands for every encoder group.

**Strategies** (:data:`STRATEGIES`), applied by :func:`apply_strategy` to a model whose encoder
(and, where kept, head) already holds the pre-trained weights:

===================== ==========================================================================
``all``               keep the pre-trained head (single-property source), train everything
``last-layer``        freeze everything but the last ``nn.Linear`` of the head (a linear head:
                      the whole head, i.e. linear probing)
``freeze-graph``      freeze the 2-body GCN layers (``gcn.*``); the rest trains
``freeze-line``       freeze the 3-body ALIGNN layers (``alignn.*``); the rest trains
``new-head``          fresh (re-initialised) head, the whole encoder trains
``new-head-freeze-N`` fresh head; ``embeddings`` and the first N message-passing layers in
                      forward order (``alignn.0..``, then ``gcn.0..``) are frozen
===================== ==========================================================================

A source with several heads (MPT) or of another property always gives a fresh head (the
encoder is what transfers). Frozen means ``requires_grad = False`` *and* the group's batch-norm
layers kept in eval mode (:func:`keep_frozen_eval`), so a frozen block computes exactly the
pre-trained function and its running statistics stay bit-identical too.
"""

from __future__ import annotations

import fnmatch
import logging
import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterable, Mapping, Sequence

import torch
from torch import nn

from hopnet.infra.errors import HopnetError, ModelFileError
from hopnet.models.folder import WEIGHTS_FILE, read_weights

log = logging.getLogger(__name__)

STRATEGIES: dict[str, str] = {
    "all": "keep the pre-trained head (single-property source) and train every parameter",
    "last-layer": "train only the last linear layer of the head; everything else frozen",
    "freeze-graph": "freeze the 2-body GCN layers (gcn.*); the rest trains",
    "freeze-line": "freeze the 3-body ALIGNN / line-graph layers (alignn.*); the rest trains",
    "new-head": "fresh head; the whole encoder trains",
    "new-head-freeze-N": "fresh head; embeddings + the first N message-passing layers frozen",
}
_FREEZE_N = re.compile(r"^new-head-freeze-(\d+)$")


class TransferError(HopnetError, ValueError):
    """A transfer-learning request names an unknown strategy or group, or weights do not fit."""


def _encoder_module_groups(model: nn.Module) -> list[tuple[str, list[str]]]:
    enc = getattr(model, "encoder", None)
    if enc is None:
        raise TransferError(f"{type(model).__name__} has no encoder to group")
    emb = [f"encoder.{n}" for n in ("atom_embedding", "edge_embedding", "angle_embedding")
           if getattr(enc, n, None) is not None]
    out = [("embeddings", emb)]
    out += [(f"alignn.{i}", [f"encoder.alignn_layers.{i}"]) for i in range(len(enc.alignn_layers))]
    out += [(f"gcn.{i}", [f"encoder.gcn_layers.{i}"]) for i in range(len(enc.gcn_layers))]
    out.append(("pooling", ["encoder.pooling"]))
    return out


def module_groups(model: nn.Module) -> dict[str, list[str]]:
    """{group: [module paths]} in forward order (see the module docstring)."""
    groups = dict(_encoder_module_groups(model))
    for name, _ in model.named_children():
        if name == "encoder":
            continue
        groups[name] = [name]
    return groups


def _under(name: str, prefixes: Iterable[str]) -> bool:
    return any(name == p or name.startswith(p + ".") for p in prefixes)


def parameter_groups(model: nn.Module) -> dict[str, list[str]]:
    """{group: [parameter names]} in forward order; every parameter is in exactly one group."""
    groups = module_groups(model)
    names = [n for n, _ in model.named_parameters()]
    out = {g: [n for n in names if _under(n, mods)] for g, mods in groups.items()}
    missing = [n for n in names if not any(n in v for v in out.values())]
    if missing:  # parameters registered directly on the model
        out["other"] = missing
    return out


def encoder_groups(model: nn.Module) -> list[str]:
    return [g for g, _ in _encoder_module_groups(model)]


def resolve_groups(model: nn.Module, patterns: Sequence[str]) -> list[str]:
    """Group names matching ``patterns`` (shell patterns; ``encoder`` = every encoder group),
    in forward order; TransferError for a pattern that matches nothing."""
    known = list(module_groups(model))
    chosen: list[str] = []
    for pat in patterns:
        hits = encoder_groups(model) if pat == "encoder" else [g for g in known if fnmatch.fnmatchcase(g, pat)]
        if not hits:
            raise TransferError(f"no parameter group matches {pat!r}; groups: {', '.join(known)}")
        chosen += [g for g in hits if g not in chosen]
    return [g for g in known if g in chosen]


def freeze(model: nn.Module, groups: Sequence[str]) -> list[str]:
    """Set ``requires_grad = False`` on every parameter of ``groups`` and remember the groups'
    modules (``model._hopnet_frozen``) for :func:`keep_frozen_eval`. Returns the frozen
    parameter names."""
    names = resolve_groups(model, groups)
    mods = module_groups(model)
    params = parameter_groups(model)
    frozen_mods = list(getattr(model, "_hopnet_frozen", []))
    frozen: list[str] = []
    lookup = dict(model.named_parameters())
    for g in names:
        for n in params.get(g, []):
            lookup[n].requires_grad_(False)
            frozen.append(n)
        frozen_mods += [m for m in mods[g] if m not in frozen_mods]
    object.__setattr__(model, "_hopnet_frozen", frozen_mods)
    return frozen


def unfreeze_all(model: nn.Module) -> None:
    for p in model.parameters():
        p.requires_grad_(True)
    object.__setattr__(model, "_hopnet_frozen", [])


def keep_frozen_eval(model: nn.Module) -> None:
    """Put the frozen groups' modules in eval mode (batch norm uses and keeps its running
    statistics). Call after every ``model.train()``; the Lightning modules do it at the start of
    each training epoch."""
    for path in getattr(model, "_hopnet_frozen", []):
        try:
            model.get_submodule(path).eval()
        except AttributeError:
            continue


def _last_linear(module: nn.Module) -> list[str]:
    """Parameter-name prefixes (relative to ``module``) of the last ``nn.Linear`` of each head:
    one per entry of a ``MultiHead``, else one."""
    heads = getattr(module, "heads", None)
    subs = [(f"heads.{k}", h) for k, h in heads.items()] if isinstance(heads, nn.ModuleDict) else [("", module)]
    out = []
    for prefix, h in subs:
        last = [n for n, m in h.named_modules() if isinstance(m, nn.Linear)]
        if not last:
            raise TransferError("the head has no linear layer")
        out.append(".".join(p for p in (prefix, last[-1]) if p))
    return out


def reset_head(model: nn.Module) -> None:
    """Re-initialise every layer of ``model.head`` (a fresh head, default PyTorch init)."""
    for m in model.head.modules():
        if m is not model.head and hasattr(m, "reset_parameters"):
            m.reset_parameters()


@dataclass(frozen=True)
class StrategyPlan:
    """What a strategy does: ``new_head`` (re-initialise the head), ``frozen_groups``,
    ``head_only_last`` (last-layer: freeze the head except its last linear layer)."""

    name: str
    new_head: bool
    frozen_groups: tuple[str, ...]
    head_only_last: bool = False


def plan_strategy(name: str, model: nn.Module) -> StrategyPlan:
    """The :class:`StrategyPlan` of a strategy name for ``model`` (TransferError if unknown)."""
    enc = encoder_groups(model)
    blocks = [g for g in enc if g.startswith(("alignn.", "gcn."))]
    if name == "all":
        return StrategyPlan(name, False, ())
    if name == "last-layer":
        return StrategyPlan(name, False, tuple(enc), head_only_last=True)
    if name == "freeze-graph":
        return StrategyPlan(name, False, tuple(g for g in enc if g.startswith("gcn.")))
    if name == "freeze-line":
        return StrategyPlan(name, False, tuple(g for g in enc if g.startswith("alignn.")))
    if name == "new-head":
        return StrategyPlan(name, True, ())
    m = _FREEZE_N.match(name)
    if m:
        n = int(m.group(1))
        if n > len(blocks):
            raise TransferError(f"{name}: the encoder has only {len(blocks)} message-passing layers")
        return StrategyPlan(name, True, tuple(["embeddings", *blocks[:n]]) if n else ())
    check_strategy(name)
    raise TransferError(f"unknown strategy {name!r}")  # pragma: no cover - check_strategy raised


def check_strategy(name: str) -> str:
    """``name`` when it names a strategy, else TransferError (before any model is built)."""
    if (name in STRATEGIES and not name.endswith("-N")) or _FREEZE_N.match(name):
        return name
    raise TransferError(f"unknown strategy {name!r}; known: {', '.join(STRATEGIES)} (N = 0, 1, ...)")


def apply_strategy(model: nn.Module, name: str, force_new_head: bool = False) -> StrategyPlan:
    """Apply a strategy to ``model`` (its weights already transferred): re-initialise the head
    when the strategy (or ``force_new_head``) says so, freeze the plan's groups. Returns the plan."""
    plan = plan_strategy(name, model)
    unfreeze_all(model)
    if plan.new_head or force_new_head:
        reset_head(model)
    if plan.frozen_groups:
        freeze(model, list(plan.frozen_groups))
    if plan.head_only_last:
        keep = [f"head.{p}" for p in _last_linear(model.head)]
        for n, p in model.head.named_parameters(prefix="head"):
            if not _under(n, keep):
                p.requires_grad_(False)
    n_frozen = sum(p.numel() for p in model.parameters() if not p.requires_grad)
    n_all = sum(p.numel() for p in model.parameters())
    log.info("strategy %s: %d of %d parameters frozen%s", name, n_frozen, n_all,
             ", fresh head" if plan.new_head or force_new_head else "")
    return plan


# ------------------------------------------------------------------------------ weight transfer
def read_state(source: Any) -> dict[str, torch.Tensor]:
    """A state dict from a state dict, a Lightning checkpoint (dict or file), a weights file, or
    a ``property`` / ``gnn`` model folder or shipped name such as ``"mpt"`` (first member).
    Lightning's ``model.`` prefix is removed."""
    state = source
    if isinstance(source, (str, os.PathLike)):
        from hopnet.models.folder import read_model_files, resolve_model_dir, shipped_models

        p = Path(source)
        if p.is_dir() or (isinstance(source, str) and source in shipped_models()):
            p = resolve_model_dir(source)
            read_model_files(p)  # format version and payload checksums
            p = p / WEIGHTS_FILE
        state = read_weights(p, "pre-trained weights file", trusted=True)
    if isinstance(state, list):
        if not state:
            raise ModelFileError("weights file holds no state dict")
        state = state[0]
    if isinstance(state, Mapping) and "state_dict" in state:
        state = state["state_dict"]
    if not isinstance(state, Mapping):
        raise ModelFileError(f"not a state dict: {type(state).__name__}")
    if state and all(k.startswith("model.") for k in state):
        state = {k[len("model."):]: v for k, v in state.items()}
    return dict(state)


def transfer(src_state: Any, dst_model: nn.Module, include: Sequence[str] = ("encoder",),
             strict: bool = True) -> list[str]:
    """Copy the tensors of the groups ``include`` (patterns as in :func:`freeze`; their
    parameters *and* buffers, e.g. batch-norm statistics) from ``src_state`` (anything
    :func:`read_state` reads) into ``dst_model``. A bare encoder state dict (keys without
    ``encoder.``) is accepted. ``strict``: every key of the chosen groups must be in the source
    with the same shape, else TransferError. Returns the copied keys.

    Two sources fit although their keys differ: an encoder pre-trained on the 92 element
    features fits a model with the mobile-ion flag (93 inputs; the flag's column starts at zero
    weight, so the loaded encoder computes what it did until fine-tuning teaches it the flag),
    and a mean-pooled encoder fits an attention-pooled model (the gate keeps its fresh weights)."""
    state = read_state(src_state)
    if state and not any(k.startswith("encoder.") for k in state) and hasattr(dst_model, "encoder"):
        enc_keys = set(dst_model.encoder.state_dict())
        if set(state) <= enc_keys:
            state = {f"encoder.{k}": v for k, v in state.items()}
    groups = resolve_groups(dst_model, include)
    mods = module_groups(dst_model)
    prefixes = [m for g in groups for m in mods[g]]
    own = dst_model.state_dict()
    state = _widen_atom_input(state, own)
    wanted = [k for k in own if _under(k, prefixes)]
    if "pooling" in groups and not any(k.startswith("encoder.pooling.") for k in state):
        fresh = [k for k in wanted if k.startswith("encoder.pooling.")]
        wanted = [k for k in wanted if k not in fresh]
        if fresh:  # a mean-pooled source fits an attention-pooled model (Model 4)
            log.info("the pre-trained encoder has no attention pooling; the gate starts from fresh weights")
    missing = [k for k in wanted if k not in state]
    shapes = [k for k in wanted if k in state and tuple(state[k].shape) != tuple(own[k].shape)]
    if strict and (missing or shapes):
        what = (f"{len(missing)} missing key(s), e.g. {missing[0]}" if missing else
                f"shape mismatch at {shapes[0]}: source {tuple(state[shapes[0]].shape)}, "
                f"model {tuple(own[shapes[0]].shape)}")
        raise TransferError(f"pre-trained weights do not fit the model ({what}); same encoder config?")
    copied = [k for k in wanted if k in state and k not in shapes]
    with torch.no_grad():
        for k in copied:
            own[k].copy_(state[k].to(own[k].dtype))
    return copied


ATOM_INPUT_WEIGHT = "encoder.atom_embedding.linear.weight"


def _widen_atom_input(state: dict, own: dict) -> dict:
    """``state`` with the atom-embedding input widened to the model's width by zero columns on the
    right (extra per-atom features such as the mobile-ion flag come after the element features)."""
    w, mine = state.get(ATOM_INPUT_WEIGHT), own.get(ATOM_INPUT_WEIGHT)
    if not isinstance(w, torch.Tensor) or mine is None or w.dim() != 2 or w.shape[1] >= mine.shape[1]:
        return state
    return {**state, ATOM_INPUT_WEIGHT: torch.cat([w, w.new_zeros(w.shape[0], mine.shape[1] - w.shape[1])], dim=1)}


def start_from(model: nn.Module, source: Any, strategy: str | None = None) -> StrategyPlan | None:
    """Fine-tuning's start: the encoder of ``source`` (anything :func:`read_state` reads) copied
    into ``model`` (:func:`transfer`, strict), then ``strategy`` applied (:func:`apply_strategy`;
    None: everything trains). The one way hopnet moves pre-trained weights, for every GNN family."""
    transfer(source, model, include=["encoder"])
    return apply_strategy(model, strategy) if strategy else None
