"""Periodic k-nearest-neighbour edges, as upstream ALIGNN builds them, vectorised.

For every atom all neighbours (periodic images included) within the cutoff are found with
pymatgen's C neighbour search; each atom keeps its ``k`` nearest plus every neighbour tied
(within ``tie_tolerance``) with the k-th. If some atom has fewer than ``k`` neighbours inside
the cutoff, the cutoff grows by 1.5x and the search is redone. (The result depends only on
each atom's k-th distance, so the search may start in a smaller, density-based sphere.) Finally the edge set is made
undirected: each kept ``i -> j`` (image ``n``) also gives ``j -> i`` (image ``-n``), duplicates
removed.

Before every search the memory it will need is estimated (:func:`search_cost`: pymatgen expands
the atoms into every periodic image cell the sphere can reach, so a cell a fraction of an Å thick
needs thousands of images) and a search over the budget (:func:`hopnet.graphs.config.graph_memory_budget`)
is refused with a :class:`StructureError` before anything is allocated.
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass

import numpy as np

from hopnet.infra.errors import StructureError
from hopnet.graphs.config import check_graph_memory
from hopnet.structures import perpendicular_widths

log = logging.getLogger(__name__)

CUTOFF_GROWTH = 1.5
MAX_ATTEMPTS = 12
#: Pairs of distinct atoms closer than this (Å) are treated as one point and get no bond (a bond
#: direction would be undefined). The migration data set has such a band (an ion image on a host
#: atom), so this is logged, not an error.
MIN_DISTANCE = 1e-4
#: pymatgen's ``find_points_in_spheres`` searches at least this radius (its ``min_r``, Å).
SEARCH_MIN_RADIUS = 1.0
#: bytes the search needs per atom per periodic image cell it scans: the atoms' coordinates
#: expanded into every image (peak RSS ~22 B with pymatgen 2026.10 for cells 1e-5-0.05 Å thin).
SEARCH_BYTES_PER_IMAGE_ATOM = 24
#: bytes per neighbour pair found: pymatgen's growing result buffers and the returned arrays
#: (~100 B), then the copies, masks and the k-th-distance table of the selection here (peak RSS
#: of :func:`knn_edges` 135-150 B per pair for 1,000-20,000 random atoms).
SEARCH_BYTES_PER_PAIR = 150


@dataclass
class NeighborEdges:
    """Directed edges ``src -> dst``, sorted by (src, dst, image).

    image: int64 [E, 3], lattice translation of ``dst``; vec: float64 [E, 3] Cartesian Å,
    ``pos[dst] + image @ lattice - pos[src]``; dist: float64 [E] Å; cutoff: Å radius used.
    """

    src: np.ndarray
    dst: np.ndarray
    image: np.ndarray
    vec: np.ndarray
    dist: np.ndarray
    cutoff: float


def search_cost(lattice: np.ndarray, n_atoms: int, radius: float) -> tuple[float, float, float]:
    """(bytes, image cells, expected neighbour pairs) of a periodic search of ``n_atoms`` atoms
    within ``radius`` Å. pymatgen expands the atoms into ``2 ceil(r / w) + 1`` image cells
    along an axis of perpendicular width ``w`` (a cell 0.05 Å thin needs 321 along it at 8 Å)
    and finds ``n² (4/3) π r³ / V`` pairs at the mean density. Floats: a thin cell's counts
    overflow integers."""
    lattice = np.asarray(lattice, dtype=np.float64)
    r = max(float(radius), SEARCH_MIN_RADIUS)
    images = float(np.prod(2.0 * np.ceil(r / perpendicular_widths(lattice)) + 1.0))
    volume = abs(float(np.linalg.det(lattice)))
    pairs = float(n_atoms) ** 2 * (4.0 / 3.0) * math.pi * r ** 3 / volume
    return SEARCH_BYTES_PER_IMAGE_ATOM * images * n_atoms + SEARCH_BYTES_PER_PAIR * pairs, images, pairs


def _check_search(lattice: np.ndarray, n: int, r: float, name: object, memory_gb: float | None) -> None:
    need, images, pairs = search_cost(lattice, n, r)
    width = float(perpendicular_widths(lattice).min())
    check_graph_memory(need, f"neighbour search within {r:.3g} Å over {images:,.0f} periodic images of a cell "
                       f"{width:.3g} Å wide at its narrowest, ~{pairs:,.0f} neighbour pairs", name, n, memory_gb)


def _search(cart: np.ndarray, lattice: np.ndarray, cutoff: float):
    """All pairs within ``cutoff`` Å, minus self pairs and coincident atoms."""
    from pymatgen.optimization.neighbors import find_points_in_spheres

    i, j, image, dist = find_points_in_spheres(
        cart, cart, r=float(cutoff), pbc=np.ones(3, dtype=np.int64), lattice=lattice, tol=1e-8
    )
    not_self = dist >= MIN_DISTANCE
    coincident = (i != j) & ~not_self
    if coincident.any():
        bad = np.flatnonzero(coincident)[0]
        log.warning("atoms %d and %d coincide (%.2g Å apart); no bond between them",
                    i[bad], j[bad], dist[bad])
    return (i[not_self].astype(np.int64), j[not_self].astype(np.int64),
            np.rint(image[not_self]).astype(np.int64), dist[not_self])


def knn_edges(
    lattice: np.ndarray,
    frac_coords: np.ndarray,
    max_neighbors: int = 12,
    cutoff: float = 8.0,
    tie_tolerance: float = 1e-3,
    *,
    memory_gb: float | None = None,
    name: object = "a structure",
) -> NeighborEdges:
    """Undirected k-NN crystal graph of a periodic structure.

    lattice: [3, 3] Å, rows are lattice vectors; frac_coords: [N, 3] fractional coordinates.
    memory_gb: budget of each search (default :func:`hopnet.graphs.config.graph_memory_budget`);
    a search that would need more raises :class:`StructureError` naming ``name`` (any object
    whose ``str`` is the formula, formatted only then).
    """
    lattice = np.ascontiguousarray(lattice, dtype=np.float64)
    frac = np.ascontiguousarray(frac_coords, dtype=np.float64)
    if lattice.shape != (3, 3) or frac.ndim != 2 or frac.shape[1] != 3 or len(frac) == 0:
        raise StructureError(f"bad structure arrays: lattice {lattice.shape}, coords {frac.shape}")
    if not (np.isfinite(lattice).all() and np.isfinite(frac).all()):
        raise StructureError("structure has non-finite lattice or coordinates")
    volume = abs(np.linalg.det(lattice))
    if volume < 1e-6:
        raise StructureError(f"cell volume {volume:.3g} Å^3 is degenerate")
    n = len(frac)
    k = int(max_neighbors)
    cart = np.ascontiguousarray(frac @ lattice)

    # The kept set depends only on each atom's k-th distance, not on the search radius, as long
    # as every atom has k neighbours (and their ties) inside it. So search first in the sphere
    # that holds ~2k atoms at the mean density (cheaper), then grow up to and beyond ``cutoff``.
    r_dense = (3.0 * 2 * k * volume / (4.0 * np.pi * n)) ** (1.0 / 3.0) + tie_tolerance
    r = min(float(cutoff), r_dense)
    for _ in range(MAX_ATTEMPTS):
        _check_search(lattice, n, r, name, memory_gb)
        i, j, image, dist = _search(cart, lattice, r)
        # enough when every atom has k neighbours with their ties fully inside the sphere
        inside = np.bincount(i[dist <= r - tie_tolerance], minlength=n)
        if inside.min() >= k:
            break
        log.debug("radius %.3g Å leaves an atom with %d < %d neighbours; growing", r, inside.min(), k)
        r = min(r * CUTOFF_GROWTH, float(cutoff)) if r < cutoff else r * CUTOFF_GROWTH
    else:
        raise StructureError(f"fewer than {k} neighbours within {r:.3g} Å for some atom")

    # distance of each atom's k-th nearest neighbour: scatter into an [n, max_count] table
    if i.size > 1 and not (i[1:] >= i[:-1]).all():
        order = np.argsort(i, kind="stable")
        i, j, image, dist = i[order], j[order], image[order], dist[order]
    counts = np.bincount(i, minlength=n)
    col = np.arange(i.size) - np.repeat(np.cumsum(counts) - counts, counts)
    table = np.full((n, int(counts.max())), np.inf)
    table[i, col] = dist
    kth = np.partition(table, k - 1, axis=1)[:, k - 1]
    keep = dist <= kth[i] + tie_tolerance
    i, j, image = i[keep], j[keep], image[keep]

    # undirected: add reverses, drop duplicates; unique keys also sort by (src, dst, image)
    src = np.concatenate((i, j))
    dst = np.concatenate((j, i))
    img = np.concatenate((image, -image))
    m = int(np.abs(img).max()) if img.size else 0
    s = 2 * m + 1
    key = ((src * n + dst) * s + (img[:, 0] + m)) * s + (img[:, 1] + m)
    key = key * s + (img[:, 2] + m)
    _, idx = np.unique(key, return_index=True)
    src, dst, img = src[idx], dst[idx], img[idx]
    vec = cart[dst] + img @ lattice - cart[src]
    return NeighborEdges(src, dst, img, vec, np.linalg.norm(vec, axis=1), r)
