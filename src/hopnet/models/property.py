"""Property models: one ALIGNN encoder + one scalar head per property (:class:`~hopnet.nn.MultiHead`),
the single-property model being the case P = 1; with ``target_scaling="standardize"`` the network
predicts ``(y - mean_p) / std_p`` (training-fold mean/std per property, stored as buffers) and
:meth:`MultiPropertyModel.predict` returns data units.

**Model folder** (kind ``"property"``): ``config.json`` {"kind", "model": PropertyModelConfig,
"training"}, ``metadata.json`` (properties, target scaling, members, validation metrics, source
model and strategy of a fine-tuned model), ``weights.pt`` (a list of state dicts, one per
member). :func:`load_property_model` reads it back; fitting is :mod:`hopnet.training.pretrain`.
"""

from __future__ import annotations

import logging
import os
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any, Literal, Sequence

import numpy as np
import torch
from torch import Tensor, nn

from hopnet.datasets.multiprop import MultiPropertyDataset
from hopnet.graphs import AlignnGraph, GraphCache, build_graph
from hopnet.graphs.config import GraphConfig
from hopnet.graphs.features import FEATURE_DIM
from hopnet.infra.configs import check_keys
from hopnet.infra.errors import HopnetError, ModelFileError
from hopnet.models.folder import load_members, typed_config
from hopnet.models.inputs import GraphSet, build_graphs
from hopnet.nn.config import EncoderConfig
from hopnet.nn.encoder import AlignnEncoder
from hopnet.nn.heads import MultiHead

log = logging.getLogger(__name__)

KIND = "property"
NORMALISATIONS = ("row", "property", "sum")
SCALINGS = ("standardize", "none")


class PropertyConfigError(HopnetError, ValueError):
    """A property-model configuration holds an invalid value."""


@dataclass(frozen=True)
class PropertyModelConfig:
    """Architecture and loss of a property model.

    ``properties``: one head per name. ``head_hidden``: None = linear heads (upstream ALIGNN's
    ``fc``), else one hidden layer of that width. ``normalisation``: see the module docstring.
    ``target_scaling``: ``"standardize"`` (per property, training-fold mean/std) or ``"none"``.
    ``encoder.atom_input_features`` follows ``graph``."""

    properties: tuple[str, ...] = ("target",)
    encoder: EncoderConfig = field(default_factory=EncoderConfig)
    graph: GraphConfig = field(default_factory=GraphConfig)
    head_hidden: int | None = None
    normalisation: Literal["row", "property", "sum"] = "row"
    target_scaling: Literal["standardize", "none"] = "standardize"

    def __post_init__(self) -> None:
        set_ = lambda k, v: object.__setattr__(self, k, v)  # noqa: E731 (frozen dataclass)
        props = (self.properties,) if isinstance(self.properties, str) else tuple(self.properties)
        if not props or len(set(props)) != len(props) or not all(isinstance(p, str) and p for p in props):
            raise PropertyConfigError(f"properties must be distinct non-empty names, got {self.properties!r}")
        set_("properties", props)
        if isinstance(self.encoder, dict):
            set_("encoder", EncoderConfig.from_dict(self.encoder))
        if isinstance(self.graph, dict):
            set_("graph", GraphConfig.from_dict(self.graph))
        width = FEATURE_DIM + self.graph.extra_features
        if self.encoder.atom_input_features != width:
            set_("encoder", replace(self.encoder, atom_input_features=width))
        if self.head_hidden is not None and (isinstance(self.head_hidden, bool) or not isinstance(self.head_hidden, int)
                                             or self.head_hidden < 1):
            raise PropertyConfigError(f"head_hidden must be a positive int or null, got {self.head_hidden!r}")
        if self.normalisation not in NORMALISATIONS:
            raise PropertyConfigError(f"normalisation must be one of {', '.join(NORMALISATIONS)}, "
                                      f"got {self.normalisation!r}")
        if self.target_scaling not in SCALINGS:
            raise PropertyConfigError(f"target_scaling must be one of {', '.join(SCALINGS)}, "
                                      f"got {self.target_scaling!r}")

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["properties"] = list(self.properties)
        return d

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "PropertyModelConfig":
        return cls(**check_keys(cls, data, "property-model", PropertyConfigError))


