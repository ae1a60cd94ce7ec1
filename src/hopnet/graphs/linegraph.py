"""Line graph of a crystal graph: nodes are bonds, edges join consecutive bonds.

For bonds ``e1 = (u -> v)`` and ``e2 = (v -> w)`` there is a line-graph edge ``e1 -> e2``
(backtracking pairs with ``w == u`` included, as DGL's ``line_graph`` default) whose feature is
the cosine of the bond angle at ``v``: the angle between ``-vec[e1]`` and ``vec[e2]``.

There is one pair per bond into an atom and bond out of it, so the pair count
(:func:`line_graph_size`) is known from the bonds before anything is allocated; building the
pairs needs about :data:`LINE_GRAPH_BYTES_PER_PAIR` bytes each.
"""

from __future__ import annotations

import numpy as np

#: peak bytes per bond pair while :func:`line_graph` runs and the graph keeps its result: int64
#: pair indices and their index temporaries (32 B), float64 cosines and the products summed into
#: them (24 B), the stacked [2, T] index (16 B) (measured 60-64 B with tracemalloc).
LINE_GRAPH_BYTES_PER_PAIR = 64


def line_graph_size(src: np.ndarray, dst: np.ndarray, num_nodes: int) -> int:
    """Number of bond pairs :func:`line_graph` makes: sum over atoms of in-degree x out-degree."""
    src = np.asarray(src, dtype=np.int64)
    dst = np.asarray(dst, dtype=np.int64)
    if src.size == 0:
        return 0
    return int(np.dot(np.bincount(dst, minlength=num_nodes), np.bincount(src, minlength=num_nodes)))


def line_graph(src: np.ndarray, dst: np.ndarray, edge_vec: np.ndarray, num_nodes: int
               ) -> tuple[np.ndarray, np.ndarray]:
    """Return ``lg_edge_index`` int64 [2, T] (bond indices) and ``lg_cos`` float64 [T].

    src, dst: int [E] bond end points; edge_vec: [E, 3] Å (dst image minus src).
    Pairs are ordered by ``e1``, then by ``e2``'s position among bonds sorted by source.
    """
    src = np.asarray(src, dtype=np.int64)
    dst = np.asarray(dst, dtype=np.int64)
    e = src.size
    if e == 0:
        return np.zeros((2, 0), dtype=np.int64), np.zeros(0, dtype=np.float64)
    by_src = np.argsort(src, kind="stable")
    out_deg = np.bincount(src, minlength=num_nodes)
    node_first = np.concatenate(([0], np.cumsum(out_deg)[:-1]))

    counts = out_deg[dst]  # bonds leaving the head of each bond
    e1 = np.repeat(np.arange(e, dtype=np.int64), counts)
    pair_first = np.cumsum(counts) - counts
    local = np.arange(e1.size, dtype=np.int64) - np.repeat(pair_first, counts)
    e2 = by_src[np.repeat(node_first[dst], counts) + local]

    vec = np.asarray(edge_vec, dtype=np.float64)
    # component-wise gathers: much faster than gathering rows of an [E, 3] array
    unit = np.ascontiguousarray((vec / np.linalg.norm(vec, axis=1, keepdims=True)).T)
    cos = unit[0][e1] * unit[0][e2]
    cos += unit[1][e1] * unit[1][e2]
    cos += unit[2][e1] * unit[2][e2]
    np.negative(cos, out=cos)
    np.clip(cos, -1.0, 1.0, out=cos)
    return np.stack((e1, e2)), cos
