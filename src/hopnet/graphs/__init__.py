"""Crystal graphs for ALIGNN: periodic k-NN graph, line graph (bond angles), atom features,
and an on-disk cache.

The names below are imported on first use (PEP 562), so that ``hopnet.graphs.config`` and
``hopnet.graphs.features`` -- what a model folder's version check needs -- load without
PyTorch Geometric.
"""

from __future__ import annotations

import importlib
from typing import Any

_WHERE = {
    "GraphCache": "cache", "build_graphs": "cache", "default_cache_root": "cache", "structure_hash": "cache",
    "GraphConfig": "config",
    "AlignnGraph": "data", "build_graph": "data", "build_graph_arrays": "data",
    "FEATURE_DIM": "features", "atom_features": "features",
    "line_graph": "linegraph",
    "NeighborEdges": "neighbors", "knn_edges": "neighbors",
}

__all__ = sorted(_WHERE)


def __getattr__(name: str) -> Any:
    if name not in _WHERE:
        raise AttributeError(f"module 'hopnet.graphs' has no attribute {name!r}")
    value = getattr(importlib.import_module(f"hopnet.graphs.{_WHERE[name]}"), name)
    globals()[name] = value
    return value
