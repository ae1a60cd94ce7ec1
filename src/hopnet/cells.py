"""Canonical cells: one band per hop, whatever cell, atom order, origin or orientation it came in.

A hop is a crystal (the host plus the ion on both end sites), the ion's start (Cartesian, Å) and
its hop vector (Å). The canonical band of a hop is built in three steps:

1. the primitive cell of that crystal (pymatgen's translation search, ``tolerance`` Å), so that
   a conventional cell or any supercell gives the same cell;
2. its Niggli-reduced form (unique up to rotation), so that any choice of primitive vectors gives
   the same cell;
3. the smallest diagonal supercell of that reduced cell whose perpendicular widths are all at
   least ``min_width`` Å (and long enough that the hop does not end on the start's own image).

In it both end sites are emptied and the ion's band is laid along the hop vector. Atom order,
origin shift and rotation of the input change none of this (rotation rotates the band, which no
energy sees). The module also holds the crystal helpers used by screening and NEB:
species symbols, minimum-image lookup of sites.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any

import numpy as np

from hopnet.infra.errors import PathError
from hopnet.structures import perpendicular_widths, species_symbol

log = logging.getLogger(__name__)

__all__ = [
    "symbols", "locate", "supercell_diagonal", "primitive_cell", "CanonicalHop",
    "canonical_hop", "canonical_from_path", "DEFAULT_MIN_WIDTH", "SITE_TOL",
]

#: the narrowest cell width a band is built in (Å): the 6.5 Å of screening; 8.2 % of the 559
#: literature cells are narrower.
DEFAULT_MIN_WIDTH = 6.5
#: a site must sit this close (Å) to where it is looked for
SITE_TOL = 0.05


def symbols(structure: Any) -> list[str]:
    """Element symbols of every site of a pymatgen structure."""
    return [species_symbol(sp) for sp in structure.species]


def locate(cell: Any, sites: np.ndarray, cart: np.ndarray, tol: float = SITE_TOL
           ) -> tuple[np.ndarray, np.ndarray] | None:
    """For each Cartesian point (Å) the entry of ``sites`` (indices in ``cell``) it sits on
    (within ``tol`` Å, periodic) and the cell translation from that site to the point; None
    when some point sits on none of them."""
    sites = np.asarray(sites, dtype=int)
    frac = np.asarray(cart, dtype=float).reshape(-1, 3) @ np.linalg.inv(cell.lattice.matrix)
    if len(sites) == 0:
        return None if len(frac) else (np.zeros(0, int), np.zeros((0, 3), int))
    site_frac = np.asarray(cell.frac_coords, dtype=float)[sites]
    d = np.asarray(cell.lattice.get_all_distances(frac, site_frac)).reshape(len(frac), len(sites))
    k = np.argmin(d, axis=1)
    if len(frac) and float(d[np.arange(len(frac)), k].max()) > tol:
        return None
    return k, np.round(frac - site_frac[k]).astype(int)


def supercell_diagonal(lattice: np.ndarray, min_width: float) -> np.ndarray:
    """Diagonal ``(n1, n2, n3)`` of the smallest diagonal supercell of ``lattice`` (rows are
    vectors, Å) whose perpendicular widths are all at least ``min_width`` Å (scaling axis k by
    n_k scales the width across it by n_k); ones when ``min_width`` is 0."""
    widths = perpendicular_widths(np.asarray(lattice, dtype=float))
    if not min_width > 0:
        return np.ones(3, dtype=int)
    return np.maximum(1, np.ceil(float(min_width) / widths - 1e-9)).astype(int)


def primitive_cell(structure: Any, tolerance: float = 0.1) -> Any:
    """The Niggli-reduced primitive cell of ``structure`` in the same Cartesian frame (oxidation
    states and site properties dropped). Falls back to the reduced input cell when pymatgen
    finds no smaller cell or the one it finds does not hold every input site."""
    from pymatgen.core import Structure

    plain = Structure(structure.lattice, symbols(structure), structure.frac_coords)
    prim = plain
    try:
        cand = plain.get_primitive_structure(tolerance=float(tolerance))
        if len(cand) < len(plain) and len(plain) % len(cand) == 0 and _holds(cand, plain, 2 * tolerance):
            prim = cand
    except Exception as exc:  # noqa: BLE001 - pymatgen raises assorted errors on odd cells
        log.info("no primitive cell (%s): the input cell is used", exc)
    reduced = prim.get_reduced_structure("niggli")
    return reduced if _holds(reduced, prim, 1e-3) else prim


def _holds(cell: Any, structure: Any, tol: float) -> bool:
    """Whether every site of ``structure`` sits on a site of ``cell`` of the same element."""
    cs, ss = symbols(cell), symbols(structure)
    for el in set(ss):
        at = locate(cell, np.array([k for k, s in enumerate(cs) if s == el]),
                    np.asarray(structure.cart_coords)[[k for k, s in enumerate(ss) if s == el]], max(tol, 1e-3))
        if at is None:
            return False
    return True


@dataclass(frozen=True)
class CanonicalHop:
    """A hop rebuilt in its canonical cell: the :class:`~hopnet.paths.MigrationPath` (host
    without the ion at either end), the primitive cell it came from and the supercell diagonal."""

    path: Any
    primitive: Any
    supercell: tuple[int, int, int]


def canonical_hop(crystal: Any, ion: str, start_cart: np.ndarray, hop_vector: np.ndarray, *,
                  min_width: float = DEFAULT_MIN_WIDTH, tolerance: float = 0.1, n_images: int = 5,
                  primitive: Any = None, vacancy: bool = True) -> CanonicalHop:
    """The band of the hop of ``ion`` from ``start_cart`` along ``hop_vector`` (Å), built in the
    canonical cell of ``crystal`` (see the module docstring).

    ``vacancy=True``: ``crystal`` holds the ion on both end sites and both are emptied (a vacancy
    hop). ``vacancy=False``: ``crystal`` is a host without the ion at the end points (an
    insertion hop; the end points need not be sites of it). ``primitive``: the primitive cell, when
    the caller has it already (it must be in ``crystal``'s Cartesian frame).
    """
    from pymatgen.core import Structure

    from hopnet.paths import MigrationPath

    start = np.asarray(start_cart, dtype=float).reshape(3)
    hop = np.asarray(hop_vector, dtype=float).reshape(3)
    prim = primitive if primitive is not None else primitive_cell(crystal, tolerance)
    lat = np.asarray(prim.lattice.matrix, dtype=float)
    scale = supercell_diagonal(lat, min_width)
    hop_frac = hop @ np.linalg.inv(lat)
    # the end must not be the start's own image in the band cell
    tol = max(SITE_TOL, 2 * tolerance)

    def own_image(scale: np.ndarray) -> bool:
        f = hop_frac / scale
        return float(np.linalg.norm((f - np.round(f)) @ (lat * scale[:, None]))) < 2 * tol

    while own_image(scale):
        scale[int(np.argmax(np.abs(hop_frac) / scale))] += 1
    cell = prim.make_supercell(np.diag(scale), in_place=False) if np.any(scale > 1) else prim.copy()
    syms = symbols(cell)
    ends = np.vstack([start, start + hop])
    if vacancy:
        ion_sites = np.array([k for k, s in enumerate(syms) if s == ion], dtype=int)
        at = locate(cell, ion_sites, ends, tol)
        if at is None:
            raise PathError(f"the {ion} hop's end points do not sit on {ion} sites of the primitive cell")
        gone = ion_sites[at[0]]
        if gone[0] == gone[1]:
            raise PathError(f"the {ion} hop ends on its own start site in the canonical cell")
        keep = np.setdiff1d(np.arange(len(cell)), gone)
        host = Structure(cell.lattice, [syms[k] for k in keep], cell.frac_coords[keep])
        a = np.asarray(cell.frac_coords[gone[0]], dtype=float)
    else:
        host = Structure(cell.lattice, syms, cell.frac_coords)
        a = start @ np.linalg.inv(cell.lattice.matrix)
        a = a - np.floor(a)
    b = a + hop @ np.linalg.inv(cell.lattice.matrix)
    path = MigrationPath(host, ion, a, b, n_images=n_images, image_convention="as_given")
    return CanonicalHop(path, prim, tuple(int(x) for x in scale))


def canonical_from_path(path: Any, *, min_width: float = DEFAULT_MIN_WIDTH, tolerance: float = 0.1) -> CanonicalHop:
    """:func:`canonical_hop` for an existing :class:`~hopnet.paths.MigrationPath` (a data-set
    band, say): the crystal is its host with the ion on both end sites."""
    from pymatgen.core import Structure

    host = path.host
    lat = np.asarray(host.lattice.matrix, dtype=float)
    a, b = np.asarray(path.initial_frac, float), np.asarray(path.final_frac, float)
    crystal = Structure(host.lattice, symbols(host) + [path.ion, path.ion],
                        np.vstack([host.frac_coords, a, b - np.floor(b)]))
    return canonical_hop(crystal, path.ion, a @ lat, (b - a) @ lat, min_width=min_width,
                         tolerance=tolerance, n_images=path.n_images)
