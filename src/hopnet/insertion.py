"""Sites for a mobile ion in a host that holds none (charged-empty hosts such as FePO4, MnO2,
TiS2): symmetry-distinct interstitial sites found in the host's empty space, or user-given
fractional sites, each expanded to its orbit under the host's space group.

How :func:`find_interstitials` finds candidates:

1. **Voronoi vertices.** ``scipy.spatial.Voronoi`` of the host atoms in a padded supercell
   (every periodic image within :data:`PAD` Å of the cell); each vertex is equidistant from four
   or more atoms and the local maxima of the distance to the nearest atom are among them.
   Vertices in the central cell are kept.
2. **Clearance.** Only vertices at least ``min_dist`` Å from every host atom (periodic images
   included) are kept. The default, :func:`default_min_distance`, is 75 % of the ion-oxide
   bond length given by Shannon radii: ``0.75 * (r_ion + r_O2-)`` with the ion's six-fold ionic
   radius and r_O2- = 1.40 Å (Li+: 0.75 * (0.76 + 1.40) = 1.62 Å; Na+: 1.82 Å).
3. **Merging.** Greedily, most open first: a kept vertex absorbs every vertex within
   ``merge_tol`` Å (default 0.5 Å), so one cage gives one candidate, at its most open vertex.
4. **Symmetry.** The host's space-group operations (``SpacegroupAnalyzer(host, symprec)``, in
   the input cell: a supercell's operations include its internal translations) act on each
   candidate. The images that land within ``merge_tol`` Å of it are averaged with it
   (repeated a few times): a candidate near a special position (e.g. an inversion centre) moves
   onto it. A candidate whose orbit touches the orbit of a more open candidate is the same
   distinct site and is dropped. Each distinct site comes back with its orbit in the input cell
   (fractional, in [0, 1)) and multiplicity, most open first.

Lengths in Å; coordinates fractional in the host's cell.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from hopnet.infra.errors import PathError, StructureError
from hopnet.structures import perpendicular_widths

__all__ = ["InterstitialSite", "PAD", "default_min_distance", "expand_sites", "fill_sites", "find_interstitials",
           "symmetry_orbit"]

PAD = 6.0  # Å of periodic images around the cell in the Voronoi construction
MERGE_TOL = 0.5  # Å: candidates (and orbit points) closer than this are one site
_OXIDE_RADIUS = 1.40  # Å, Shannon ionic radius of O2- (CN VI)
#: Shannon (1976) six-fold ionic radii (Å) of mobile ions in their usual charge state.
_ION_RADIUS = {"Li": 0.76, "Na": 1.02, "K": 1.38, "Rb": 1.52, "Cs": 1.67, "Mg": 0.72, "Ca": 1.00, "Sr": 1.18,
               "Ba": 1.35, "Zn": 0.74, "Al": 0.535, "Ag": 1.15, "Cu": 0.77}
_FALLBACK_RADIUS = 1.0  # Å, for ions without a tabulated radius


@dataclass(frozen=True)
class InterstitialSite:
    """One symmetry-distinct site: ``frac`` its representative, ``orbit`` (m, 3) all equivalent
    positions in the host cell (fractional, in [0, 1)), ``clearance`` the distance (Å) from the
    representative to the nearest host atom."""

    frac: np.ndarray
    orbit: np.ndarray
    clearance: float

    @property
    def multiplicity(self) -> int:
        """Equivalent positions per host cell."""
        return len(self.orbit)

    def to_dict(self) -> dict:
        return {"frac": [round(float(x), 6) for x in self.frac], "multiplicity": self.multiplicity,
                "clearance_a": round(float(self.clearance), 4),
                "orbit": [[round(float(x), 6) for x in p] for p in self.orbit]}


def default_min_distance(ion: str) -> float:
    """The default closest approach (Å) of an inserted ``ion`` to any host atom:
    ``0.75 * (r_ion + 1.40 Å)``, with the ion's Shannon six-fold ionic radius (1.0 Å when not
    tabulated) and 1.40 Å that of O2-. Li: 1.62 Å, Na: 1.82 Å, Mg: 1.59 Å."""
    r = _ION_RADIUS.get(ion, _FALLBACK_RADIUS)
    return 0.75 * (r + _OXIDE_RADIUS)


def _wrap(frac: np.ndarray) -> np.ndarray:
    f = np.asarray(frac, dtype=float) % 1.0
    f[np.isclose(f, 1.0, rtol=0.0, atol=1e-9)] = 0.0
    return f


def _clearance(host: Any, frac: np.ndarray) -> np.ndarray:
    """Distance (Å) from each fractional point to the nearest host atom, periodic images included."""
    frac = np.asarray(frac, dtype=float).reshape(-1, 3)
    if len(frac) == 0:
        return np.zeros(0)
    d = np.asarray(host.lattice.get_all_distances(frac, host.frac_coords)).reshape(len(frac), len(host))
    return d.min(axis=1)


def _operations(host: Any, symprec: float) -> tuple[np.ndarray, np.ndarray]:
    """Rotations (k, 3, 3) and translations (k, 3) of the host's space group in its own
    fractional basis (identity only when spglib finds no symmetry)."""
    from pymatgen.symmetry.analyzer import SpacegroupAnalyzer

    try:
        ops = SpacegroupAnalyzer(host, symprec=float(symprec)).get_symmetry_operations(cartesian=False)
    except Exception:  # noqa: BLE001 - spglib fails on odd cells; fall back to P1
        ops = []
    if not ops:
        return np.eye(3)[None], np.zeros((1, 3))
    rot = np.array([op.rotation_matrix for op in ops], dtype=float)
    trans = np.array([op.translation_vector for op in ops], dtype=float)
    return rot, trans


def _images(rot: np.ndarray, trans: np.ndarray, frac: np.ndarray) -> np.ndarray:
    return np.einsum("kij,j->ki", rot, np.asarray(frac, dtype=float)) + trans


def _nearest_shift(lattice: Any, ref: np.ndarray, pts: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Each point of ``pts`` moved by a lattice vector to its periodic image closest to ``ref``
    (fractional), and the Cartesian distances (Å) of those images to ``ref``."""
    pts = np.asarray(pts, dtype=float).reshape(-1, 3)
    d = pts - ref
    d = d - np.round(d)
    best = d.copy()
    dist = np.linalg.norm(d @ lattice.matrix, axis=1)
    # in skewed cells the nearest image may lie one cell further; check the 26 neighbours
    for shift in np.array(np.meshgrid([-1, 0, 1], [-1, 0, 1], [-1, 0, 1])).T.reshape(-1, 3):
        if not shift.any():
            continue
        cand = d + shift
        cd = np.linalg.norm(cand @ lattice.matrix, axis=1)
        better = cd < dist - 1e-12
        best[better], dist[better] = cand[better], cd[better]
    return ref + best, dist


