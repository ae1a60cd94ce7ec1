"""Typed configuration of the crystal graph."""

from __future__ import annotations

import math
import os
from dataclasses import asdict, dataclass
from typing import Any

from hopnet.infra.configs import check_keys
from hopnet.infra.errors import HopnetError, StructureError

#: Bump when the stored graph layout or construction rules change (invalidates caches).
GRAPH_FORMAT_VERSION = 1
#: Environment variable holding the graph memory budget in GB (10^9 bytes; ``inf`` for none).
GRAPH_MEMORY_ENV = "HOPNET_GRAPH_MEMORY_GB"
#: GB one graph may need while it is built when neither ``memory_gb=`` nor the environment
#: variable says otherwise. The largest training band (1027 atoms) needs ~20 MB.
DEFAULT_GRAPH_MEMORY_GB = 8.0


@dataclass(frozen=True)
class GraphConfig:
    """Periodic k-nearest-neighbour crystal graph (upstream ALIGNN rules).

    cutoff: initial search radius in Å; grown (x1.5 per try) for a structure in which some
        atom has fewer than ``max_neighbors`` neighbours within it.
    max_neighbors: k; each atom keeps its k nearest neighbours plus all tied with the k-th.
    tie_tolerance: Å; neighbours within this distance of the k-th one count as tied.
    mobile_flag: append a 0/1 column to the atom features marking the mobile-ion images.
    line_graph: build the bond-pair graph (``lg_edge_index``, ``lg_cos``); if False those
        fields are empty.
    """

    cutoff: float = 8.0
    max_neighbors: int = 12
    mobile_flag: bool = False
    tie_tolerance: float = 1e-3
    line_graph: bool = True

    def __post_init__(self) -> None:
        if not self.cutoff > 0:
            raise HopnetError(f"GraphConfig.cutoff must be > 0 Å, got {self.cutoff}")
        if int(self.max_neighbors) != self.max_neighbors or self.max_neighbors < 1:
            raise HopnetError(f"GraphConfig.max_neighbors must be a positive integer, got {self.max_neighbors}")
        if not 0 <= self.tie_tolerance < self.cutoff:
            raise HopnetError(f"GraphConfig.tie_tolerance must be in [0, cutoff) Å, got {self.tie_tolerance}")

    @property
    def extra_features(self) -> int:
        """Number of columns appended to the 92 element features."""
        return int(self.mobile_flag)

    def key(self) -> str:
        """Short string identifying everything that changes the graph (for caches)."""
        from hopnet.graphs.features import table_version

        return (
            f"knn{GRAPH_FORMAT_VERSION}-c{self.cutoff:g}-k{self.max_neighbors}-t{self.tie_tolerance:g}"
            f"-m{int(self.mobile_flag)}-lg{int(self.line_graph)}-el{table_version()}"
        )

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> GraphConfig:
        return cls(**check_keys(cls, data, "graph"))


def graph_memory_budget(memory_gb: float | None = None) -> float:
    """GB that building one graph may need: ``memory_gb`` when given, else
    ``$HOPNET_GRAPH_MEMORY_GB``, else :data:`DEFAULT_GRAPH_MEMORY_GB` (read at every call).
    Not part of :meth:`GraphConfig.key`: it decides whether a graph is built, never what it is."""
    if memory_gb is None:
        text = os.environ.get(GRAPH_MEMORY_ENV, "").strip()
        if not text:
            return DEFAULT_GRAPH_MEMORY_GB
        try:
            memory_gb = float(text)
        except ValueError:
            raise HopnetError(f"{GRAPH_MEMORY_ENV} must be a positive number of GB, got {text!r}") from None
    memory_gb = float(memory_gb)
    if math.isnan(memory_gb) or memory_gb <= 0:
        raise HopnetError(f"the graph memory budget must be a positive number of GB, got {memory_gb:g}")
    return memory_gb


def check_graph_memory(need_bytes: float, detail: str, name: object, n_atoms: int,
                       memory_gb: float | None = None) -> None:
    """Raise :class:`StructureError` when building a graph would need more than the budget
    (:func:`graph_memory_budget`). ``detail`` says what the bytes are for; ``name`` (a formula;
    turned into text only for the message) and ``n_atoms`` name the structure."""
    budget = graph_memory_budget(memory_gb)
    if need_bytes > budget * 1e9:
        raise StructureError(
            f"graph of {name} ({n_atoms:,} atoms) would need ~{need_bytes / 1e9:.3g} GB ({detail}), over the "
            f"{budget:g} GB graph memory budget (set {GRAPH_MEMORY_ENV} to change it)"
        )
