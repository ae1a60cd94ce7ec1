"""Barrier models 1-4 as one family: an ALIGNN encoder on a variant-specific input, a readout,
and an MLP head that predicts the migration barrier E_m (eV).

Variants (``BarrierModelConfig.variant``; the published Models 1-4):

* ``"initial-final"`` (Model 1): the graphs of the initial and of the final structure go through
  one shared encoder; the two pooled vectors are combined by ``combine``: ``"add"`` (symmetric
  under swapping the end points), ``"subtract"`` (final minus initial) or ``"concat"``.
* ``"initial-delta"`` (Model 2): the graph of the initial structure, whose bonds carry, besides
  their length, the *change* of that bond's length when the ion is moved to its final site:
  ``delta_len = |vec + disp[dst] - disp[src]| - |vec|`` (Å), with ``disp`` the hop vector on the
  ion and zero on the host. Same bond set as the initial graph; only the ion's bonds change.
  ``delta_len`` is expanded in ``delta_bins`` Gaussians on ``[-delta_max, delta_max]`` Å, mapped
  to the hidden width and added to the embedded bond features before the first convolution.
  Unlike Model 1 with ``"subtract"`` (a difference of two whole-cell averages), this keeps the
  correspondence bond-by-bond: which neighbours the ion leaves and approaches, and by how much.
* ``"band"`` (Model 3): the graph of the band (host + the ion's ``n_images`` images superimposed);
  pooling as the encoder config says (mean by default).
* ``"band-attention"`` (Model 4): the band graph with attention pooling (forced on the encoder).

Options common to all variants:

* ``graph.mobile_flag``: an extra 0/1 atom-feature column marking the ion's images (the encoder
  input width follows the graph config automatically).
* ``pool_scope="path"``: pool only over the ion images and the host atoms within
  ``path_radius`` Å of the straight initial -> final segment (periodic images included).
* ``crop_radius``: keep only the atoms within ``crop_radius`` Å of the path segment. This is done
  on the *graph*, not on the structure: the full periodic graph is built first and then the
  subgraph induced by the kept atoms is taken (bonds between kept atoms only, and bond pairs
  between kept bonds only). Cutting the structure itself and rebuilding the graph in the same
  cell would put vacuum across the cell boundary and invent new, wrong neighbours; the induced
  subgraph keeps every surviving bond exactly as in the crystal, and only the atoms at the rim
  lose some neighbours. It shrinks the convolution cost roughly by the fraction of atoms removed.
  The ion images are always kept.
* ``hybrid``: the path descriptors of :mod:`hopnet.descriptors`, standardised with the training
  mean/std (stored in the model), are concatenated to the pooled vector before the head.
* ``pretrained_encoder``: an encoder to start from, loaded by the trainer before training
  (:func:`hopnet.training.transfer.start_from`, strict key and shape check, then a named
  strategy): a file holding an encoder or model ``state_dict``, or a model folder / a shipped
  model name such as ``"mpt"`` (its first member's encoder). A 92-feature encoder fits a model
  with the mobile-ion flag (zero-weight flag column).

The module predicts the *standardised* barrier; the training target mean/std (eV) are buffers of
the module, so :meth:`BarrierModel.predict_ev` returns eV and a saved state_dict is complete.
"""

from __future__ import annotations

import logging
import os
from dataclasses import asdict, dataclass, field, fields, replace
from pathlib import Path
from typing import Any, Literal, Sequence

import numpy as np
import torch
from torch import Tensor, nn

from hopnet.infra.configs import check_keys
from hopnet.infra.errors import HopnetError
from hopnet.models.folder import load_members, typed_config
from hopnet.graphs.config import GraphConfig
from hopnet.graphs.features import FEATURE_DIM
from hopnet.nn.config import EncoderConfig
from hopnet.nn.encoder import AlignnEncoder
from hopnet.nn.layers import RBFExpansion

log = logging.getLogger(__name__)

Variant = Literal["initial-final", "initial-delta", "band", "band-attention"]
Combine = Literal["add", "subtract", "concat"]
PoolScope = Literal["all", "path"]

VARIANTS: tuple[str, ...] = ("initial-final", "initial-delta", "band", "band-attention")
COMBINES: tuple[str, ...] = ("add", "subtract", "concat")
POOL_SCOPES: tuple[str, ...] = ("all", "path")
#: Published model number of each variant.
MODEL_NUMBER = {"initial-final": 1, "initial-delta": 2, "band": 3, "band-attention": 4}


