"""Screen a structure: every symmetry-distinct hop of a mobile ion, its barrier, and the
percolation barriers of the hop network (the Python face of ``hopnet screen``).

1. **Hops.** The input is reduced to its Niggli-reduced primitive cell
   (:func:`hopnet.cells.primitive_cell`; pymatgen's translation search, same Cartesian frame).
   :func:`hopnet.hops.hop_graph` connects every pair of ``ion`` sites closer than ``max_hop``
   (Å, periodic images included) and groups the edges into symmetry-distinct hops with the
   space-group operations of that cell (``symprec``): one neighbour search and integer look-ups,
   no pairwise comparison of hops, so no structure can stall it. The periodic hop network, its
   dimensionality and percolation barriers are those of the input cell; each distinct hop is then
   placed on the input cell's sites (multiplicities per input cell). ``explicit_hops`` ((i, j)
   site pairs) replace the enumeration by user-chosen hops.
2. **Band cell.** Each distinct hop's band is built by :func:`hopnet.cells.canonical_hop` in
   the canonical cell of the primitive cell: its smallest diagonal supercell whose perpendicular
   widths are all at least ``min_image_distance`` (:data:`DEFAULT_MIN_IMAGE_DISTANCE` = 6.5 Å:
   training bands are ~120-atom cells; the narrowest width of the 559 training cells is 5.2 Å,
   its 10th percentile 6.66 Å), enlarged along the hop when the hop would end on its own start's
   image. Both end sites are emptied (a vacancy hop). The primitive, conventional or any
   supercell of a crystal, in any atom order, origin or orientation, thus gives the same bands and
   barriers. Each hop records that supercell of the primitive cell (``ScreenHop.supercell``, JSON
   ``band_supercell``) and the band's atom count (``band_atoms``).
3. **Hosts without the ion** (charged-empty hosts such as FePO4, MnO2, TiS2). The ion is put on
   user-given fractional sites (``insert_sites``) or on the interstitial sites that
   :func:`hopnet.insertion.find_interstitials` finds (by default the
   :data:`DEFAULT_INTERSTITIALS` most open distinct sites, ``n_interstitials=None`` for all),
   each expanded to its orbit under the host's space group. The host with the ion on every
   orbit position (ions appended after the host atoms, so host indices are kept) gives the
   migration graph of step 1; each hop's band is then the **empty host** plus the ion's images
   (dilute limit: one ion per band cell, no vacancy). ``ScreenResult.insertion`` says which
   (``"user"`` or ``"interstitial"``) and ``insertion_sites`` lists the sites.
4. **Barriers.** All distinct hops go to :func:`hopnet.inference.predict_many` in one batch.
5. **Percolation.** Every edge of the migration graph (hops and their periodic images) carries the
   barrier of its distinct hop. For a barrier cut E, the edges with E_m <= E form a periodic
   graph; each connected component spans 0, 1, 2 or 3 dimensions -- the rank of the lattice
   translations of its cycles, computed as ``rank([B; T]) - rank(B)`` with ``B`` the component's
   incidence matrix and ``T`` the edges' cell translations. The percolation barrier in d
   dimensions is the lowest cut at which some component spans at least d dimensions.

Energies in eV, lengths in Å.
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass, field, replace
from typing import Any, Sequence

import numpy as np

from hopnet.cells import canonical_hop, locate, primitive_cell, supercell_diagonal, symbols
from hopnet.infra.errors import HopnetError, PathError, StructureError
from hopnet.hops import hop_graph
from hopnet.metrics import DEFAULT_THRESHOLD_EV
from hopnet.percolation import Percolation, network_dimensionality, percolation_barriers

log = logging.getLogger(__name__)

__all__ = ["ScreenHop", "ScreenResult", "screen", "deciding_hops", "find_hops", "band_supercell", "CSV_COLUMNS", "DEFAULT_MIN_IMAGE_DISTANCE",
           "DEFAULT_INTERSTITIALS"]

_SITE_TOL = 0.05  # Å: a graph node must sit this close to an ion site of the input structure
#: Å: smallest perpendicular width of a band cell (about the 10th percentile, 6.66 Å, of the
#: narrowest width of the 559 training cells; 8.2 % of them are narrower than 6.5 Å).
DEFAULT_MIN_IMAGE_DISTANCE = 6.5
#: ions that make a structure a host of its own mobile ion: screening another ion in it needs an
#: explicit insertion (the mobile ions of the training data that are not usually framework ions)
MOBILE_IONS = ("Li", "Na", "K", "Rb", "Cs", "Mg", "Ca", "Zn")
#: how many of the most open distinct interstitial sites an ion-free host is screened with (each
#: site adds its whole orbit, and so more distinct hops to predict; ``None``: all).
DEFAULT_INTERSTITIALS = 2


@dataclass(frozen=True)
class ScreenHop:
    """One symmetry-distinct hop. ``start``/``end``: site indices in the input structure (for a
    host without the ion: in the host with the inserted sites appended, see
    :class:`ScreenResult`); ``image``: the cell translation of the end site; ``multiplicity``: how
    many edges of the hop network (per input cell) are equivalent to it; ``supercell``: the
    diagonal of the supercell of the (Niggli-reduced) primitive cell the band was built in,
    ``band_atoms`` its atom count (ion images + host; 0 when the band could not be built)."""

    index: int
    start: int
    end: int
    image: tuple[int, int, int]
    length: float
    multiplicity: int
    barrier: float = float("nan")
    std: float = float("nan")
    conductor_class: str = ""
    warnings: tuple[str, ...] = ()
    error: str | None = None
    supercell: tuple[int, int, int] = (1, 1, 1)
    band_atoms: int = 0
    refined: bool = False  # predicted again by the refinement model (see :func:`screen`)

    def to_dict(self) -> dict:
        return {
            "index": self.index, "from": self.start, "to": self.end, "image": list(self.image),
            "length_a": round(self.length, 6), "multiplicity": self.multiplicity,
            "barrier_ev": _num(self.barrier), "std_ev": _num(self.std),
            "conductor_class": self.conductor_class, "band_supercell": list(self.supercell),
            "band_atoms": self.band_atoms, "warnings": list(self.warnings), "error": self.error,
            "refined": self.refined,
        }


@dataclass
class ScreenResult:
    """Everything ``hopnet screen`` reports for one structure. ``insertion`` is None when the
    structure holds the ion, else ``"user"`` (user-given sites) or ``"interstitial"`` (sites
    found by :func:`hopnet.insertion.find_interstitials`); ``insertion_sites`` then lists each
    distinct inserted site (``frac``, ``multiplicity``, ``clearance_a``, ``orbit`` and the site
    ``indices`` the hops use: the host's atoms keep indices ``0..n_atoms-1``, the inserted ion
    positions follow). ``structure`` is the cell the hop indices refer to (the input, or the host
    with the inserted ions)."""

    source: str
    formula: str
    ion: str
    n_atoms: int
    max_hop: float
    symprec: float
    model: str
    threshold: float
    hop_source: str  # "migration graph" or "explicit"
    hops: list[ScreenHop]
    percolation: dict[int, Percolation]
    dimensionality: int  # of the whole network found (every hop open)
    dimensionality_at_threshold: int  # of the network of hops with E_m < threshold
    warnings: list[str] = field(default_factory=list)
    min_image_distance: float = 0.0  # Å, smallest perpendicular width of the band cells
    insertion: str | None = None  # None, "user" or "interstitial"
    insertion_sites: list[dict] = field(default_factory=list)
    interstitials_found: int = 0  # distinct interstitial sites found (``insertion == "interstitial"``)
    structure: Any = field(default=None, repr=False, compare=False)
    network: Any = field(default=None, repr=False, compare=False)  # the hop graph on the primitive cell

    def insertion_line(self) -> str:
        """One line saying where the ion was put in a host without it ('' when it was present)."""
        if self.insertion is None:
            return ""
        k = len(self.insertion_sites)
        how = (f"{k} user-given site(s)" if self.insertion == "user" else
               f"the {k} most open of {self.interstitials_found} symmetry-found interstitial site(s)")
        n = sum(int(s["multiplicity"]) for s in self.insertion_sites)
        sites = "; ".join(f"({', '.join(f'{x:.4f}' for x in s['frac'])}) x{s['multiplicity']}"
                          for s in self.insertion_sites)
        return (f"no {self.ion} in the host: {self.ion} inserted at {how} "
                f"[{sites}], {n} position(s) per cell (site indices {self.n_atoms}-{self.n_atoms + n - 1}); "
                f"each band holds one {self.ion} in the empty host")

    def to_dict(self) -> dict:
        return {
            "source": self.source, "formula": self.formula, "ion": self.ion, "n_atoms": self.n_atoms,
            "max_hop_a": self.max_hop, "symprec": self.symprec, "model": self.model,
            "threshold_ev": self.threshold, "hop_source": self.hop_source,
            "hops": [h.to_dict() for h in self.hops],
            "percolation": {f"{d}d": p.to_dict() for d, p in sorted(self.percolation.items())},
            "dimensionality": self.dimensionality,
            "dimensionality_at_threshold": self.dimensionality_at_threshold,
            "min_image_distance_a": self.min_image_distance,
            "insertion": self.insertion, "insertion_sites": list(self.insertion_sites),
            "interstitials_found": self.interstitials_found,
            "warnings": list(self.warnings),
        }

    def csv_rows(self) -> list[list[Any]]:
        """One row per hop (see :data:`CSV_COLUMNS`); percolation barriers repeated on each row."""
        perc = [self.percolation[d].barrier for d in (1, 2, 3)]
        return [[self.source, self.formula, self.ion, h.index, h.start, h.end, f"{h.length:.4f}", h.multiplicity,
                 _fmt(h.barrier), _fmt(h.std), h.conductor_class, *(_fmt(p) for p in perc), self.model, h.error or "",
                 "yes" if h.refined else ""]
                for h in self.hops]

    def table(self) -> str:
        """A plain-text report: one line per hop, then the percolation barriers."""
        lines = [f"{self.source}: {self.ion} in {self.formula} ({self.n_atoms} atoms), "
                 f"{len(self.hops)} distinct hop(s) [{self.hop_source}, max hop {self.max_hop:g} Å, "
                 f"symprec {self.symprec:g}, band cells >= {self.min_image_distance:g} Å, model {self.model}]"]
        if self.insertion is not None:
            lines.append(self.insertion_line())
        lines.append(f"{'hop':>4} {'from':>5} {'to':>5} {'image':>10} {'length/Å':>9} {'mult':>4} {'band cell':>9}  "
                     f"{'E_m/eV':>14}  class")
        for h in self.hops:
            em = f"{h.barrier:.3f} ± {h.std:.3f}" if math.isfinite(h.barrier) else "failed"
            img = ",".join(str(int(x)) for x in h.image)
            cell = "x".join(str(int(x)) for x in h.supercell)
            lines.append(f"{h.index:>4} {h.start:>5} {h.end:>5} {img:>10} {h.length:>9.3f} {h.multiplicity:>4} "
                         f"{cell:>9}  {em:>14}  {h.conductor_class or '-'}{'  (refined)' if h.refined else ''}")
            if h.error:
                lines.append(f"       error: {h.error}")
        lines.append("percolation barriers (lowest E_m at which the hops connect into an infinite network):")
        for d in (1, 2, 3):
            p = self.percolation[d]
            val = (f"{p.barrier:.3f} ± {p.std:.3f} eV  (hops {' '.join(map(str, p.hops))})"
                   if p.barrier is not None else "not reached within the hops found")
            lines.append(f"  {d}-D: {val}")
        lines.append(f"network dimensionality: {self.dimensionality}-D with every hop; "
                     f"{self.dimensionality_at_threshold}-D with the hops below {self.threshold:g} eV")
        return "\n".join(lines)


CSV_COLUMNS = ["source", "formula", "ion", "hop", "from", "to", "length_a", "multiplicity", "barrier_ev",
               "std_ev", "class", "percolation_1d_ev", "percolation_2d_ev", "percolation_3d_ev", "model", "error",
               "refined"]


def _num(x: float | None) -> float | None:
    return float(x) if x is not None and math.isfinite(x) else None


def _fmt(x: float | None) -> str:
    return f"{x:.4f}" if x is not None and math.isfinite(x) else ""


# --------------------------------------------------------------------------- hops
@dataclass(frozen=True)
class _Graph:
    """The periodic hop network on the primitive cell of the input structure (``prim``,
    Niggli-reduced, :func:`hopnet.cells.primitive_cell`), hops grouped by
    :func:`hopnet.hops.hop_graph`. The network's dimensionality and percolation barriers are those of the input cell's network
    (a supercell's lattice is a full-rank sublattice of the primitive one)."""

    ion_sites: np.ndarray  # (n,) index in ``prim`` of graph node k
    edges: np.ndarray  # (E, 2) graph nodes
    images: np.ndarray  # (E, 3) int, in cells of ``prim``
    labels: np.ndarray  # (E,) distinct-hop label of each edge
    prim: Any = None  # the primitive cell (pymatgen Structure, no oxidation states)
    n_cells: int = 1  # primitive cells per input cell
    host_prim: Any = None  # for inserted ions: the empty host's primitive cell

    def representative(self, label: int) -> int:
        """The first edge of distinct hop ``label``."""
        return int(np.flatnonzero(self.labels == label)[0])


def _ion_indices(structure: Any, ion: str) -> np.ndarray:
    return np.array([k for k, sym in enumerate(symbols(structure)) if sym == ion], dtype=int)


def _graph(prim: Any, ion: str, max_hop: float, symprec: float, n_cells: int) -> _Graph:
    g = hop_graph(prim, ion, max_hop, symprec)
    return _Graph(g.ion_sites, g.edges, g.images, g.labels, prim, n_cells)


def _min_image(frac: np.ndarray, i: int, j: int) -> np.ndarray:
    """Cell translation of site j that brings it closest to site i (fractional rule of the data set)."""
    return -np.round(frac[j] - frac[i]).astype(int)


def _check_explicit(structure: Any, ion: str, hops: Sequence[tuple[int, int]]) -> None:
    ion_set = set(_ion_indices(structure, ion).tolist())
    for h, (i, j) in enumerate(hops):
        for x in (i, j):
            if not (isinstance(x, (int, np.integer)) and 0 <= int(x) < len(structure)):
                raise PathError(f"hop {h}: site {x!r} is out of range (structure has {len(structure)} atoms)")
            if int(x) not in ion_set:
                raise PathError(f"hop {h}: site {int(x)} is not a {ion} site")
        if i == j:
            raise PathError(f"hop {h}: start and end are the same site ({i})")


def _explicit_graph(structure: Any, prim: Any, n_cells: int, ion: str, hops: Sequence[tuple[int, int]],
                    graph: _Graph | None, tol: float) -> _Graph:
    """Edges (on ``prim``) for user-given (i, j) hops of the input structure: each hop and, when
    the migration graph is available, every edge it labels as equivalent; otherwise just the hop
    and its lattice translations (minimum image)."""
    ion_prim = _ion_indices(prim, ion)
    frac = np.asarray(structure.frac_coords, dtype=float)
    cart = np.asarray(structure.cart_coords, dtype=float)
    lat = np.asarray(structure.lattice.matrix, dtype=float)
    edges, images, labels = [], [], []
    for h, (i, j) in enumerate(hops):
        t = _min_image(frac, int(i), int(j))
        at = locate(prim, ion_prim, np.vstack([cart[int(i)], cart[int(j)] + t @ lat]), tol)
        if at is None:
            raise PathError(f"hop {h}: its end points do not sit on {ion} sites of the primitive cell")
        (u, v), (cu, cv) = at
        tp = cv - cu
        match = None
        if graph is not None and len(graph.edges):
            fwd = (graph.edges[:, 0] == u) & (graph.edges[:, 1] == v) & np.all(graph.images == tp, axis=1)
            bwd = (graph.edges[:, 0] == v) & (graph.edges[:, 1] == u) & np.all(graph.images == -tp, axis=1)
            hit = np.flatnonzero(fwd | bwd)
            match = int(graph.labels[hit[0]]) if len(hit) else None
        if match is not None:
            sel = graph.labels == match  # type: ignore[union-attr]
            edges.extend(graph.edges[sel].tolist())  # type: ignore[union-attr]
            images.extend(graph.images[sel].tolist())  # type: ignore[union-attr]
        else:
            edges.append([int(u), int(v)])
            images.append(tp.tolist())
        labels.extend([h] * (len(edges) - len(labels)))
    return _Graph(ion_prim, np.array(edges, int).reshape(-1, 2), np.array(images, int).reshape(-1, 3),
                  np.array(labels, int), prim, n_cells)


def deciding_hops(hops: Sequence[ScreenHop], percolation: dict[int, Percolation], threshold: float) -> list[int]:
    """The distinct hops that decide a screen's answer: those whose ±2σ interval straddles the
    conductor ``threshold`` (eV), and for each dimension the hop that completes the network (the
    highest-barrier hop open at the percolation barrier)."""
    out = {h.index for h in hops if math.isfinite(h.barrier) and math.isfinite(h.std)
           and abs(h.barrier - threshold) <= 2.0 * h.std}
    by_index = {h.index: h for h in hops}
    for p in percolation.values():
        if p.barrier is not None and p.hops:
            out.add(max(p.hops, key=lambda k: by_index[k].barrier))
    return sorted(out)


def band_supercell(lattice: Any, min_image_distance: float) -> np.ndarray:
    """Diagonal ``(n1, n2, n3)`` of the smallest diagonal supercell of ``lattice`` (pymatgen
    Lattice) whose perpendicular widths are all at least ``min_image_distance`` Å (scaling axis k
    by n_k scales the width across it by n_k); ones when the distance is 0."""
    return supercell_diagonal(lattice.matrix, min_image_distance)


def _hop_path(graph: _Graph, label: int, ion: str, host: Any, min_image_distance: float) -> tuple[Any, np.ndarray]:
    """The band of distinct hop ``label`` in its canonical cell (:func:`hopnet.cells.canonical_hop`
    on the primitive cell) and that cell's supercell diagonal. Without ``host``: a vacancy hop,
    both end sites emptied. With ``host`` (no ion): the dilute hop of one ion through the
    empty host's canonical cell."""
    prim = graph.prim
    e = graph.representative(label)
    pc = np.asarray(prim.cart_coords, dtype=float)
    u, v = graph.ion_sites[graph.edges[e]]
    start = pc[u]
    hop = pc[v] + graph.images[e] @ np.asarray(prim.lattice.matrix, dtype=float) - start
    if host is None:
        c = canonical_hop(prim, ion, start, hop, min_width=min_image_distance, primitive=prim)
    else:
        c = canonical_hop(host, ion, start, hop, min_width=min_image_distance, vacancy=False,
                          primitive=graph.host_prim)
    c.path.validate()
    return c.path, np.asarray(c.supercell, dtype=int)


def _reps_on_input(structure: Any, ion: str, graph: _Graph, tol: float) -> list[tuple[int, int, np.ndarray]]:
    """One (start site, end site, end-site image) of the input structure per distinct hop of the
    primitive-cell graph: the hop vector is kept, the start placed on an input ion site."""
    prim = graph.prim
    ion_in = _ion_indices(structure, ion)
    pc = np.asarray(prim.cart_coords, dtype=float)
    first = np.array([int(np.flatnonzero(graph.labels == lab)[0]) for lab in range(int(graph.labels.max()) + 1)])
    u, v = graph.ion_sites[graph.edges[first, 0]], graph.ion_sites[graph.edges[first, 1]]
    hop_vec = pc[v] + graph.images[first] @ np.asarray(prim.lattice.matrix, dtype=float) - pc[u]
    start = locate(structure, ion_in, pc[u], tol)
    if start is None:
        raise PathError(f"the primitive cell's {ion} sites do not sit on the input structure's")
    i = ion_in[start[0]]
    start_cart = np.asarray(structure.cart_coords, dtype=float)[i]
    end = locate(structure, ion_in, start_cart + hop_vec, tol)
    if end is None:
        raise PathError(f"a {ion} hop of the primitive cell ends off the input structure's {ion} sites")
    j = ion_in[end[0]]
    return [(int(a), int(b), t) for a, b, t in zip(i, j, end[1])]


def find_hops(structure: Any, ion: str, max_hop: float = 5.0, symprec: float = 0.1,
              explicit_hops: Sequence[tuple[int, int]] | None = None, *, host: Any = None,
              min_image_distance: float = 0.0) -> tuple[_Graph, list[ScreenHop], list[Any]]:
    """The hop network (on the primitive cell), the distinct hops (unpredicted; sites and images
    of the input structure, multiplicities per input cell) and their migration paths (None where
    a path could not be built; the hop's ``error`` says why). Paths are built in the input cell,
    or in the supercell whose widths are all >= ``min_image_distance`` Å (see
    :func:`band_supercell`). ``host``: the structure without its inserted ``ion`` sites (same
    lattice); the paths are then dilute hops of one ion through it instead of vacancy hops."""
    from pymatgen.core import Structure

    plain = Structure(structure.lattice, symbols(structure), structure.frac_coords)
    prim = primitive_cell(plain, symprec)
    n_cells = len(plain) // len(prim)
    tol = max(_SITE_TOL, 2.0 * float(symprec))
    frac = np.asarray(structure.frac_coords, dtype=float)
    if explicit_hops is not None:
        hops_in = [tuple(h) for h in explicit_hops]
        if not hops_in or any(len(h) != 2 for h in hops_in):
            raise PathError("explicit hops must be a non-empty list of (i, j) site pairs")
        _check_explicit(structure, ion, hops_in)
        longest = max(structure.lattice.get_distance_and_image(frac[int(i)], frac[int(j)])[0] for i, j in hops_in)
        graph = _explicit_graph(plain, prim, n_cells, ion, hops_in, _graph(prim, ion, longest + 0.01, symprec, n_cells), tol)
        reps = [(int(i), int(j), _min_image(frac, int(i), int(j))) for i, j in hops_in]
    else:
        graph = _graph(prim, ion, max_hop, symprec, n_cells)
        if len(graph.edges) == 0:
            raise PathError(f"no {ion}-{ion} hop shorter than --max-hop {max_hop:g} Å; raise max_hop")
        reps = _reps_on_input(plain, ion, graph, tol)
    if host is not None:
        graph = replace(graph, host_prim=primitive_cell(host, symprec))
    lattice = np.asarray(structure.lattice.matrix, dtype=float)
    hops, paths = [], []
    for h, (i, j, t) in enumerate(reps):
        length = float(np.linalg.norm((frac[j] + t - frac[i]) @ lattice))
        mult = int(np.sum(graph.labels == h)) * n_cells
        scale = band_supercell(prim.lattice, min_image_distance)
        try:
            path, scale = _hop_path(graph, h, ion, host, min_image_distance)
            err = None
        except HopnetError as exc:
            path, err = None, str(exc)
        n_band = len(path.host) + path.n_images if path is not None else 0
        hops.append(ScreenHop(h, i, j, tuple(int(x) for x in t), length, mult, error=err,
                              supercell=tuple(int(x) for x in scale), band_atoms=n_band))
        paths.append(path)
    return graph, hops, paths


def _insert(host: Any, ion: str, symprec: float, insert_sites: Sequence[Sequence[float]] | None,
            n_interstitials: int | None, insert_min_dist: float | None) -> tuple[Any, str, list[dict], int]:
    """The host with ``ion`` on the orbits of the user's sites or of the found interstitials,
    ``"user"``/``"interstitial"``, the sites' records (see :class:`ScreenResult`) and the number
    of distinct interstitial sites found (0 for user sites)."""
    from hopnet.insertion import default_min_distance, expand_sites, fill_sites, find_interstitials

    formula = host.composition.reduced_formula
    if insert_sites is not None:
        if len(insert_sites) == 0:
            raise PathError("insert_sites is empty: give at least one fractional site")
        sites = expand_sites(host, insert_sites, symprec)
        how, found = "user", 0
    else:
        if n_interstitials is not None and n_interstitials < 1:
            raise HopnetError(f"n_interstitials must be positive (or None for all), got {n_interstitials}")
        dist = default_min_distance(ion) if insert_min_dist is None else float(insert_min_dist)
        sites = find_interstitials(host, ion, min_dist=dist, symprec=symprec)
        if not sites:
            raise PathError(f"ion {ion} is absent from the structure ({formula}) and no interstitial site is "
                            f"{dist:.2f} Å clear of every host atom; give insertion sites (--insert-frac)")
        found = len(sites)
        sites = sites[:n_interstitials] if n_interstitials is not None else sites
        how = "interstitial"
    filled, index = fill_sites(host, ion, sites)
    records = [{**s.to_dict(), "indices": [int(k) for k in idx]} for s, idx in zip(sites, index)]
    return filled, how, records, found


def screen(structure: Any, ion: str, max_hop: float = 5.0, symprec: float = 0.1, model: Any = "default",
           explicit_hops: Sequence[tuple[int, int]] | None = None, *, threshold: float = DEFAULT_THRESHOLD_EV,
           source: str = "", max_atoms: int | None = None,
           min_image_distance: float = DEFAULT_MIN_IMAGE_DISTANCE,
           insert_sites: Sequence[Sequence[float]] | None = None,
           n_interstitials: int | None = DEFAULT_INTERSTITIALS,
           insert_min_dist: float | None = None, insert: bool = False, refine: Any = None) -> ScreenResult:
    """Screen ``structure`` (anything :func:`hopnet.structures.to_structure` reads) for hops of
    ``ion``: the symmetry-distinct hops up to ``max_hop`` Å (or ``explicit_hops``, (i, j) site
    pairs), their predicted barriers (eV) and the 1-/2-/3-D percolation barriers. Bands are
    built in supercells at least ``min_image_distance`` Å wide (0: the input cell).

    A structure without ``ion`` is a host: the ion is inserted on ``insert_sites`` (fractional,
    each expanded to its symmetry orbit) or, when none are given, on the ``n_interstitials`` most
    open distinct interstitial sites (None: all) at least ``insert_min_dist`` Å from every host
    atom (default :func:`hopnet.insertion.default_min_distance`); see the module docstring.
    A structure that holds other mobile ions (:data:`MOBILE_IONS`) but not ``ion`` is screened by
    insertion only when asked (``insert=True`` or ``insert_sites``): otherwise it is an error, as
    in :func:`hopnet.inference.predict`. A structure of nothing but ``ion`` has no host: an error.

    ``refine``: a second model (name, folder or predictor; meant for one that runs a
    universal-potential NEB, minutes per hop) used only on the hops that decide the answer
    (:func:`deciding_hops`); those hops are flagged ``refined`` and the percolation is recomputed."""
    from hopnet.inference import DEFAULT_MAX_ATOMS, _check_ion, _check_size, predict_many
    from hopnet.structures import to_structure

    ion = _check_ion(ion)
    if not (math.isfinite(max_hop) and max_hop > 0):
        raise HopnetError(f"max_hop must be a positive length in Å, got {max_hop}")
    if not (math.isfinite(symprec) and symprec > 0):
        raise HopnetError(f"symprec must be positive, got {symprec}")
    if isinstance(structure, (str,)) or hasattr(structure, "__fspath__"):
        source = source or str(structure)
    s = to_structure(structure)
    _check_size(len(s), DEFAULT_MAX_ATOMS if max_atoms is None else max_atoms)
    if not s.is_ordered:
        raise StructureError("structure is disordered (partial occupancies); screen an ordered cell")
    if not (math.isfinite(min_image_distance) and min_image_distance >= 0):
        raise HopnetError(f"min_image_distance must be a length >= 0 Å, got {min_image_distance}")
    n_ion = len(_ion_indices(s, ion))
    if n_ion == len(s):
        raise PathError(f"host has no atoms: the structure holds nothing but {ion}")
    insertion, records, host, found = None, [], None, 0
    others = sorted(set(symbols(s)) & set(MOBILE_IONS) - {ion})
    if n_ion == 0 and others and not insert and insert_sites is None:
        raise PathError(f"ion {ion} is absent from the structure ({s.composition.reduced_formula}, which holds "
                        f"{', '.join(others)}); screen {ion} inserted at interstitial sites with --insert "
                        f"(insert=True) or give sites with --insert-frac")
    if n_ion == 0:
        host = s
        s, insertion, records, found = _insert(host, ion, symprec, insert_sites, n_interstitials, insert_min_dist)
        log.info("no %s in %s: inserted at %d %s site(s)", ion, host.composition.reduced_formula, len(records),
                 insertion)
    elif insert_sites is not None:
        raise PathError(f"the structure already holds {n_ion} {ion}; insertion sites are for hosts without {ion}")
    elif n_ion == 1 and explicit_hops is None:
        log.info("one %s site per cell: hops to its own images are built in supercells", ion)
    graph, hops, paths = find_hops(s, ion, max_hop, symprec, explicit_hops, host=host,
                                   min_image_distance=min_image_distance)
    todo = [k for k, p in enumerate(paths) if p is not None]
    results = predict_many([paths[k] for k in todo], model=model, threshold=threshold, on_error="record") if todo else []
    name = results[0].model if results else str(model)
    for k, r in zip(todo, results):
        hops[k] = ScreenHop(hops[k].index, hops[k].start, hops[k].end, hops[k].image, hops[k].length,
                            hops[k].multiplicity, r.barrier, r.std, r.conductor_class, tuple(r.warnings), r.error,
                            hops[k].supercell, hops[k].band_atoms)
    e_m = np.array([h.barrier for h in hops], dtype=float)
    sd = np.array([h.std for h in hops], dtype=float)
    n = len(graph.ion_sites)
    perc = percolation_barriers(n, graph.edges, graph.images, graph.labels, e_m, sd)
    if refine is not None:
        redo = [k for k in deciding_hops(hops, perc, threshold) if paths[k] is not None]
        again = predict_many([paths[k] for k in redo], model=refine, threshold=threshold, on_error="record") if redo else []
        for k, r in zip(redo, again):
            hops[k] = replace(hops[k], barrier=r.barrier, std=r.std, conductor_class=r.conductor_class,
                              warnings=tuple(r.warnings), error=r.error, refined=True)
        e_m = np.array([h.barrier for h in hops], dtype=float)
        sd = np.array([h.std for h in hops], dtype=float)
        perc = percolation_barriers(n, graph.edges, graph.images, graph.labels, e_m, sd)
        if again:
            name = f"{name} (hops {', '.join(str(k) for k in redo)} refined with {again[0].model})"
    finite = np.isfinite(e_m)
    full = network_dimensionality(n, graph.edges[np.isin(graph.labels, np.flatnonzero(finite))],
                                  graph.images[np.isin(graph.labels, np.flatnonzero(finite))])
    good = np.flatnonzero(finite & (e_m < threshold))
    at_thr = network_dimensionality(n, graph.edges[np.isin(graph.labels, good)], graph.images[np.isin(graph.labels, good)])
    warns = sorted({w for h in hops for w in h.warnings})
    warns += [f"hop {h.index} failed: {h.error}" for h in hops if h.error]
    shown = s if host is None else host  # formula and atom count of the input
    return ScreenResult(
        source=source or shown.composition.reduced_formula, formula=shown.composition.reduced_formula, ion=ion,
        n_atoms=len(shown), max_hop=float(max_hop), symprec=float(symprec), model=name, threshold=float(threshold),
        hop_source="explicit" if explicit_hops is not None else "migration graph", hops=hops,
        percolation=perc, dimensionality=max(full, 0), dimensionality_at_threshold=max(at_thr, 0), warnings=warns,
        min_image_distance=float(min_image_distance), insertion=insertion, insertion_sites=records,
        interstitials_found=found, structure=s, network=graph,
    )
