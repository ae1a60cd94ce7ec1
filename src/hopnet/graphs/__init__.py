"""Crystal graphs for ALIGNN: periodic k-NN graph, line graph (bond angles), atom features,
and an on-disk cache."""

from hopnet.graphs.cache import GraphCache, build_graphs, default_cache_root, structure_hash
from hopnet.graphs.config import GraphConfig
from hopnet.graphs.data import AlignnGraph, build_graph, build_graph_arrays
from hopnet.graphs.features import FEATURE_DIM, atom_features
from hopnet.graphs.linegraph import line_graph
from hopnet.graphs.neighbors import NeighborEdges, knn_edges

__all__ = [
    "AlignnGraph",
    "FEATURE_DIM",
    "GraphCache",
    "GraphConfig",
    "NeighborEdges",
    "atom_features",
    "build_graph",
    "build_graph_arrays",
    "build_graphs",
    "default_cache_root",
    "knn_edges",
    "line_graph",
    "structure_hash",
]