class BarrierConfigError(HopnetError, ValueError):
    """A barrier-model configuration holds an invalid value or an unknown key."""


def _encoder_from(value: Any) -> EncoderConfig:
    """An ``EncoderConfig`` from a config, a preset name ("paper"/"small") or a dict (optionally
    with ``preset``)."""
    if isinstance(value, EncoderConfig):
        return value
    if isinstance(value, str):
        value = {"preset": value}
    if not isinstance(value, dict):
        raise BarrierConfigError(f"encoder must be 'paper', 'small' or a dict, got {value!r}")
    data = dict(value)
    preset = data.pop("preset", "paper")
    if preset not in ("paper", "small"):
        raise BarrierConfigError(f"encoder preset must be 'paper' or 'small', got {preset!r}")
    known = {f.name for f in fields(EncoderConfig)}
    unknown = sorted(set(data) - known)
    if unknown:
        raise BarrierConfigError(f"unknown encoder key(s): {', '.join(unknown)}")
    return EncoderConfig.small(**data) if preset == "small" else EncoderConfig.paper(**data)


@dataclass(frozen=True)
class BarrierModelConfig:
    """Everything that defines a barrier model's architecture and inputs (see module docstring).

    Lengths in Å. ``head_hidden``: widths of the head's hidden layers (Linear -> SiLU each), then a
    Linear to one output. ``encoder.atom_input_features`` is set from ``graph`` (92 element
    features, +1 with ``graph.mobile_flag``); ``"band-attention"`` sets ``encoder.pooling``.
    """

    variant: Variant = "band"
    combine: Combine = "concat"
    encoder: EncoderConfig = field(default_factory=EncoderConfig)
    graph: GraphConfig = field(default_factory=GraphConfig)
    pool_scope: PoolScope = "all"
    path_radius: float = 4.0
    crop_radius: float | None = None
    hybrid: bool = False
    head_hidden: tuple[int, ...] = (64,)
    delta_bins: int = 40
    delta_max: float = 8.0
    n_images: int = 5
    pretrained_encoder: str | None = None

    def __post_init__(self) -> None:
        set_ = lambda k, v: object.__setattr__(self, k, v)  # noqa: E731 (frozen dataclass)
        set_("encoder", _encoder_from(self.encoder))
        if isinstance(self.graph, dict):
            set_("graph", GraphConfig.from_dict(self.graph))
        if not isinstance(self.graph, GraphConfig):
            raise BarrierConfigError(f"graph must be a GraphConfig or a dict, got {self.graph!r}")
        if self.variant not in VARIANTS:
            raise BarrierConfigError(f"variant must be one of {', '.join(VARIANTS)}, got {self.variant!r}")
        if self.combine not in COMBINES:
            raise BarrierConfigError(f"combine must be one of {', '.join(COMBINES)}, got {self.combine!r}")
        if self.pool_scope not in POOL_SCOPES:
            raise BarrierConfigError(f"pool_scope must be one of {', '.join(POOL_SCOPES)}, got {self.pool_scope!r}")
        for name in ("path_radius", "delta_max"):
            v = getattr(self, name)
            if isinstance(v, bool) or not isinstance(v, (int, float)) or not v > 0:
                raise BarrierConfigError(f"{name} must be > 0 Å, got {v!r}")
        if self.crop_radius is not None:
            v = self.crop_radius
            if isinstance(v, bool) or not isinstance(v, (int, float)) or not v > 0:
                raise BarrierConfigError(f"crop_radius must be > 0 Å or null, got {v!r}")
        hidden = tuple(self.head_hidden) if isinstance(self.head_hidden, (list, tuple)) else None
        if hidden is None or any(isinstance(h, bool) or not isinstance(h, int) or h < 1 for h in hidden):
            raise BarrierConfigError(f"head_hidden must be a list of positive ints, got {self.head_hidden!r}")
        set_("head_hidden", hidden)
        if isinstance(self.delta_bins, bool) or not isinstance(self.delta_bins, int) or self.delta_bins < 2:
            raise BarrierConfigError(f"delta_bins must be an int >= 2, got {self.delta_bins!r}")
        if isinstance(self.n_images, bool) or not isinstance(self.n_images, int) or self.n_images < 2:
            raise BarrierConfigError(f"n_images must be an int >= 2, got {self.n_images!r}")
        if not isinstance(self.hybrid, bool):
            raise BarrierConfigError(f"hybrid must be true or false, got {self.hybrid!r}")
        width = FEATURE_DIM + self.graph.extra_features
        enc = self.encoder
        if enc.atom_input_features != width:
            enc = replace(enc, atom_input_features=width)
        if self.variant == "band-attention" and enc.pooling != "attention":
            enc = replace(enc, pooling="attention")
        set_("encoder", enc)

    # ------------------------------------------------------------------ derived
    @property
    def model_number(self) -> int:
        return MODEL_NUMBER[self.variant]

    @property
    def n_graphs(self) -> int:
        """Graphs per path: 2 for Model 1 (initial, final), else 1."""
        return 2 if self.variant == "initial-final" else 1

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["head_hidden"] = list(self.head_hidden)
        return d

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "BarrierModelConfig":
        """Inverse of :meth:`to_dict`; unknown keys are an error."""
        return cls(**check_keys(cls, data, "barrier model", BarrierConfigError))