def _symmetrize(lattice: Any, rot: np.ndarray, trans: np.ndarray, frac: np.ndarray, tol: float) -> np.ndarray:
    """Move ``frac`` onto the special position it sits near: average it with its images under
    the operations that map it within ``tol`` Å of itself (a few rounds)."""
    x = np.asarray(frac, dtype=float)
    for _ in range(4):
        near, dist = _nearest_shift(lattice, x, _images(rot, trans, x))
        new = near[dist < tol].mean(axis=0)
        if np.linalg.norm((new - x) @ lattice.matrix) < 1e-6:
            return new
        x = new
    return x


def symmetry_orbit(host: Any, frac: Sequence[float], symprec: float = 0.1, tol: float = 0.05,
                   _ops: tuple[np.ndarray, np.ndarray] | None = None) -> np.ndarray:
    """All positions equivalent to ``frac`` under the host's space group, in the host cell
    (fractional, in [0, 1)); images closer than ``tol`` Å count once."""
    rot, trans = _ops if _ops is not None else _operations(host, symprec)
    pts = _wrap(_images(rot, trans, np.asarray(frac, dtype=float)))
    close = np.asarray(host.lattice.get_all_distances(pts, pts)) < tol  # one periodic distance matrix
    keep = np.zeros(len(pts), dtype=bool)
    for k in range(len(pts)):  # the first of each group of coinciding images stays
        keep[k] = not np.any(close[k, :k] & keep[:k])
    return pts[keep]


def _orbit_distance(host: Any, a: np.ndarray, b: np.ndarray) -> float:
    return float(np.min(host.lattice.get_all_distances(a, b))) if len(a) and len(b) else math.inf


def _voronoi_vertices(host: Any) -> np.ndarray:
    """Fractional coordinates (in [0, 1)) of the Voronoi vertices of the periodic host."""
    from scipy.spatial import QhullError, Voronoi

    m = np.asarray(host.lattice.matrix, dtype=float)
    widths = perpendicular_widths(m)
    pad = PAD / widths  # padding in fractions of each axis
    n = np.ceil(pad).astype(int)
    frac = _wrap(np.asarray(host.frac_coords, dtype=float))
    shifts = np.array(np.meshgrid(*[np.arange(-k, k + 1) for k in n], indexing="ij")).reshape(3, -1).T
    pts = (frac[None, :, :] + shifts[:, None, :]).reshape(-1, 3)
    inside = np.all((pts >= -pad) & (pts < 1.0 + pad), axis=1)
    pts = pts[inside]
    if len(pts) < 5:
        return np.zeros((0, 3))
    try:
        vor = Voronoi(pts @ m)
    except QhullError as exc:
        raise StructureError(f"Voronoi construction of the host failed: {str(exc).splitlines()[0]}") from None
    v = vor.vertices @ np.linalg.inv(m)
    v = v[np.all((v >= -1e-9) & (v < 1.0 - 1e-9), axis=1)]
    return _wrap(v)


