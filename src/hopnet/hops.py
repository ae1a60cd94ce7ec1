"""The hop network of a mobile ion on the primitive cell, grouped into symmetry-distinct hops.

Every pair of ion sites closer than ``max_hop`` Å (periodic images included) is an edge
``(u, v, t)``: from site u to site v shifted by the cell translation t. ``(u, v, t)`` and
``(v, u, -t)`` are one edge; a hop from a site to its own image is ``(u, u, t)`` with t's first
non-zero component positive. Two edges are the same distinct hop when a space-group operation of
the cell maps one onto the other (either direction). The operation (R, τ) maps the fractional
point f to R f + τ; each ion site u goes to a site σ(u) plus a translation c(u), so that the edge
(u, v, t) goes to

    (σ(u), σ(v), R t + c(v) − c(u)).

The work is one neighbour search and ``n_operations × n_edges`` integer look-ups: a few
milliseconds for cells of hundreds of ions, where a pairwise comparison of hops is quadratic.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any

import numpy as np

from hopnet.cells import locate, symbols
from hopnet.infra.errors import PathError

log = logging.getLogger(__name__)

__all__ = ["HopGraph", "hop_graph", "MAX_EDGES"]

#: a network with more edges than this is refused (it would take minutes to predict anyway)
MAX_EDGES = 200_000
_MIN_HOP = 0.5  # Å: shorter "hops" are the same site written twice


@dataclass(frozen=True)
class HopGraph:
    """The periodic hop network of ``ion`` on ``cell`` (the primitive cell).

    ``ion_sites`` (n,) are the indices in ``cell`` of graph node k; ``edges`` (E, 2) node pairs;
    ``images`` (E, 3) the cell translation of the second node; ``labels`` (E,) the distinct hop of
    each edge, numbered by increasing length; ``lengths`` (E,) in Å.
    """

    ion_sites: np.ndarray
    edges: np.ndarray
    images: np.ndarray
    labels: np.ndarray
    lengths: np.ndarray
    cell: Any = None

    @property
    def n_hops(self) -> int:
        return int(self.labels.max()) + 1 if len(self.labels) else 0

    def representative(self, label: int) -> int:
        """The first edge of distinct hop ``label``."""
        return int(np.flatnonzero(self.labels == label)[0])


def _canonical(u: np.ndarray, v: np.ndarray, t: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Each edge written in its one direction: u < v, or u == v with t's first non-zero > 0."""
    first = np.zeros(len(t), dtype=int)
    for k in (2, 1, 0):
        first = np.where(t[:, k] != 0, t[:, k], first)
    flip = (u > v) | ((u == v) & (first < 0))
    return np.where(flip, v, u), np.where(flip, u, v), np.where(flip[:, None], -t, t)


def _edges(cell: Any, ion_sites: np.ndarray, max_hop: float) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    frac = np.asarray(cell.frac_coords, dtype=float)[ion_sites]
    lat = np.asarray(cell.lattice.matrix, dtype=float)
    from pymatgen.core import Lattice

    lattice = Lattice(lat)
    us, vs, ts, ds = [], [], [], []
    for a in range(len(ion_sites)):
        fc, _, idx, img = lattice.get_points_in_sphere(frac, frac[a] @ lat, float(max_hop), zip_results=False)
        if fc is None or len(fc) == 0:
            continue
        idx = np.asarray(idx, dtype=int)
        img = np.rint(np.asarray(img, dtype=float)).astype(int).reshape(-1, 3)
        d = np.linalg.norm((frac[idx] + img - frac[a]) @ lat, axis=1)
        keep = d > _MIN_HOP
        us.append(np.full(int(keep.sum()), a))
        vs.append(idx[keep])
        ts.append(img[keep])
        ds.append(d[keep])
        if sum(len(x) for x in us) > 2 * MAX_EDGES:
            raise PathError(f"more than {MAX_EDGES} hops shorter than {max_hop:g} Å; lower max_hop")
    if not us:
        return np.zeros(0, int), np.zeros(0, int), np.zeros((0, 3), int), np.zeros(0)
    u, v, t = _canonical(np.concatenate(us), np.concatenate(vs), np.concatenate(ts))
    d = np.concatenate(ds)
    key = np.column_stack([u, v, t])
    _, first = np.unique(key, axis=0, return_index=True)
    first = np.sort(first)
    return u[first], v[first], t[first], d[first]


