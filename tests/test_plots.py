"""hopnet.plots: the hop-network figure of a screened structure and the geometry behind it
(symmetry-equivalent edges, projection, 2-D segments, choice of viewing axis)."""

from __future__ import annotations

from collections import Counter
from dataclasses import replace
from pathlib import Path
from typing import ClassVar

import numpy as np
import pytest
from pymatgen.core import Lattice, Structure

from hopnet.infra.errors import HopnetError
from hopnet.models.folder import Prediction
from hopnet.plots import (
    choose_axis,
    equivalent_edges,
    hop_network_plot,
    lowest_barrier_hops,
    network_segments,
    projection_basis,
)
from hopnet.percolation import Percolation
from hopnet.screening import ScreenHop, ScreenResult, screen

EXAMPLES = Path(__file__).resolve().parents[1] / "examples"


class LengthModel:
    """E_m = 0.1 eV/Å × hop length, σ = 0.01 eV: known barriers for hand-made networks."""

    name = "length"
    metadata: ClassVar[dict] = {}

    def predict_paths(self, paths, batch_size=None):
        lengths = np.array([p.hop_length for p in paths])
        return Prediction(mean=0.1 * lengths, std=np.full(len(paths), 0.01))


def _result(structure: Structure, hops: list[ScreenHop], ion: str = "Li") -> ScreenResult:
    """A hand-made ScreenResult around ``hops`` (percolation values are not used by the geometry)."""
    perc = {d: Percolation(d, None) for d in (1, 2, 3)}
    return ScreenResult(source="hand-made", formula=structure.composition.reduced_formula, ion=ion,
                        n_atoms=len(structure), max_hop=5.0, symprec=0.1, model="none", threshold=0.65,
                        hop_source="explicit", hops=hops, percolation=perc, dimensionality=1,
                        dimensionality_at_threshold=1)


def _z(x: float) -> float:
    return float(np.round(x, 6)) + 0.0  # -0.0 -> 0.0


def _seg_set_z(segments) -> set:
    return {(s.hop, tuple(_z(v) for v in s.start), tuple(_z(v) for v in s.end), s.periodic) for s in segments}


def test_projection_basis_orthogonal_and_hexagonal_cells():
    ortho = np.diag([10.0, 5.0, 6.0])
    assert np.allclose(projection_basis(ortho, "c"), [[1, 0, 0], [0, 1, 0]])  # x ∥ a, y ∥ b
    assert np.allclose(projection_basis(ortho, "a"), [[0, 1, 0], [0, 0, 1]])  # x ∥ b, y ∥ c
    assert np.allclose(projection_basis(ortho, "b"), [[0, 0, 1], [1, 0, 0]])  # x ∥ c, y ∥ a
    hexa = Lattice.hexagonal(3.0, 5.0).matrix
    basis = projection_basis(hexa, "c")
    assert np.allclose(basis @ hexa[0], [3.0, 0.0])
    assert np.allclose(basis @ hexa[1], [-1.5, 1.5 * np.sqrt(3.0)])  # the 120° angle is kept
    assert np.allclose(basis @ hexa[2], [0.0, 0.0])  # the viewing axis projects to a point
    with pytest.raises(HopnetError, match="axis"):
        projection_basis(ortho, "z")


def test_segments_of_a_hand_made_orthorhombic_pair():
    # Li at x = 0.1 and 0.9 of a 10 Å axis: 2 Å apart across the cell face, 8 Å apart inside
    s = Structure(Lattice.orthorhombic(10.0, 5.0, 6.0), ["Li", "Li", "Cl"],
                  [[0.1, 0.5, 0.5], [0.9, 0.5, 0.5], [0.5, 0.0, 0.0]])
    hops = [ScreenHop(0, 0, 1, (-1, 0, 0), 2.0, 1, barrier=0.3),
            ScreenHop(1, 0, 1, (0, 0, 0), 8.0, 1, barrier=0.9)]
    r = _result(s, hops)
    edges = equivalent_edges(s, hops, "Li")
    assert [(e.hop, e.start, e.end, e.image) for e in edges] == [(0, 0, 1, (-1, 0, 0)), (1, 0, 1, (0, 0, 0))]
    # along c (x ∥ a, y ∥ b): the 2 Å hop leaves the cell from both sites, the 8 Å one stays inside
    assert _seg_set_z(network_segments(r, "c", structure=s)) == {
        (0, (1.0, 2.5), (-1.0, 2.5), True),
        (0, (9.0, 2.5), (11.0, 2.5), True),
        (1, (1.0, 2.5), (9.0, 2.5), False),
    }
    # along b (x ∥ c, y ∥ a)
    assert _seg_set_z(network_segments(r, "b", structure=s)) == {
        (0, (3.0, 1.0), (3.0, -1.0), True),
        (0, (3.0, 9.0), (3.0, 11.0), True),
        (1, (3.0, 1.0), (3.0, 9.0), False),
    }
    # along a every hop points at the viewer: zero-length segments at the sites' (b, c) position
    along_a = network_segments(r, "a", structure=s)
    assert all(seg.start == pytest.approx((2.5, 3.0)) and seg.end == pytest.approx((2.5, 3.0)) for seg in along_a)
    assert {seg.barrier for seg in along_a} == {0.3, 0.9}