class MultiPropertyModel(nn.Module):
    """ALIGNN encoder + one head per property. ``forward(batch)`` -> [B, P] (standardised when
    the config says so); :meth:`predict` -> [B, P] in data units."""

    def __init__(self, config: PropertyModelConfig) -> None:
        super().__init__()
        self.config = config
        self.encoder = AlignnEncoder(config.encoder)
        self.head = MultiHead(self.encoder.out_features, config.properties, config.head_hidden)
        p = len(config.properties)
        self.register_buffer("target_mean", torch.zeros(p))
        self.register_buffer("target_std", torch.ones(p))

    @property
    def properties(self) -> tuple[str, ...]:
        return self.config.properties

    def set_scaling(self, mean: Sequence[float], std: Sequence[float]) -> None:
        std = np.where(np.asarray(std, float) > 1e-12, np.asarray(std, float), 1.0)
        self.target_mean.copy_(torch.as_tensor(np.asarray(mean, float), dtype=self.target_mean.dtype))
        self.target_std.copy_(torch.as_tensor(std, dtype=self.target_std.dtype))

    def forward(self, batch: Any) -> Tensor:
        out = self.head(self.encoder(batch).pooled)
        return torch.stack([out[p] for p in self.properties], dim=1)

    def predict(self, batch: Any) -> Tensor:
        return self.forward(batch) * self.target_std + self.target_mean

    def loss(self, batch: Any) -> tuple[Tensor, int]:
        """Training objective: :func:`masked_l1` on the standardised targets; (loss, structures)."""
        target = (batch.y - self.target_mean) / self.target_std
        return masked_l1(self(batch), target, batch.mask, self.config.normalisation), int(batch.num_graphs)

    def outputs(self, batch: Any) -> tuple[Tensor, Tensor, Tensor]:
        """(predicted, true, present) [B, P] in data units, for validation."""
        return self.predict(batch), batch.y, batch.mask.to(torch.bool)


def masked_l1(pred: Tensor, target: Tensor, mask: Tensor, normalisation: str = "row") -> Tensor:
    """Masked L1 loss of ``pred`` / ``target`` [N, P] with presence mask ``mask`` [N, P] (bool or
    0/1); absent targets may hold anything (NaN included). See the module docstring for the
    normalisations. Returns 0 (with a gradient path) when nothing is present."""
    m = mask.to(torch.bool)
    err = torch.where(m, (pred - torch.where(m, target, pred)).abs(), torch.zeros_like(pred))
    if normalisation in ("row", "property"):
        dim = 1 if normalisation == "row" else 0  # mean within each row / property, then over them
        k = m.sum(dim=dim)
        kept = k > 0
        if not bool(kept.any()):
            return pred.sum() * 0.0
        return (err.sum(dim=dim)[kept] / k[kept]).mean()
    if normalisation == "sum":
        return err.sum() / max(int(m.any(dim=1).sum()), 1)
    raise PropertyConfigError(f"unknown loss normalisation {normalisation!r}")


