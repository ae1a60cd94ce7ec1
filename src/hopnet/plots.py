"""Figures (matplotlib, Agg backend; no pyplot global state, so safe in any process): parity plots
of predicted vs. reference barriers, and the hop network of a screened structure drawn over its
cell (:func:`hop_network_plot`)."""

from __future__ import annotations

import io
import math
import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from hopnet.infra.errors import HopnetError
from hopnet.metrics import DEFAULT_THRESHOLD_EV
from hopnet.structures import species_symbol


def parity_plot(
    targets: Sequence[float],
    predictions: Sequence[float],
    path: str | os.PathLike,
    *,
    std: Sequence[float] | None = None,
    threshold: float | None = DEFAULT_THRESHOLD_EV,
    title: str = "",
) -> None:
    """Write :func:`parity_png` to ``path`` atomically."""
    from hopnet.infra.provenance import atomic_write_bytes

    atomic_write_bytes(path, parity_png(targets, predictions, std=std, threshold=threshold, title=title))


def parity_png(
    targets: Sequence[float],
    predictions: Sequence[float],
    *,
    std: Sequence[float] | None = None,
    threshold: float | None = DEFAULT_THRESHOLD_EV,
    title: str = "",
) -> bytes:
    """PNG bytes of predicted vs. reference barrier (eV): the y = x line, error bars of ``std``
    when given and, when ``threshold`` is given, the good/poor-conductor cut on both axes."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    from hopnet.metrics import regression_metrics

    t = np.asarray(targets, dtype=float).ravel()
    p = np.asarray(predictions, dtype=float).ravel()
    fig = Figure(figsize=(4.8, 4.6), dpi=150)
    FigureCanvasAgg(fig)
    ax = fig.add_subplot(1, 1, 1)
    lo = float(min(t.min(initial=0.0), p.min(initial=0.0), 0.0))
    hi = float(max(t.max(initial=1.0), p.max(initial=1.0))) * 1.05
    ax.plot([lo, hi], [lo, hi], color="0.4", lw=1, ls="-", zorder=1)
    if threshold is not None:
        ax.axvline(threshold, color="tab:red", lw=0.8, ls="--", zorder=1)
        ax.axhline(threshold, color="tab:red", lw=0.8, ls="--", zorder=1,
                   label=f"threshold {threshold:g} eV")
    yerr = np.asarray(std, dtype=float).ravel() if std is not None else None
    if yerr is not None and np.any(yerr > 0):
        ax.errorbar(t, p, yerr=yerr, fmt="none", ecolor="tab:blue", alpha=0.35, lw=0.8, zorder=2)
    ax.scatter(t, p, s=14, color="tab:blue", alpha=0.8, edgecolors="none", zorder=3)
    ax.set_xlim(lo, hi)
    ax.set_ylim(lo, hi)
    ax.set_aspect("equal")
    ax.set_xlabel("reference $E_m$ (eV)")
    ax.set_ylabel("predicted $E_m$ (eV)")
    if t.size:
        m = regression_metrics(t, p)
        ax.text(0.04, 0.96, f"n = {m['n']}\nMAE = {m['mae']:.3f} eV\n$R^2$ = {m['r2']:.2f}",
                transform=ax.transAxes, va="top", fontsize=8)
    if title:
        ax.set_title(title, fontsize=9)
    if threshold is not None:
        ax.legend(loc="lower right", fontsize=7, frameon=False)
    fig.tight_layout()
    buf = io.BytesIO()
    fig.savefig(buf, format="png")
    return buf.getvalue()


# --------------------------------------------------------------------------- hop network
# The hop network of a screened structure (``hopnet.screening.ScreenResult``), drawn over the cell
# projected along one lattice vector. ``ScreenResult`` lists the symmetry-distinct hops only; every
# edge of the network is recovered here by applying the structure's space-group operations
# (spglib, the screen's ``symprec``) to each distinct hop and checking the count against the
# hop's multiplicity. Lengths in Å, barriers in eV.

AXES = ("a", "b", "c")
_AXIS_PREFERENCE = ("c", "a", "b")  # order in which equally good viewing axes are chosen
_FRAC_EPS = 1e-6  # fractional tolerance when wrapping sites into the home cell [0, 1)
_COLOR_MAX_EV = 1.5  # barriers above this (eV) share the top colour: such hops are closed anyway


@dataclass(frozen=True)
class NetworkEdge:
    """One edge of the hop network: the ion at site ``start`` hops to site ``end`` shifted by the
    cell translation ``image`` (from ``frac[start]`` to ``frac[end] + image``, fractional
    coordinates as stored in the structure); ``hop`` is the index of its distinct hop."""

    hop: int
    start: int
    end: int
    image: tuple[int, int, int]


@dataclass(frozen=True)
class Segment:
    """One drawn edge, projected to the viewing plane (Å). ``periodic``: the edge leaves the home
    cell (it is drawn from each end's home-cell site across the boundary)."""

    hop: int
    barrier: float
    start: tuple[float, float]
    end: tuple[float, float]
    periodic: bool


def _canonical(start: int, end: int, image: Sequence[int]) -> tuple[int, int, tuple[int, int, int]]:
    """One key per undirected edge: (i, j, t) and (j, i, -t) are the same hop."""
    fwd = (int(start), int(end), tuple(int(x) for x in image))
    bwd = (int(end), int(start), tuple(-int(x) for x in image))
    return min(fwd, bwd)


def _locate_frac(frac: np.ndarray, lattice: np.ndarray, sites: np.ndarray, point: np.ndarray,
                 tol: float) -> tuple[int, np.ndarray] | None:
    """(site index, cell translation) of the entry of ``sites`` that ``point`` (fractional) sits
    on within ``tol`` Å, or None."""
    d = point[None, :] - frac[sites]
    shift = np.round(d)
    dist = np.linalg.norm((d - shift) @ lattice, axis=1)
    k = int(np.argmin(dist))
    if dist[k] > tol:
        return None
    return int(sites[k]), shift[k].astype(int)


def equivalent_edges(structure: Any, hops: Sequence[Any], ion: str, symprec: float = 0.1) -> list[NetworkEdge]:
    """Every edge of the hop network in ``structure`` (pymatgen): each distinct hop (``start``,
    ``end``, ``image`` as in :class:`hopnet.screening.ScreenHop`) mapped by every space-group
    operation of the structure (spglib, ``symprec`` Å), placed on the ``ion`` sites and
    de-duplicated (an edge and its reverse are one edge). Edges of one distinct hop are listed
    together, in the order of ``hops``; each starts on a site of the structure as stored."""
    from pymatgen.symmetry.analyzer import SpacegroupAnalyzer

    frac = np.asarray(structure.frac_coords, dtype=float)
    lattice = np.asarray(structure.lattice.matrix, dtype=float)
    symbols = [species_symbol(sp) for sp in structure.species]
    sites = np.array([k for k, s in enumerate(symbols) if s == ion], dtype=int)
    tol = max(0.05, 2.0 * float(symprec))
    try:
        ops = SpacegroupAnalyzer(structure, symprec=float(symprec)).get_symmetry_operations(cartesian=False)
    except Exception:  # noqa: BLE001 - spglib fails on odd cells: the distinct hops alone are still drawn
        ops = []
    rotations = [np.eye(3)] + [np.asarray(op.rotation_matrix, dtype=float) for op in ops]
    shifts = [np.zeros(3)] + [np.asarray(op.translation_vector, dtype=float) for op in ops]
    seen: set[tuple[int, int, tuple[int, int, int]]] = set()
    out: list[NetworkEdge] = []
    for hop in hops:
        a = frac[int(hop.start)]
        b = frac[int(hop.end)] + np.asarray(hop.image, dtype=float)
        for rot, shift in zip(rotations, shifts):
            pa = _locate_frac(frac, lattice, sites, rot @ a + shift, tol) if len(sites) else None
            pb = _locate_frac(frac, lattice, sites, rot @ b + shift, tol) if len(sites) else None
            if pa is None or pb is None:
                continue
            key = _canonical(pa[0], pb[0], pb[1] - pa[1])
            if key not in seen:
                seen.add(key)
                out.append(NetworkEdge(int(hop.index), *key))
    return out


def projection_basis(lattice: np.ndarray, axis: str) -> np.ndarray:
    """(2, 3) orthonormal rows spanning the plane perpendicular to lattice vector ``axis``
    ('a', 'b' or 'c'): x along the next lattice vector in cyclic order (c -> a, a -> b, b -> c)
    made perpendicular to the axis, y = axis × x. Viewing along c of an orthogonal cell gives
    x ∥ a, y ∥ b."""
    if axis not in AXES:
        raise HopnetError(f"projection axis must be one of a, b, c, got {axis!r}")
    lat = np.asarray(lattice, dtype=float)
    k = AXES.index(axis)
    v = lat[k] / np.linalg.norm(lat[k])
    x = lat[(k + 1) % 3] - (lat[(k + 1) % 3] @ v) * v
    x = x / np.linalg.norm(x)
    return np.vstack([x, np.cross(v, x)])


def _home(frac: np.ndarray) -> np.ndarray:
    """Fractional coordinates wrapped into the home cell [0, 1) (1 - 1e-6 counts as 0)."""
    return frac - np.floor(frac + _FRAC_EPS)


def _edge_vectors(structure: Any, edges: Sequence[NetworkEdge]) -> np.ndarray:
    """(E, 3) Cartesian hop vectors (Å) of the edges."""
    frac = np.asarray(structure.frac_coords, dtype=float)
    lattice = np.asarray(structure.lattice.matrix, dtype=float)
    if not edges:
        return np.zeros((0, 3))
    d = np.array([frac[e.end] + np.asarray(e.image) - frac[e.start] for e in edges])
    return d @ lattice


def lowest_barrier_hops(result: Any) -> list[int]:
    """The distinct hops that set the lowest percolation barrier reached (1-D first), else the
    single lowest-barrier hop, else (no barrier at all) every hop."""
    for d in (1, 2, 3):
        p = result.percolation.get(d) if result.percolation else None
        if p is not None and p.barrier is not None and p.hops:
            return [int(h) for h in p.hops]
    e_m = np.array([h.barrier for h in result.hops], dtype=float)
    if np.isfinite(e_m).any():
        return [int(result.hops[int(np.nanargmin(e_m))].index)]
    return [int(h.index) for h in result.hops]


def choose_axis(structure: Any, edges: Sequence[NetworkEdge], focus: Sequence[int]) -> str:
    """The lattice vector to view the network along: the one most perpendicular to the edges of
    the ``focus`` hops (largest summed |sin| of the angle between edge and axis); ties go to the
    axis that shows more of the other edges, then to c, a, b in that order."""
    vec = _edge_vectors(structure, edges)
    if len(vec) == 0:
        return "c"
    unit = vec / np.maximum(np.linalg.norm(vec, axis=1, keepdims=True), 1e-12)
    in_focus = np.array([e.hop in set(focus) for e in edges])
    lat = np.asarray(structure.lattice.matrix, dtype=float)

    def score(axis: str) -> tuple[float, float]:
        v = lat[AXES.index(axis)] / np.linalg.norm(lat[AXES.index(axis)])
        sin = np.sqrt(np.clip(1.0 - (unit @ v) ** 2, 0.0, 1.0))
        return round(float(sin[in_focus].sum()), 6), round(float(sin[~in_focus].sum()), 6)

    return max(_AXIS_PREFERENCE, key=score)  # max keeps the first of equal scores


def _structure_of(result: Any, structure: Any | None) -> Any:
    """The cell the hop indices of ``result`` refer to: ``structure`` when given, else
    ``result.structure`` (the input, or the host with inserted ions), else the file named by
    ``result.source``. A structure from outside the result is checked against it."""
    from hopnet.structures import to_structure

    own = getattr(result, "structure", None)
    s = structure if structure is not None else own
    if s is None:
        src = Path(str(result.source))
        if not src.is_file():
            raise HopnetError(f"the screened structure is needed to draw the network: {result.source} is not "
                              f"a file; pass structure=")
        s = src
    s = to_structure(s, validate=False)
    if structure is None and own is not None:
        return s
    symbols = [species_symbol(sp) for sp in s.species]
    on_ion = all(0 <= k < len(s) and symbols[k] == result.ion for h in result.hops for k in (h.start, h.end))
    same = len(s) == int(result.n_atoms) and s.composition.reduced_formula == result.formula
    if not on_ion or (getattr(result, "insertion", None) is None and not same):
        raise HopnetError(f"structure ({s.composition.reduced_formula}, {len(s)} atoms) is not the screened one "
                          f"({result.formula}, {result.n_atoms} atoms{', ions inserted' if not same else ''})")
    return s


def screen_edges(network: Any) -> list[NetworkEdge]:
    """The edges of a screen's hop graph (``ScreenResult.network``: nodes are ion sites of its
    primitive cell) as :class:`NetworkEdge` rows on that cell."""
    sites = np.asarray(network.ion_sites, dtype=int)
    return [NetworkEdge(int(lab), *_canonical(sites[u], sites[v], t))
            for (u, v), t, lab in zip(np.asarray(network.edges), np.asarray(network.images), np.asarray(network.labels))]


def network_segments(result: Any, axis: str = "c", structure: Any | None = None,
                     edges: Sequence[NetworkEdge] | None = None, checked: bool = False) -> list[Segment]:
    """The hop network of ``result`` (a :class:`hopnet.screening.ScreenResult`) as 2-D segments (Å)
    projected along lattice vector ``axis`` (see :func:`projection_basis`). Each edge is drawn
    from its start site's home-cell position (fractional coordinates in [0, 1)); an edge that
    leaves the cell is drawn a second time from its end site's home-cell position backwards, so
    both sites show the bond crossing the boundary. ``edges`` default to
    :func:`equivalent_edges` of the result's hops. ``checked``: ``structure`` is known to be
    the cell of ``edges`` (the screen's primitive cell), so it is not compared with the input."""
    s = structure if checked and structure is not None else _structure_of(result, structure)
    if edges is None:
        edges = equivalent_edges(s, result.hops, result.ion, result.symprec)
    frac = np.asarray(s.frac_coords, dtype=float)
    lattice = np.asarray(s.lattice.matrix, dtype=float)
    basis = projection_basis(lattice, axis)
    barrier = {int(h.index): float(h.barrier) for h in result.hops}

    def xy(f: np.ndarray) -> tuple[float, float]:
        p = basis @ (f @ lattice)
        return float(p[0]), float(p[1])

    out: list[Segment] = []
    for e in edges:
        hop_frac = frac[e.end] + np.asarray(e.image, dtype=float) - frac[e.start]
        a0 = _home(frac[e.start])
        a1 = a0 + hop_frac
        periodic = bool(np.any(np.floor(a1 + _FRAC_EPS) != 0))
        em = barrier.get(e.hop, float("nan"))
        out.append(Segment(e.hop, em, xy(a0), xy(a1), periodic))
        if periodic:
            b0 = _home(frac[e.end])
            out.append(Segment(e.hop, em, xy(b0), xy(b0 - hop_frac), True))
    return out


def hop_network_png(result: Any, axis: str | None = None, *, structure: Any | None = None,
                    title: str | None = None) -> bytes:
    """PNG bytes of the hop network of ``result`` (:class:`hopnet.screening.ScreenResult`) over its
    structure projected along lattice vector ``axis`` ('a', 'b', 'c'; None picks the one most
    perpendicular to the lowest-barrier hops, :func:`choose_axis`): the cell outline, host atoms
    (grey, one marker per species), the mobile-ion sites, and every edge of the network coloured
    by its barrier (eV) with a colour bar; edges leaving the cell cross its boundary to hollow
    markers at the image sites. ``structure`` defaults to the result's (see :func:`network_segments`)."""
    from matplotlib import colormaps
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.collections import LineCollection
    from matplotlib.colors import Normalize
    from matplotlib.figure import Figure
    from matplotlib.lines import Line2D

    net = getattr(result, "network", None)
    if structure is None and net is not None and getattr(net, "prim", None) is not None:
        # the network the screen built, on its primitive cell: what the numbers beside it describe
        s, edges, per = net.prim, screen_edges(net), "primitive cell"
        n_mult = sum(int(h.multiplicity) for h in result.hops) // max(int(net.n_cells), 1)
    else:
        s = _structure_of(result, structure)
        edges = equivalent_edges(s, result.hops, result.ion, result.symprec)
        per, n_mult = "cell", sum(int(h.multiplicity) for h in result.hops)
    if axis is None:
        axis = choose_axis(s, edges, lowest_barrier_hops(result))
    segs = network_segments(result, axis, structure=s, edges=edges, checked=True)
    segs.sort(key=lambda g: -g.barrier if math.isfinite(g.barrier) else float("inf"))  # lowest E_m on top
    lattice = np.asarray(s.lattice.matrix, dtype=float)
    basis = projection_basis(lattice, axis)
    frac = _home(np.asarray(s.frac_coords, dtype=float))
    xy = (frac @ lattice) @ basis.T
    symbols = np.array([species_symbol(sp) for sp in s.species])

    fig = Figure(figsize=(6.4, 5.2), dpi=150)
    FigureCanvasAgg(fig)
    ax = fig.add_subplot(1, 1, 1)
    # cell outline: the parallelogram of the two other lattice vectors (the axis projects to a point)
    k = AXES.index(axis)
    u, w = basis @ lattice[(k + 1) % 3], basis @ lattice[(k + 2) % 3]
    corners = np.array([[0.0, 0.0], u, u + w, w, [0.0, 0.0]])
    ax.plot(corners[:, 0], corners[:, 1], color="k", lw=0.8, ls="--", zorder=5)

    handles: list[Any] = []
    host_species = sorted({str(x) for x in symbols if x != result.ion})
    markers = ["o", "s", "^", "D", "v", "P", "X", "h"]
    greys = np.linspace(0.25, 0.7, max(len(host_species), 1))
    for n, sp in enumerate(host_species):
        sel = symbols == sp
        ax.scatter(xy[sel, 0], xy[sel, 1], s=10, marker=markers[n % len(markers)], color=str(greys[n]),
                   alpha=0.55, linewidths=0, zorder=2)
        handles.append(Line2D([], [], ls="", marker=markers[n % len(markers)], color=str(greys[n]), ms=4, label=sp))

    e_m = np.array([g.barrier for g in segs], dtype=float)
    ok = np.isfinite(e_m)
    cmap = colormaps["viridis"]
    if ok.any():
        lo, hi = float(e_m[ok].min()), float(e_m[ok].max())
        clipped = hi > max(_COLOR_MAX_EV, lo + 0.1)
        hi = max(_COLOR_MAX_EV, lo + 0.1) if clipped else hi
        if hi - lo < 0.1:
            lo, hi = lo - 0.05, hi + 0.05
        norm = Normalize(lo, hi)
        lines = LineCollection([[g.start, g.end] for g, good in zip(segs, ok) if good], cmap=cmap, norm=norm,
                               linewidths=2.2, zorder=3)
        lines.set_array(e_m[ok])
        ax.add_collection(lines)
        cbar = fig.colorbar(lines, ax=ax, fraction=0.046, pad=0.03, extend="max" if clipped else "neither")
        cbar.set_label("$E_m$ (eV)" + (f", ≥ {hi:g} in one colour" if clipped else ""))
        if lo <= result.threshold <= hi:
            cbar.ax.axhline(result.threshold, color="tab:red", lw=1.2)
            cbar.ax.text(1.05, result.threshold, f" {result.threshold:g}", transform=cbar.ax.get_yaxis_transform(),
                         color="tab:red", fontsize=6, va="center")
    if (~ok).any():
        ax.add_collection(LineCollection([[g.start, g.end] for g, good in zip(segs, ok) if not good],
                                         colors="0.5", linestyles="--", linewidths=1.2, zorder=3))
        handles.append(Line2D([], [], color="0.5", ls="--", label="failed hop"))

    ion_sel = symbols == result.ion
    ax.scatter(xy[ion_sel, 0], xy[ion_sel, 1], s=36, color="tab:orange", edgecolors="k", linewidths=0.5, zorder=4)
    inserted = " (inserted)" if getattr(result, "insertion", None) else ""
    handles.append(Line2D([], [], ls="", marker="o", color="tab:orange", mec="k", ms=6,
                          label=f"{result.ion} site{inserted}"))
    ghosts = np.array([g.end for g in segs if g.periodic]).reshape(-1, 2)
    if len(ghosts):
        ax.scatter(ghosts[:, 0], ghosts[:, 1], s=30, facecolors="none", edgecolors="tab:orange", linewidths=0.8,
                   zorder=4)
        handles.append(Line2D([], [], ls="", marker="o", mfc="none", mec="tab:orange", ms=6,
                              label=f"{result.ion} image site"))

    names = [AXES[(k + 1) % 3], AXES[(k + 2) % 3]]
    ax.set_xlabel(f"x ∥ {names[0]} (Å)")
    ax.set_ylabel(f"y, in the {names[0]}{names[1]} plane (Å)")
    ax.set_aspect("equal")
    ax.autoscale_view()
    ax.margins(0.06)
    perc = ", ".join(f"{d}-D {p.barrier:.2f}" if p.barrier is not None else f"{d}-D none"
                     for d, p in sorted(result.percolation.items()))
    note = "" if n_mult == len(edges) else f"; the screen counted {n_mult}"
    ax.set_title(title if title is not None else
                 f"{result.ion} hop network in {result.formula}, viewed along {axis}\n"
                 f"{len(edges)} edges of {len(result.hops)} distinct hop(s) per {per}{note}\n"
                 f"percolation barriers (eV): {perc}", fontsize=9)
    ax.legend(handles=handles, loc="upper center", bbox_to_anchor=(0.5, -0.11), ncol=min(len(handles), 5),
              fontsize=7, frameon=False)
    buf = io.BytesIO()
    fig.savefig(buf, format="png", bbox_inches="tight")
    return buf.getvalue()


def hop_network_plot(result: Any, path: str | os.PathLike, axis: str | None = None, *,
                     structure: Any | None = None, title: str | None = None) -> Path:
    """Write :func:`hop_network_png` to ``path`` atomically; returns the path."""
    from hopnet.infra.provenance import atomic_write_bytes

    if axis is not None and axis not in AXES:
        raise HopnetError(f"projection axis must be one of a, b, c, got {axis!r}")
    png = hop_network_png(result, axis, structure=structure, title=title)
    atomic_write_bytes(path, png)
    return Path(path)


def barrier_error_bars(barriers: Any, stds: Any) -> np.ndarray:
    """(2, n) lower and upper whisker lengths (eV) of E_m ± σ: a barrier is never negative, so
    the lower whisker stops at 0 eV; NaN draws nothing."""
    e = np.nan_to_num(np.asarray(barriers, dtype=float))
    s = np.nan_to_num(np.asarray(stds, dtype=float))
    return np.vstack([np.minimum(s, np.maximum(e, 0.0)), s])


def hop_bar_chart(result: Any) -> bytes:
    """PNG bytes of a per-hop bar chart: E_m ± σ (eV) per distinct hop, the threshold and the
    percolation barriers as horizontal lines (matplotlib Agg, no pyplot state)."""
    import io

    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(max(4.0, 0.6 * len(result.hops) + 2.5), 3.6))
    FigureCanvasAgg(fig)
    ax = fig.add_subplot(1, 1, 1)
    x = np.arange(len(result.hops))
    e_m = np.array([h.barrier for h in result.hops], float)
    sd = np.array([h.std for h in result.hops], float)
    colors = ["tab:green" if h.conductor_class == "good" else "tab:red" for h in result.hops]
    e0 = np.nan_to_num(e_m)
    ax.bar(x, e0, yerr=barrier_error_bars(e_m, sd), color=colors, capsize=3)
    ax.set_ylim(bottom=0.0)
    ax.set_xticks(x, [f"{h.index}\n{h.length:.2f} Å" for h in result.hops])
    ax.axhline(result.threshold, color="k", ls="--", lw=1, label=f"threshold {result.threshold:g} eV")
    styles = {1: ":", 2: "-.", 3: "-"}
    for d, p in sorted(result.percolation.items()):
        if p.barrier is not None:
            ax.axhline(p.barrier, color="tab:blue", ls=styles[d], lw=1, label=f"{d}-D percolation {p.barrier:.2f} eV")
    ax.set_xlabel("distinct hop (length)")
    ax.set_ylabel("E_m (eV)")
    ax.set_title(f"{result.ion} hops in {result.formula}")
    ax.legend(fontsize=7)
    fig.tight_layout()
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=120)
    return buf.getvalue()
