"""The graph object (:class:`AlignnGraph`) and :func:`build_graph`.

Building a graph is refused with a :class:`StructureError` before its large arrays are allocated
when it would need more memory than the budget (:func:`hopnet.graphs.config.graph_memory_budget`,
``$HOPNET_GRAPH_MEMORY_GB``, default 8 GB): first the periodic neighbour search
(:func:`hopnet.graphs.neighbors.search_cost`), then the line graph, whose bond pairs are counted
from the bonds (:func:`hopnet.graphs.linegraph.line_graph_size`).
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
from torch_geometric.data import Data

from hopnet.infra.errors import PathError, StructureError
from hopnet.graphs.config import GraphConfig, check_graph_memory
from hopnet.graphs.features import atom_features
from hopnet.graphs.linegraph import (
    LINE_GRAPH_BYTES_PER_PAIR,
    line_graph,
    line_graph_size,
)
from hopnet.graphs.neighbors import knn_edges

#: Tensor fields of a graph (what the cache stores).
GRAPH_FIELDS = ("x", "z", "pos", "is_mobile", "edge_index", "edge_vec", "edge_len",
                "lg_edge_index", "lg_cos", "lg_angle", "lg_angle_index")


class AlignnGraph(Data):
    """Crystal graph plus its line graph, as a PyG ``Data``.

    x float32 [N, F] atom features; z long [N]; pos float32 [N, 3] Cartesian Å;
    is_mobile bool [N] (mobile-ion images); edge_index long [2, E] (row 0 source u, row 1
    destination v, messages flow u -> v); edge_vec float32 [E, 3] Å (v's image minus u);
    edge_len float32 [E] Å; lg_edge_index long [2, T] (pairs of bond indices e1 -> e2 with
    head(e1) == tail(e2)); lg_cos float32 [T] cosine of the bond angle; lg_angle float32 [U]
    the distinct values of lg_cos (sorted) and lg_angle_index long [T] with
    ``lg_angle[lg_angle_index] == lg_cos``: a crystal's symmetry makes U about 10-20 % of T, and
    the encoder computes everything that depends on the angle alone once per distinct angle.

    ``Batch.from_data_list`` offsets ``edge_index`` by the node count, ``lg_edge_index`` by
    the bond count and ``lg_angle_index`` by the distinct-angle count of the preceding graphs.
    """

    def __inc__(self, key: str, value: Any, *args: Any, **kwargs: Any) -> Any:
        if key == "lg_edge_index":
            return self.edge_index.size(1)
        if key == "lg_angle_index":
            return self.lg_angle.size(0)
        return super().__inc__(key, value, *args, **kwargs)

    @property
    def num_bonds(self) -> int:
        return int(self.edge_index.size(1))


class _Formula:
    """The reduced formula of atomic numbers, worked out only when shown (a refusal message)."""

    def __init__(self, z: np.ndarray) -> None:
        self.z = z

    def __str__(self) -> str:
        from pymatgen.core import Composition, Element

        try:
            zs, counts = np.unique(self.z, return_counts=True)
            return Composition({Element.from_Z(int(k)): int(c) for k, c in zip(zs, counts)}).reduced_formula
        except ValueError:  # not atomic numbers
            return "a structure"


def as_structure(obj: Any):
    """A pymatgen ``Structure`` from anything ``hopnet.structures.to_structure`` reads.

    No overlap validation here: a band's ion images sit closer than any physical pair, and a
    handful of published bands put an image on a host atom. Validation belongs where structures
    enter from users (``hopnet.paths.MigrationPath.validate``, the CLI); the graph builder only
    has to stay finite, which it does (coincident atoms get no bond, with a warning).
    """
    from pymatgen.core import Structure

    from hopnet.structures import to_structure

    if isinstance(obj, Structure):
        return obj
    return to_structure(obj, validate=False)


def build_graph_arrays(
    lattice: np.ndarray,
    frac_coords: np.ndarray,
    atomic_numbers: np.ndarray,
    config: GraphConfig | None = None,
    n_mobile: int = 0,
    *,
    memory_gb: float | None = None,
) -> AlignnGraph:
    """:func:`build_graph` from raw arrays: lattice [3, 3] Å (rows are vectors), fractional
    coordinates [N, 3], atomic numbers [N]."""
    config = config or GraphConfig()
    lattice = np.asarray(lattice, dtype=np.float64)
    frac = np.asarray(frac_coords, dtype=np.float64)
    z = np.asarray(atomic_numbers, dtype=np.int64)
    n = len(z)
    if frac.shape != (n, 3):
        raise StructureError(f"{frac.shape[0]} coordinates for {n} atoms")
    n_mobile = int(n_mobile)
    if not 0 <= n_mobile <= n:
        raise PathError(f"n_mobile={n_mobile} is outside 0..{n} (number of atoms)")

    name = _Formula(z)
    edges = knn_edges(lattice, frac, config.max_neighbors, config.cutoff, config.tie_tolerance,
                      memory_gb=memory_gb, name=name)
    is_mobile = np.arange(n) < n_mobile
    x = atom_features(z)
    if config.mobile_flag:
        x = np.concatenate((x, is_mobile[:, None].astype(np.float32)), axis=1)
    if config.line_graph:
        pairs = line_graph_size(edges.src, edges.dst, n)
        check_graph_memory(LINE_GRAPH_BYTES_PER_PAIR * pairs, f"{pairs:,} bond pairs", name, n, memory_gb)
        lg_index, lg_cos = line_graph(edges.src, edges.dst, edges.vec, n)
    else:
        lg_index, lg_cos = np.zeros((2, 0), dtype=np.int64), np.zeros(0)
    lg_cos = lg_cos.astype(np.float32)
    angles, angle_index = np.unique(lg_cos, return_inverse=True)

    return AlignnGraph(
        x=torch.from_numpy(np.ascontiguousarray(x, dtype=np.float32)),
        z=torch.from_numpy(z),
        pos=torch.from_numpy((frac @ lattice).astype(np.float32)),
        is_mobile=torch.from_numpy(is_mobile),
        edge_index=torch.from_numpy(np.stack((edges.src, edges.dst))),
        edge_vec=torch.from_numpy(edges.vec.astype(np.float32)),
        edge_len=torch.from_numpy(edges.dist.astype(np.float32)),
        lg_edge_index=torch.from_numpy(np.ascontiguousarray(lg_index)),
        lg_cos=torch.from_numpy(lg_cos),
        lg_angle=torch.from_numpy(angles),
        lg_angle_index=torch.from_numpy(angle_index.reshape(-1).astype(np.int64)),
    )


def build_graph(structure: Any, config: GraphConfig | None = None, n_mobile: int = 0, *,
                memory_gb: float | None = None) -> AlignnGraph:
    """Crystal graph of a periodic structure (pymatgen ``Structure`` or anything
    ``hopnet.structures.to_structure`` accepts).

    n_mobile: the first ``n_mobile`` atoms are mobile-ion images (5 for a data-set band); they
    are marked in ``is_mobile`` and, with ``config.mobile_flag``, in an extra feature column.
    memory_gb: the graph memory budget (default :func:`hopnet.graphs.config.graph_memory_budget`);
    a graph that would need more is refused with :class:`StructureError` before it is built.
    """
    s = as_structure(structure)
    try:
        z = np.array(s.atomic_numbers, dtype=np.int64)
    except AttributeError:  # a disordered site has no single species
        raise StructureError("structure has partially occupied sites; graphs need an ordered structure") from None
    return build_graph_arrays(s.lattice.matrix, s.frac_coords, z, config, n_mobile, memory_gb=memory_gb)