# ----------------------------------------------------------------------------------- data
class PropertyGraphs(GraphSet):
    """The graphs of a :class:`MultiPropertyDataset`, built once (through ``cache`` when given).
    Items are one-graph lists with ``y`` [1, P] (NaN where absent) and ``mask`` [1, P], so the
    barrier pipeline's :func:`~hopnet.models.inputs.make_loader` batches them."""

    ROWS = ("targets", "mask")

    def __init__(self, data: MultiPropertyDataset, graph: GraphConfig,
                 cache: GraphCache | str | None = None) -> None:
        if cache is not None and not isinstance(cache, GraphCache):
            cache = GraphCache(cache)
        self.properties = data.properties
        self.ids = data.ids
        self.targets = data.targets.astype(np.float32)
        self.mask = data.mask.copy()
        entries = list(data)
        build = (lambda i: [cache.get_or_build(entries[i].atoms, graph, 0)]) if cache is not None else \
            (lambda i: [build_graph(entries[i].atoms, graph, 0)])
        self.samples = build_graphs([str(e.id) for e in entries], build, "structures", every=1000)
        self._count()

    def __getitem__(self, i: int) -> list[AlignnGraph]:
        g = self.samples[i][0].clone()
        g.y = torch.from_numpy(self.targets[i:i + 1].copy())
        g.mask = torch.from_numpy(self.mask[i:i + 1].copy())
        return [g]


def predict_graphs(models: Sequence[MultiPropertyModel], graphs: PropertyGraphs, batch_size: int = 16,
                   max_atoms: int | None = None, max_line_edges: int | None = None) -> np.ndarray:
    """Ensemble-mean predictions [n, P] (data units) of prepared graphs, in order."""
    from hopnet.models.inputs import make_loader

    n, p = len(graphs), len(graphs.properties)
    if n == 0:
        return np.zeros((0, p))
    loader = make_loader(graphs, batch_size, shuffle=False, max_atoms=max_atoms, max_line_edges=max_line_edges)
    out = np.zeros((len(models), n, p))
    with torch.no_grad():
        for k, m in enumerate(models):
            m.eval()
            out[k] = np.concatenate([m.predict(b).double().cpu().numpy() for b in loader])
    return out.mean(axis=0)


# ------------------------------------------------------------------------------- loading
def load_property_model(folder: str | os.PathLike) -> tuple[list[MultiPropertyModel], PropertyModelConfig, dict]:
    """(members, config, metadata) of a ``property`` model folder (a shipped name works too)."""
    from hopnet.models.folder import read_model_files, resolve_model_dir

    folder = resolve_model_dir(folder)
    config, metadata = read_model_files(folder)
    if config.get("kind") != KIND:
        raise ModelFileError(f"{folder}: a {config.get('kind')!r} model, not a property model")
    cfg = typed_config(folder, PropertyModelConfig, config.get("model"))
    return load_members(folder, lambda: MultiPropertyModel(cfg)), cfg, metadata


class PropertyPredictor:
    """A loaded property model: :meth:`predict_structures` -> [n, P] in data units."""

    def __init__(self, name: str, models: list[MultiPropertyModel], config: PropertyModelConfig,
                 metadata: dict) -> None:
        self.name, self.members, self.config, self.metadata = name, models, config, metadata

    def predict_structures(self, structures: Sequence[Any], batch_size: int = 16) -> np.ndarray:
        from hopnet.datasets.core import Entry
        from hopnet.structures import to_jarvis, to_structure

        p = len(self.config.properties)
        entries = [Entry(id=str(i), target=float("nan"), atoms=s if isinstance(s, dict) else to_jarvis(to_structure(s)))
                   for i, s in enumerate(structures)]
        data = MultiPropertyDataset(self.config.properties, entries, np.zeros((len(entries), p)),
                                    np.ones((len(entries), p), bool), "")
        return predict_graphs(self.members, PropertyGraphs(data, self.config.graph), batch_size)

    def predict_paths(self, paths: Sequence[Any], batch_size: int | None = None) -> Any:
        raise ModelFileError(f"model {self.name!r} predicts the properties {list(self.config.properties)}, "
                             f"not migration barriers; fine-tune it first (hopnet finetune)")


def load_predictor(folder: str | os.PathLike, config: dict, metadata: dict) -> PropertyPredictor:
    """The loader ``hopnet.models.folder.load_model`` calls for kind ``"property"``."""
    models, cfg, meta = load_property_model(folder)
    return PropertyPredictor(Path(folder).name, models, cfg, meta)