def find_interstitials(host: Any, ion: str, min_dist: float | None = None, symprec: float = 0.1,
                       merge_tol: float = MERGE_TOL) -> list[InterstitialSite]:
    """Symmetry-distinct interstitial sites for ``ion`` in ``host`` (a pymatgen Structure),
    most open first; see the module docstring. ``min_dist`` (Å): closest allowed approach to
    any host atom (default :func:`default_min_distance`); ``merge_tol`` (Å): candidates closer
    than this are one site; ``symprec``: spglib tolerance of the host's space group. An empty
    list when no point of the host is ``min_dist`` Å clear of every atom."""
    min_dist = default_min_distance(ion) if min_dist is None else float(min_dist)
    if not (math.isfinite(min_dist) and min_dist > 0):
        raise PathError(f"min_dist must be a positive length in Å, got {min_dist}")
    if not (math.isfinite(merge_tol) and merge_tol > 0):
        raise PathError(f"merge_tol must be a positive length in Å, got {merge_tol}")
    verts = _voronoi_vertices(host)
    clear = _clearance(host, verts)
    order = np.argsort(-clear, kind="stable")
    verts, clear = verts[order][clear[order] >= min_dist], clear[order][clear[order] >= min_dist]
    # greedy merge: the most open vertex of each cluster stands for it
    taken = np.zeros(len(verts), dtype=bool)
    cands = []
    for k in range(len(verts)):
        if taken[k]:
            continue
        d = np.asarray(host.lattice.get_all_distances(verts[k:k + 1], verts)).reshape(-1)
        taken |= d < merge_tol
        cands.append(verts[k])
    ops = _operations(host, symprec)
    sites: list[InterstitialSite] = []
    known = np.zeros((0, 3))  # every orbit point of the sites found so far
    for c in cands:
        if len(known) and float(np.min(host.lattice.get_all_distances(c[None, :], known))) < merge_tol:
            continue  # on the orbit of a more open site: nothing new
        x = _wrap(_symmetrize(host.lattice, *ops, c, merge_tol))
        orbit = symmetry_orbit(host, x, tol=min(0.1, merge_tol), _ops=ops)
        cl = float(_clearance(host, orbit).min())
        if cl < min_dist:
            continue  # symmetrizing moved it too close to the host
        if any(_orbit_distance(host, orbit, s.orbit) < merge_tol for s in sites):
            continue  # the same distinct site as a more open candidate
        sites.append(InterstitialSite(x, orbit, cl))
        known = np.vstack([known, orbit])
    return sorted(sites, key=lambda s: -s.clearance)


def expand_sites(host: Any, sites: Sequence[Sequence[float]], symprec: float = 0.1,
                 min_dist: float = 0.5, merge_tol: float = MERGE_TOL) -> list[InterstitialSite]:
    """User-given fractional sites, each expanded to its orbit under the host's space group.
    A site closer than ``min_dist`` Å to a host atom is an error; a site on (within
    ``merge_tol`` Å of) the orbit of an earlier one is the same distinct site and is dropped."""
    from hopnet.paths import as_frac3

    ops = _operations(host, symprec)
    out: list[InterstitialSite] = []
    for k, site in enumerate(sites):
        x = _wrap(as_frac3(site, f"insertion site {k}"))
        cl = float(_clearance(host, x)[0])
        if cl < min_dist:
            raise PathError(f"insertion site {k} {np.round(x, 4).tolist()} is {cl:.2f} Å from a host atom "
                            f"(closer than {min_dist:g} Å)")
        orbit = symmetry_orbit(host, x, tol=0.05, _ops=ops)
        if len(orbit) > 1:
            gap = float(np.min(host.lattice.get_all_distances(orbit, orbit)[~np.eye(len(orbit), dtype=bool)]))
            if gap < merge_tol:
                raise PathError(f"insertion site {k} {np.round(x, 4).tolist()} is {gap:.2f} Å from a symmetry "
                                f"image of itself; give the special position it is near")
        if any(_orbit_distance(host, orbit, s.orbit) < merge_tol for s in out):
            continue
        out.append(InterstitialSite(x, orbit, float(_clearance(host, orbit).min())))
    return out


def fill_sites(host: Any, ion: str, sites: Sequence[InterstitialSite]) -> tuple[Any, list[np.ndarray]]:
    """The host with ``ion`` on every orbit position of ``sites``, appended after the host
    atoms (so host indices are kept), and for each site the indices of its orbit in the result."""
    from pymatgen.core import Structure

    species = list(host.species)
    coords = [np.asarray(host.frac_coords, dtype=float)]
    index: list[np.ndarray] = []
    start = len(host)
    for s in sites:
        index.append(np.arange(start, start + len(s.orbit)))
        start += len(s.orbit)
        species += [ion] * len(s.orbit)
        coords.append(s.orbit)
    return Structure(host.lattice, species, np.vstack(coords)), index