def test_screened_cubic_lattice_gives_known_edges_segments_and_axis():
    # CsCl-type LiCl, Li sublattice 3 × 4 × 6 Å: hops of 3 Å (along a) and 4 Å (along b) below 4.5 Å
    s = Structure(Lattice.orthorhombic(3.0, 4.0, 6.0), ["Li", "Cl"], [[0, 0, 0], [0.5, 0.5, 0.5]])
    r = screen(s, "Li", max_hop=4.5, model=LengthModel())
    assert [round(h.length, 6) for h in r.hops] == [3.0, 4.0]
    assert [h.barrier for h in r.hops] == pytest.approx([0.3, 0.4])
    edges = equivalent_edges(s, r.hops, "Li")
    assert Counter(e.hop for e in edges) == {h.index: h.multiplicity for h in r.hops} == {0: 1, 1: 1}
    # each hop joins the one Li site to its own image: drawn from the corner both ways
    assert _seg_set_z(network_segments(r, "c", structure=s)) == {
        (0, (0.0, 0.0), (3.0, 0.0), True), (0, (0.0, 0.0), (-3.0, 0.0), True),
        (1, (0.0, 0.0), (0.0, 4.0), True), (1, (0.0, 0.0), (0.0, -4.0), True),
    }
    assert lowest_barrier_hops(r) == [0]  # 1-D percolation at 0.3 eV through the a hops
    assert choose_axis(s, edges, [0]) == "c"  # ⊥ a; ties with b, broken by the 4 Å b hops
    assert choose_axis(s, edges, [1]) == "c"  # ⊥ b; ties with a, broken by the 3 Å a hops
    # the result carries its structure; without it, a result screened from a Structure object
    # has no file to read the structure back from
    assert _seg_set_z(network_segments(r, "c")) == _seg_set_z(network_segments(r, "c", structure=s))
    with pytest.raises(HopnetError, match="pass structure="):
        network_segments(replace(r, structure=None), "c")
    with pytest.raises(HopnetError, match="not the screened one"):
        network_segments(r, "c", structure=Structure(Lattice.cubic(4.0), ["Na", "Cl"], [[0, 0, 0], [0.5] * 3]))


def test_choose_axis_views_across_a_single_channel():
    # Li chain along c (2.5 Å hops) in a 5 × 5 × 2.5 Å cell: viewing along c would hide it
    s = Structure(Lattice.tetragonal(5.0, 2.5), ["Li", "Cl"], [[0, 0, 0], [0.5, 0.5, 0.5]])
    hops = [ScreenHop(0, 0, 0, (0, 0, 1), 2.5, 1, barrier=0.2)]
    edges = equivalent_edges(s, hops, "Li")
    assert [(e.start, e.end) for e in edges] == [(0, 0)] and abs(np.sum(edges[0].image)) == 1
    assert choose_axis(s, edges, [0]) == "a"  # a and b tie; a comes first after c


def test_olivine_network_plot(tmp_path):
    source = EXAMPLES / "LiFePO4_olivine.cif"
    r = screen(str(source), "Li")  # the shipped model; ~3 s
    s = Structure.from_file(source)
    edges = equivalent_edges(s, r.hops, "Li", r.symprec)
    # every edge of the network, as many per distinct hop as the screen counted
    assert Counter(e.hop for e in edges) == {h.index: h.multiplicity for h in r.hops}
    lengths = {h.index: h.length for h in r.hops}
    lat = s.lattice.matrix
    for e in edges:
        vec = (s.frac_coords[e.end] + e.image - s.frac_coords[e.start]) @ lat
        assert np.linalg.norm(vec) == pytest.approx(lengths[e.hop], abs=0.02)
    # the 3.0 Å b-axis hops percolate first; viewing along a shows them and the 4.7 Å c hops
    assert choose_axis(s, edges, lowest_barrier_hops(r)) == "a"
    out = hop_network_plot(r, tmp_path / "net.png")
    assert out == tmp_path / "net.png"
    assert out.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and out.stat().st_size > 20_000
    hop_network_plot(r, tmp_path / "net_c.png", axis="c", structure=s)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["net.png", "net_c.png"]  # no temp files left
    with pytest.raises(HopnetError, match="axis"):
        hop_network_plot(r, tmp_path / "bad.png", axis="x")
    assert not (tmp_path / "bad.png").exists()


def test_network_plot_of_a_hand_made_result_with_a_failed_hop(tmp_path):
    s = Structure(Lattice.orthorhombic(10.0, 5.0, 6.0), ["Li", "Li", "Cl"],
                  [[0.1, 0.5, 0.5], [0.9, 0.5, 0.5], [0.5, 0.0, 0.0]])
    hops = [ScreenHop(0, 0, 1, (-1, 0, 0), 2.0, 1, barrier=0.3),
            ScreenHop(1, 0, 1, (0, 0, 0), 8.0, 1, error="could not build")]  # NaN barrier: dashed grey
    r = _result(s, hops)
    segs = network_segments(r, "c", structure=s)
    assert sum(np.isnan(seg.barrier) for seg in segs) == 1
    out = hop_network_plot(r, tmp_path / "sub" / "net.png", structure=s)  # folders are created
    assert out.is_file() and out.read_bytes()[:4] == b"\x89PNG"


def test_bar_chart_whiskers_never_go_below_zero():
    from hopnet.plots import barrier_error_bars

    low, high = barrier_error_bars([0.05, 0.8, float("nan"), -0.01], [0.3, 0.1, float("nan"), 0.2])
    np.testing.assert_allclose(low, [0.05, 0.1, 0.0, 0.0])  # 0.05 - 0.05 = 0 eV at the lowest
    np.testing.assert_allclose(high, [0.3, 0.1, 0.0, 0.2])