class BarrierModel(nn.Module):
    """Encoder + readout + head for one variant. ``forward(batch)`` takes the PyG batch made by
    :func:`hopnet.models.inputs.collate` and returns the standardised barrier [B]."""

    def __init__(self, config: BarrierModelConfig, n_descriptors: int = 0) -> None:
        super().__init__()
        self.config = config
        self.encoder = AlignnEncoder(config.encoder)
        hidden = self.encoder.out_features
        self.delta_embedding: nn.Module | None = None
        if config.variant == "initial-delta":
            self.delta_embedding = nn.Sequential(
                RBFExpansion(-config.delta_max, config.delta_max, config.delta_bins),
                nn.Linear(config.delta_bins, hidden), nn.SiLU(), nn.Linear(hidden, hidden),
            )
        width = 2 * hidden if (config.variant == "initial-final" and config.combine == "concat") else hidden
        if config.hybrid and n_descriptors < 1:
            raise BarrierConfigError("a hybrid model needs the number of path descriptors (n_descriptors >= 1)")
        self.n_descriptors = int(n_descriptors) if config.hybrid else 0
        width += self.n_descriptors
        layers: list[nn.Module] = []
        for h in config.head_hidden:
            layers += [nn.Linear(width, h), nn.SiLU()]
            width = h
        layers.append(nn.Linear(width, 1))
        self.head = nn.Sequential(*layers)
        # scalings (filled from the training set; part of the state_dict)
        self.register_buffer("target_mean", torch.zeros(()))
        self.register_buffer("target_std", torch.ones(()))
        self.register_buffer("desc_mean", torch.zeros(self.n_descriptors))
        self.register_buffer("desc_std", torch.ones(self.n_descriptors))

    # ------------------------------------------------------------------ set-up
    def set_scaling(self, target_mean: float, target_std: float,
                    desc_mean: np.ndarray | None = None, desc_std: np.ndarray | None = None) -> None:
        """Store the training-set target mean/std (eV) and descriptor mean/std."""
        self.target_mean.fill_(float(target_mean))
        self.target_std.fill_(float(target_std) if target_std > 0 else 1.0)
        if self.n_descriptors:
            if desc_mean is None or desc_std is None:
                raise BarrierConfigError("a hybrid model needs descriptor mean and std")
            std = np.where(np.asarray(desc_std) > 1e-12, desc_std, 1.0)
            self.desc_mean.copy_(torch.as_tensor(desc_mean, dtype=self.desc_mean.dtype))
            self.desc_std.copy_(torch.as_tensor(std, dtype=self.desc_std.dtype))

    # ------------------------------------------------------------------ forward
    def path_mask(self, batch: Any) -> Tensor | None:
        if self.config.pool_scope == "all":
            return None
        return batch.is_mobile | (batch.path_dist <= self.config.path_radius)

    def _encode(self, batch: Any) -> Tensor:
        """Pooled [G, H] per graph of the batch (Model 2 adds the bond-length change to the bonds)."""
        extra = None
        if self.delta_embedding is not None:
            extra = self.delta_embedding(batch.delta_len.to(self.target_mean.dtype))
        return self.encoder(batch, edge_extra=extra, pool_mask=self.path_mask(batch)).pooled

    def forward(self, batch: Any) -> Tensor:
        pooled = self._encode(batch)
        n = pooled.shape[0] // self.config.n_graphs
        if self.config.variant == "initial-final":
            a, b = pooled[:n], pooled[n:]
            c = self.config.combine
            pooled = a + b if c == "add" else (b - a if c == "subtract" else torch.cat((a, b), dim=1))
        if self.n_descriptors:
            desc = (batch.desc[:n].to(pooled.dtype) - self.desc_mean) / self.desc_std
            pooled = torch.cat((pooled, desc), dim=1)
        return self.head(pooled).squeeze(-1)

    def predict_ev(self, batch: Any) -> Tensor:
        """Barriers in eV [B]."""
        return self.forward(batch) * self.target_std + self.target_mean

    def targets(self, batch: Any) -> Tensor:
        """The batch's barriers (eV) [B]: ``y`` of the first graph slot of each path."""
        return batch.y[:batch.num_graphs // self.config.n_graphs]

    def loss(self, batch: Any) -> tuple[Tensor, int]:
        """Training objective: L1 on the standardised barrier; (loss, number of paths)."""
        y = self.targets(batch)
        return torch.nn.functional.l1_loss(self(batch), (y - self.target_mean) / self.target_std), y.numel()

    def outputs(self, batch: Any) -> tuple[Tensor, Tensor, Tensor]:
        """(predicted, true, present) barriers [B, 1] in eV, for validation."""
        y = self.targets(batch)[:, None]
        return self.predict_ev(batch)[:, None], y, torch.ones_like(y, dtype=torch.bool)


def build_model(config: BarrierModelConfig, n_descriptors: int = 0) -> BarrierModel:
    """A fresh model (``config.pretrained_encoder`` is loaded by the trainer:
    :func:`hopnet.training.transfer.start_from`)."""
    return BarrierModel(config, n_descriptors)


# ---------------------------------------------------------------------------------- predictor
class GNNPredictor:
    """A loaded ``gnn`` model folder: one :class:`BarrierModel` per ensemble member."""

    def __init__(self, name: str, config: BarrierModelConfig, members: Sequence[BarrierModel],
                 metadata: dict, batch_limits: dict | None = None) -> None:
        self.name = name
        self.config = config
        self.members = list(members)
        self.metadata = metadata
        self.batch_limits = dict(batch_limits or {})
        for m in self.members:
            m.eval()

    def predict_paths(self, paths: Sequence[Any], batch_size: int | None = None) -> Any:
        """Barriers (eV) of ``hopnet.paths.MigrationPath`` objects (bands and data-set entries are
        accepted too), ensemble mean and std, in input order."""
        from hopnet.models.inputs import BarrierGraphs

        data = BarrierGraphs(list(paths), self.config, targets=None, cache=None)
        return self.predict_graphs(data, batch_size)

    def predict_graphs(self, data: Any, batch_size: int | None = None) -> Any:
        """Predictions for a prepared :class:`hopnet.models.inputs.BarrierGraphs`."""
        from hopnet.models.folder import Prediction
        from hopnet.models.inputs import make_loader

        n = len(data)
        out = np.zeros((len(self.members), n))
        if n:
            loader = make_loader(data, batch_size=batch_size or 16, shuffle=False,
                                 max_atoms=self.batch_limits.get("max_batch_atoms"),
                                 max_line_edges=self.batch_limits.get("max_batch_line_edges"))
            with torch.no_grad():
                for k, model in enumerate(self.members):
                    model.eval()
                    out[k] = np.concatenate([model.predict_ev(b).double().cpu().numpy() for b in loader])
        std = out.std(axis=0) if len(self.members) > 1 else np.zeros(n)
        return Prediction(mean=out.mean(axis=0), std=std, model=self.name, members=out)


def load_predictor(folder: str | os.PathLike, config: dict, metadata: dict) -> GNNPredictor:
    """The loader ``hopnet.models.folder.load_model`` calls for kind ``"gnn"``."""
    folder = Path(folder)
    model_config = typed_config(folder, BarrierModelConfig, config.get("model"))
    n_desc = int(metadata.get("n_descriptors", 0))
    members = load_members(folder, lambda: build_model(model_config, n_desc))
    training = config.get("training", {}) or {}
    limits = {k: training[k] for k in ("max_batch_atoms", "max_batch_line_edges") if k in training}
    return GNNPredictor(metadata.get("name", folder.name), model_config, members, metadata, limits)
