"""Percolation of a periodic hop network: its dimensionality, and the lowest barrier at which
the open hops span 1, 2 and 3 dimensions.

Every edge ``k`` of the network joins node ``edges[k, 0]`` to node ``edges[k, 1]`` shifted by the
integer cell translation ``images[k]`` and is an instance of distinct hop ``edge_hop[k]``. For a
barrier cut E the edges with E_m <= E form a periodic graph; each connected component spans
0, 1, 2 or 3 dimensions, the rank of the lattice translations of its cycles:

    dim = rank([B; T]) - rank(B)

with ``B`` the component's node-edge incidence matrix and ``T`` its edges' translations. The
percolation barrier in d dimensions is the lowest cut at which some component spans >= d.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import numpy as np

__all__ = ["Percolation", "network_dimensionality", "percolation_barriers"]


@dataclass(frozen=True)
class Percolation:
    """The lowest barrier cut (eV) at which the hop network spans ``dim`` dimensions; ``None``
    when no cut within the hops found does. ``std`` is the spread of the hop that sets it;
    ``hops`` the indices of the distinct hops open at that cut."""

    dim: int
    barrier: float | None
    std: float | None = None
    hops: tuple[int, ...] = ()

    def to_dict(self) -> dict:
        return {"dim": self.dim, "barrier_ev": self.barrier, "std_ev": self.std, "hops": list(self.hops)}



def network_dimensionality(n_nodes: int, edges: np.ndarray, images: np.ndarray) -> int:
    """Dimensionality (-1 without nodes, else 0..3) of a periodic graph: the largest, over its
    connected components, rank of the lattice translations of the component's cycles.

    ``edges`` (E, 2) node pairs (u -> v), ``images`` (E, 3) integer cell translation of v.
    A self-loop (u, u, t) is a cycle with translation t.
    """
    if n_nodes <= 0:
        return -1
    edges = np.asarray(edges, dtype=int).reshape(-1, 2)
    images = np.asarray(images, dtype=float).reshape(-1, 3)
    if len(edges) == 0:
        return 0
    from scipy.sparse import coo_matrix
    from scipy.sparse.csgraph import connected_components

    adj = coo_matrix((np.ones(len(edges)), (edges[:, 0], edges[:, 1])), shape=(n_nodes, n_nodes))
    _, comp = connected_components(adj, directed=False)
    best = 0
    for c in np.unique(comp[edges[:, 0]]):
        sel = comp[edges[:, 0]] == c
        e, t = edges[sel], images[sel]
        nodes, local = np.unique(e, return_inverse=True)
        local = local.reshape(-1, 2)
        inc = np.zeros((len(nodes), len(e)))
        cols = np.arange(len(e))
        inc[local[:, 0], cols] -= 1.0
        inc[local[:, 1], cols] += 1.0  # a self-loop's column stays zero
        dim = np.linalg.matrix_rank(np.vstack([inc, t.T])) - np.linalg.matrix_rank(inc)
        best = max(best, int(dim))
    return best


def percolation_barriers(n_nodes: int, edges: np.ndarray, images: np.ndarray, edge_hop: np.ndarray,
                         barriers: Sequence[float], stds: Sequence[float] | None = None) -> dict[int, Percolation]:
    """Percolation barriers in 1, 2 and 3 dimensions of a periodic hop network whose edge k
    (``edges[k]``, translation ``images[k]``) is an instance of distinct hop ``edge_hop[k]`` with
    barrier ``barriers[edge_hop[k]]`` (eV). Hops with a NaN barrier never open."""
    e_m = np.asarray(barriers, dtype=float)
    sd = np.asarray(stds if stds is not None else np.zeros(len(e_m)), dtype=float)
    edge_hop = np.asarray(edge_hop, dtype=int)
    out: dict[int, Percolation] = {d: Percolation(d, None) for d in (1, 2, 3)}
    for cut in np.unique(e_m[np.isfinite(e_m)]):
        open_hops = np.flatnonzero(np.isfinite(e_m) & (e_m <= cut))
        keep = np.isin(edge_hop, open_hops)
        dim = network_dimensionality(n_nodes, np.asarray(edges)[keep], np.asarray(images)[keep])
        setter = int(open_hops[np.argmax(e_m[open_hops])])
        for d in (1, 2, 3):
            if dim >= d and out[d].barrier is None:
                out[d] = Percolation(d, float(cut), float(sd[setter]), tuple(int(h) for h in open_hops))
        if dim >= 3:
            break
    return out
