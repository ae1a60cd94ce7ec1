"""Typed configuration of the crystal graph."""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

from hopnet.configs import check_keys
from hopnet.errors import HopnetError

#: Bump when the stored graph layout or construction rules change (invalidates caches).
GRAPH_FORMAT_VERSION = 1


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
    def from_dict(cls, data: dict[str, Any]) -> "GraphConfig":
        return cls(**check_keys(cls, data, "graph"))