def _site_maps(cell: Any, ion_sites: np.ndarray, symprec: float) -> list[tuple[np.ndarray, np.ndarray, np.ndarray]]:
    """Per space-group operation: (R, σ, c) with σ the image node of each ion site and c its
    translation. Operations that do not map the ion sites onto themselves are skipped."""
    from pymatgen.symmetry.analyzer import SpacegroupAnalyzer

    try:
        ops = SpacegroupAnalyzer(cell, symprec=float(symprec)).get_symmetry_operations(cartesian=False)
    except Exception as exc:  # noqa: BLE001 - spglib fails on odd cells: no grouping beyond identity
        log.info("no space group (%s): every hop stands alone", exc)
        return []
    frac = np.asarray(cell.frac_coords, dtype=float)[ion_sites]
    lat = np.asarray(cell.lattice.matrix, dtype=float)
    tol = max(0.05, 2.0 * float(symprec))
    out = []
    for op in ops:
        r = np.rint(op.rotation_matrix).astype(int)
        mapped = frac @ r.T + op.translation_vector
        at = locate(cell, ion_sites, mapped @ lat, tol)
        if at is None:
            continue
        sigma, c = at
        out.append((r, sigma.astype(int), c.astype(int)))
    return out


def _union_find_labels(n: int, pairs: list[np.ndarray]) -> np.ndarray:
    from scipy.sparse import coo_matrix
    from scipy.sparse.csgraph import connected_components

    if not pairs:
        return np.arange(n)
    p = np.concatenate(pairs, axis=0)
    adj = coo_matrix((np.ones(len(p)), (p[:, 0], p[:, 1])), shape=(n, n))
    return connected_components(adj, directed=False)[1]


def hop_graph(cell: Any, ion: str, max_hop: float = 5.0, symprec: float = 0.1) -> HopGraph:
    """The hop network of ``ion`` on ``cell`` (a pymatgen Structure, best the primitive cell);
    see the module docstring."""
    ion_sites = np.array([k for k, s in enumerate(symbols(cell)) if s == ion], dtype=int)
    if len(ion_sites) == 0:
        raise PathError(f"no {ion} in the cell")
    u, v, t, d = _edges(cell, ion_sites, max_hop)
    if len(u) > MAX_EDGES:
        raise PathError(f"{len(u)} hops shorter than {max_hop:g} Å (more than {MAX_EDGES}); lower max_hop")
    n = len(u)
    if n == 0:
        return HopGraph(ion_sites, np.zeros((0, 2), int), np.zeros((0, 3), int), np.zeros(0, int), np.zeros(0), cell)
    # every edge as one integer key, to look images up
    n_sites = len(ion_sites)
    span = int(np.abs(t).max()) + 1
    k1 = _key(u, v, t, n_sites, span)
    order = np.argsort(k1)
    pairs = []
    for r, sigma, c in _site_maps(cell, ion_sites, symprec):
        u2, v2, t2 = _canonical(sigma[u], sigma[v], t @ r.T + c[v] - c[u])
        inside = np.all(np.abs(t2) < span, axis=1)  # longer translations are not edges
        k2 = _key(u2, v2, np.where(inside[:, None], t2, 0), n_sites, span)
        pos = np.minimum(np.searchsorted(k1[order], k2), n - 1)
        hit = inside & (k1[order][pos] == k2)
        pairs.append(np.column_stack([np.flatnonzero(hit), order[pos[hit]]]))
    comp = _union_find_labels(n, pairs)
    # distinct hops numbered by increasing length (then first edge)
    reps = np.array([np.flatnonzero(comp == c)[0] for c in np.unique(comp)])
    rank = np.lexsort((reps, np.round(d[reps], 4)))
    relabel = np.empty(len(reps), dtype=int)
    relabel[rank] = np.arange(len(reps))
    _, comp_index = np.unique(comp, return_inverse=True)
    labels = relabel[comp_index]
    return HopGraph(ion_sites, np.column_stack([u, v]), t, labels.astype(int), d, cell)


def _key(u: np.ndarray, v: np.ndarray, t: np.ndarray, n_sites: int, span: int) -> np.ndarray:
    w = 2 * span + 1
    tt = (t + span).astype(np.int64)
    return (((u.astype(np.int64) * n_sites + v) * w + tt[:, 0]) * w + tt[:, 1]) * w + tt[:, 2]
