"""hopnet screen: hop enumeration, percolation barriers of known networks, the CLI."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np
import pytest
from pymatgen.core import Lattice, Structure

import hopnet.inference as hp
from hopnet.cli import main
from hopnet.infra.errors import PathError
from hopnet.models.folder import Prediction
from hopnet.percolation import network_dimensionality, percolation_barriers
from hopnet.screening import band_supercell, find_hops, screen

EXAMPLES = Path(__file__).resolve().parents[1] / "examples"


class LengthModel:
    """E_m = 0.1 eV/Å × hop length, σ = 0.01 eV: known barriers for hand-made networks."""

    name = "length"
    metadata: dict = {}

    def __init__(self) -> None:
        self.calls: list[int] = []

    def predict_paths(self, paths, batch_size=None):
        self.calls.append(len(paths))
        lengths = np.array([p.hop_length for p in paths])
        return Prediction(mean=0.1 * lengths, std=np.full(len(paths), 0.01))


def cscl(a: float, b: float, c: float) -> Structure:
    """CsCl-type LiCl: one Li per cell, so the Li sublattice is primitive orthorhombic a×b×c (Å)."""
    return Structure(Lattice.orthorhombic(a, b, c), ["Li", "Cl"], [[0, 0, 0], [0.5, 0.5, 0.5]])


# --------------------------------------------------------------------------- dimensionality
def test_network_dimensionality_hand_cases():
    # two nodes joined inside the cell and across the x face: an infinite chain along x
    assert network_dimensionality(2, [[0, 1], [1, 0]], [[0, 0, 0], [1, 0, 0]]) == 1
    # the same pair joined twice inside the cell: a finite cluster
    assert network_dimensionality(2, [[0, 1], [1, 0]], [[0, 0, 0], [0, 0, 0]]) == 0
    # self-loops along x and y on one node: a 2-D net
    assert network_dimensionality(1, [[0, 0], [0, 0]], [[1, 0, 0], [0, 1, 0]]) == 2
    # a chain along x and a separate chain along y: two 1-D components, not a 2-D network
    assert network_dimensionality(2, [[0, 0], [1, 1]], [[1, 0, 0], [0, 1, 0]]) == 1
    assert network_dimensionality(1, np.zeros((0, 2)), np.zeros((0, 3))) == 0


def test_percolation_barriers_order_of_opening():
    edges = [[0, 0], [0, 0], [0, 0]]
    images = [[0, 0, 1], [1, 0, 0], [0, 1, 0]]
    perc = percolation_barriers(1, edges, images, [0, 1, 2], [0.2, 0.5, 0.9], [0.01, 0.02, 0.03])
    assert (perc[1].barrier, perc[2].barrier, perc[3].barrier) == (0.2, 0.5, 0.9)
    assert perc[2].std == 0.02 and perc[3].hops == (0, 1, 2)
    perc = percolation_barriers(1, edges, images, [0, 1, 2], [0.2, float("nan"), 0.9])
    assert perc[2].barrier == 0.9 and perc[3].barrier is None


# --------------------------------------------------------------------------- hops
def test_hop_counting_simple_cubic_and_supercell():
    s = cscl(3.5, 3.5, 3.5)
    graph, hops, paths = find_hops(s, "Li", max_hop=4.0)
    assert len(hops) == 1 and hops[0].length == pytest.approx(3.5)
    assert hops[0].multiplicity == 3  # ±a, ±b, ±c: three undirected edges per Li
    # a hop to the Li's own image is built in a doubled cell: host = 2 Li + 2 Cl - 2 Li
    p = paths[0]
    assert p.hop_length == pytest.approx(3.5) and len(p.host) == 2
    assert len(p.initial()) == len(p.final()) == 3
    # the supercell has the same distinct hops (symmetry grouping), now between different sites
    # (a 2x1x1 cell would lose the cubic operations that map a onto b, and split the hops)
    sc = s.make_supercell([2, 2, 2], in_place=False)
    graph2, hops2, paths2 = find_hops(sc, "Li", max_hop=4.0)
    assert len(hops2) == 1 and hops2[0].multiplicity == 24
    # the band is built in the canonical cell of the primitive crystal, whatever cell was given
    assert len(paths2[0].initial()) == len(p.initial()) == 3
    assert paths2[0].hop_length == pytest.approx(p.hop_length)


def test_hop_counting_orthorhombic_and_explicit_hops():
    s = cscl(3.0, 3.5, 4.0)
    _, hops, _ = find_hops(s, "Li", max_hop=4.1)
    assert sorted(round(h.length, 3) for h in hops) == [3.0, 3.5, 4.0]
    with pytest.raises(PathError, match="no Li-Li hop"):
        find_hops(s, "Li", max_hop=2.0)
    sc = s.make_supercell([2, 1, 1], in_place=False)
    li = [k for k, sp in enumerate(sc.species) if sp.symbol == "Li"]
    graph, hops, paths = find_hops(sc, "Li", explicit_hops=[(li[0], li[1])])
    assert len(hops) == 1 and hops[0].length == pytest.approx(3.0)
    assert hops[0].multiplicity == 2  # both a-hops of the doubled cell, found through symmetry
    with pytest.raises(PathError, match="not a Li site"):
        find_hops(sc, "Li", explicit_hops=[(li[0], next(k for k in range(len(sc)) if k not in li))])


def test_screen_percolation_known_answers():
    model = LengthModel()
    cubic = screen(cscl(3.5, 3.5, 3.5), "Li", max_hop=4.0, model=model)
    assert [cubic.percolation[d].barrier for d in (1, 2, 3)] == pytest.approx([0.35, 0.35, 0.35])
    assert cubic.dimensionality == 3 and cubic.dimensionality_at_threshold == 3
    ortho = screen(cscl(3.0, 3.5, 4.0), "Li", max_hop=4.1, model=model)
    assert model.calls[-1] == 3  # every distinct hop in one batch
    assert [ortho.percolation[d].barrier for d in (1, 2, 3)] == pytest.approx([0.30, 0.35, 0.40])
    assert ortho.percolation[3].std == pytest.approx(0.01)
    chain = screen(cscl(3.0, 3.5, 4.0), "Li", max_hop=3.2, model=model, threshold=0.65)
    assert chain.percolation[1].barrier == pytest.approx(0.30)
    assert chain.percolation[2].barrier is None and chain.percolation[3].barrier is None
    assert chain.dimensionality == 1
    # the conductor threshold cuts the network: only the 3.0 Å hops are below 0.32 eV
    cut = screen(cscl(3.0, 3.5, 4.0), "Li", max_hop=4.1, model=model, threshold=0.32)
    assert cut.dimensionality == 3 and cut.dimensionality_at_threshold == 1
    assert [h.conductor_class for h in cut.hops].count("good") == 1
    # no Na and no hole 2.5 Å clear of Li and Cl: nothing to insert Na into
    with pytest.raises(PathError, match="Na is absent .* no interstitial site"):
        screen(cscl(3.0, 3.5, 4.0), "Na", model=model, insert_min_dist=2.5, insert=True)
    # a Li host asked for Na: insertion only when asked for
    with pytest.raises(PathError, match=r"Na is absent from the structure \(LiCl, which holds Li\).*--insert"):
        screen(cscl(3.0, 3.5, 4.0), "Na", model=model)
    # nothing but the ion: no host, the same rule as predict
    only_li = Structure(Lattice.cubic(3.0), ["Li"], [[0, 0, 0]])
    with pytest.raises(PathError, match="host has no atoms"):
        screen(only_li, "Li", model=model)


def test_screen_olivine_default_model_is_one_dimensional_first():
    r = screen(EXAMPLES / "LiFePO4_olivine.cif", "Li", max_hop=5.0)
    shortest = min(r.hops, key=lambda h: h.length)
    assert shortest.length == pytest.approx(3.005, abs=0.01)  # the b-axis channel
    assert r.percolation[1].barrier == pytest.approx(shortest.barrier)
    assert r.percolation[1].hops == (shortest.index,)
    assert r.percolation[1].barrier < r.threshold < (r.percolation[2].barrier or np.inf)
    assert r.dimensionality_at_threshold == 1


# --------------------------------------------------------------------------- CLI
@pytest.fixture
def fake_model(monkeypatch):
    model = LengthModel()
    monkeypatch.setattr(hp, "get_model", lambda m="default": model)
    return model


def test_cli_table_json_csv_plot(tmp_path, capsys, fake_model):
    cif = tmp_path / "ortho.cif"
    cscl(3.0, 3.5, 4.0).to(filename=str(cif))
    out_json, out_csv, out_png = tmp_path / "r.json", tmp_path / "r.csv", tmp_path / "r.png"
    net = tmp_path / "net.png"
    rc = main(["screen", str(cif), "--ion", "Li", "--max-hop", "4.1", "--json", str(out_json),
               "--csv", str(out_csv), "--plot", str(out_png), "--network", str(net), "--axis", "c"])
    assert rc == 0
    text = capsys.readouterr().out
    assert "3 distinct hop(s)" in text and "1-D: 0.300 ± 0.010 eV" in text and "3-D: 0.400" in text
    res = json.loads(out_json.read_text())["results"][0]
    assert [h["length_a"] for h in sorted(res["hops"], key=lambda h: h["length_a"])] == pytest.approx([3.0, 3.5, 4.0])
    assert res["percolation"]["2d"]["barrier_ev"] == pytest.approx(0.35) and res["dimensionality"] == 3
    rows = list(csv.DictReader(out_csv.open()))
    assert len(rows) == 3 and {r["percolation_3d_ev"] for r in rows} == {"0.4000"}
    assert out_png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert net.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and net.read_bytes() != out_png.read_bytes()


def test_cli_folder_with_a_failing_file(tmp_path, capsys, fake_model):
    folder = tmp_path / "cifs"
    folder.mkdir()
    cscl(3.5, 3.5, 3.5).to(filename=str(folder / "a_cubic.cif"))
    cscl(3.0, 3.5, 4.0).to(filename=str(folder / "b_ortho.cif"))
    (folder / "c_broken.cif").write_text("this is not a CIF\n")
    out_json = tmp_path / "all.json"
    out_csv = tmp_path / "all.csv"
    rc = main(["screen", str(folder), "--ion", "Li", "--max-hop", "4.1", "--json", str(out_json),
               "--csv", str(out_csv)])
    assert rc != 0  # one structure failed
    out, err = capsys.readouterr()
    assert "3 structure(s): 2 ok, 1 failed" in out and "failed: " in out and "c_broken.cif" in out
    assert err.strip().splitlines()[-1] == "hopnet: error: 1 of 3 structure(s) failed (their rows carry the error)"
    payload = json.loads(out_json.read_text())
    assert [Path(r["source"]).name for r in payload["results"]] == ["a_cubic.cif", "b_ortho.cif"]
    assert len(payload["failures"]) == 1 and "c_broken.cif" in payload["failures"][0]["source"]
    assert payload["complete"] is True and not list(tmp_path.glob(".*journal*"))
    rows = list(csv.DictReader(out_csv.open()))
    failed = [r for r in rows if r["error"]]
    assert len(failed) == 1 and failed[0]["source"].endswith("c_broken.cif") and not failed[0]["barrier_ev"]
    assert {Path(r["source"]).name for r in rows if not r["error"]} == {"a_cubic.cif", "b_ortho.cif"}


def test_cli_all_failing_keeps_their_error_rows(tmp_path, capsys, fake_model):
    bad1, bad2 = tmp_path / "x.cif", tmp_path / "y.cif"
    bad1.write_text("nope\n")
    cscl(3.0, 3.5, 4.0).to(filename=str(bad2))
    out_json, out_csv = tmp_path / "r.json", tmp_path / "r.csv"
    rc = main(["screen", str(tmp_path / "*.cif"), "--ion", "Na", "--insert-min-dist", "2.5",
               "--json", str(out_json), "--csv", str(out_csv)])
    assert rc != 0
    err = capsys.readouterr().err
    assert "2 of 2 structure(s) failed" in err and "Na is absent" in err and "--insert" in err
    payload = json.loads(out_json.read_text())
    assert payload["results"] == [] and len(payload["failures"]) == 2
    assert len(list(csv.DictReader(out_csv.open()))) == 2
    assert not list(tmp_path.glob(".*tmp"))


# --------------------------------------------------------------------------- ion-dense cells
def test_supercell_input_searches_the_primitive_cell():
    """A 2x2x2 supercell (16 atoms) gives the primitive cell's network: hops between its own
    sites, multiplicities per input cell, the same percolation barriers."""
    sc = cscl(3.0, 3.5, 4.0).make_supercell([2, 2, 2], in_place=False)
    graph, hops, paths = find_hops(sc, "Li", max_hop=4.1)
    assert len(graph.prim) == 2 and graph.n_cells == 8
    assert sorted(round(h.length, 3) for h in hops) == [3.0, 3.5, 4.0]
    assert [h.multiplicity for h in hops] == [8, 8, 8]
    for h, p in zip(hops, paths):
        assert h.start != h.end and sc.species[h.start].symbol == sc.species[h.end].symbol == "Li"
        # the band: the canonical cell of the 2-atom primitive cell (doubled along the hop)
        assert p.hop_length == pytest.approx(h.length) and len(p.initial()) == 3
    r = screen(sc, "Li", max_hop=4.1, model=LengthModel())
    assert [r.percolation[d].barrier for d in (1, 2, 3)] == pytest.approx([0.30, 0.35, 0.40])
    assert r.dimensionality == 3


def test_explicit_hop_in_an_ion_dense_cell_is_grouped_by_symmetry():
    s = Structure.from_file(EXAMPLES / "Li3N.cif")
    _, hops, _ = find_hops(s, "Li", max_hop=2.2)  # only the in-plane Li(2)-Li(2) hop
    assert len(hops) == 1 and hops[0].length == pytest.approx(2.106, abs=0.01)
    assert hops[0].multiplicity == 81  # 3 per formula unit, 27 formula units
    _, _, found = find_hops(s, "Li", max_hop=2.2, min_image_distance=6.5)
    _, ex, paths = find_hops(s, "Li", explicit_hops=[(hops[0].start, hops[0].end)], min_image_distance=6.5)
    assert ex[0].multiplicity == 81 and ex[0].length == pytest.approx(hops[0].length)
    # both bands are built in the canonical cell of the 4-atom primitive cell
    assert len(paths[0].initial()) == len(found[0].initial()) < len(s) - 1


@pytest.mark.parametrize("name, shortest, dim_at_threshold", [("Li3N", 2.106, 2), ("LiCoO2_layered", 2.816, 2)])
def test_screen_ion_dense_examples_default_model_fast(name, shortest, dim_at_threshold):
    import time

    import torch

    torch.set_num_threads(1)
    t0 = time.perf_counter()
    r = screen(EXAMPLES / f"{name}.cif", "Li", max_hop=5.0)
    elapsed = time.perf_counter() - t0
    assert elapsed < 10.0, f"{name}: screen took {elapsed:.1f} s"
    assert r.n_atoms == 108 and len(r.hops) >= 1
    assert all(np.isfinite(h.barrier) and 0.0 < h.barrier < 5.0 and h.error is None for h in r.hops)
    assert r.dimensionality in {0, 1, 2, 3} and r.dimensionality_at_threshold in {0, 1, 2, 3}
    low = min(r.hops, key=lambda h: h.length)
    assert low.length == pytest.approx(shortest, abs=0.01)
    # the in-plane hop opens a 2-D network first (Li2N layers / Li layers)
    assert r.percolation[2].barrier == pytest.approx(low.barrier) and low.barrier < r.threshold
    assert r.dimensionality_at_threshold >= dim_at_threshold
    assert "distinct hop(s)" in r.table()


# --------------------------------------------------------------------------- band cells
def test_band_supercell_widths():
    assert band_supercell(Lattice.orthorhombic(3.0, 3.5, 4.0), 6.5).tolist() == [3, 2, 2]
    assert band_supercell(Lattice.orthorhombic(3.0, 3.5, 4.0), 0.0).tolist() == [1, 1, 1]
    assert band_supercell(Lattice.cubic(6.5), 6.5).tolist() == [1, 1, 1]  # exactly wide enough
    # a skewed cell: the width across a is c*sin(beta), not |a|
    mono = Lattice.monoclinic(7.0, 7.0, 7.0, 150.0)
    assert band_supercell(mono, 6.5).tolist() == [2, 1, 2]


def test_small_cell_bands_are_enlarged_large_cells_left_alone():
    model = LengthModel()
    s = cscl(3.0, 3.5, 4.0)  # 2 atoms: 3 x 2 x 2 cell = 24 atoms, two Li leave, 5 images join
    r = screen(s, "Li", max_hop=4.1, model=model, min_image_distance=6.5)
    assert {h.supercell for h in r.hops} == {(3, 2, 2)} and {h.band_atoms for h in r.hops} == {24 - 2 + 5}
    assert [r.percolation[d].barrier for d in (1, 2, 3)] == pytest.approx([0.30, 0.35, 0.40])  # lengths kept
    assert [h.start for h in r.hops] == [0, 0, 0]  # site indices of the input cell
    r0 = screen(s, "Li", max_hop=4.1, model=model, min_image_distance=0.0)
    # without enlargement a hop to the site's own image is built in a cell doubled along it
    assert sorted(h.supercell for h in r0.hops) == [(1, 1, 2), (1, 2, 1), (2, 1, 1)]
    assert {h.band_atoms for h in r0.hops} == {4 - 2 + 5}
    assert "3x2x2" in r.table() and r.to_dict()["hops"][0]["band_supercell"] == [3, 2, 2]
    # a 112-atom olivine file: bands in its 28-atom primitive cell (Niggli: 4.7, 6.0, 10.3 Å) x (2, 2, 1)
    big = screen(EXAMPLES / "LiFePO4_olivine.cif", "Li", max_hop=5.0, model=model)
    assert {h.supercell for h in big.hops} == {(2, 2, 1)} and {h.band_atoms for h in big.hops} == {112 - 2 + 5}


def test_enlarged_and_input_cell_bands_default_model_finite():
    import torch

    torch.set_num_threads(1)
    prim = Structure.from_file(EXAMPLES / "LiCoO2_layered.cif").get_primitive_structure()  # 4 atoms
    small = screen(prim, "Li", max_hop=3.0, min_image_distance=0.0)
    large = screen(prim, "Li", max_hop=3.0)  # default 6.5 Å
    (h0,), (h1,) = small.hops, large.hops
    assert h0.length == pytest.approx(2.816, abs=0.01) and h1.length == pytest.approx(h0.length)
    assert h0.supercell == (2, 1, 1) and h0.band_atoms == 8 - 2 + 5
    assert h1.supercell == (3, 3, 2) and h1.band_atoms == 72 - 2 + 5
    assert np.isfinite(h0.barrier) and np.isfinite(h1.barrier) and h0.error is None and h1.error is None


# --------------------------------------------------------------------------- hosts without the ion
def fepo4() -> Structure:
    s = Structure.from_file(EXAMPLES / "LiFePO4_olivine.cif")
    s.remove_species(["Li"])
    return s


def test_empty_olivine_found_interstitials_default_model():
    import torch

    torch.set_num_threads(1)
    lfp = Structure.from_file(EXAMPLES / "LiFePO4_olivine.cif")
    li = np.array([p.frac_coords for p in lfp if p.specie.symbol == "Li"])
    host = fepo4()
    r = screen(host, "Li", max_hop=5.0)
    assert r.insertion == "interstitial" and r.formula == "FePO4" and r.n_atoms == 96
    assert len(r.insertion_sites) == 2 and r.interstitials_found > 2
    # one of the inserted sites is olivine's Li (4a) site
    li_site = [s for s in r.insertion_sites
               if host.lattice.get_all_distances(li, s["orbit"]).min(axis=1).max() < 0.3]
    assert len(li_site) == 1 and li_site[0]["multiplicity"] == 16
    # the b-axis hop between Li sites: a dilute band (empty host + 5 images), finite barrier
    on_li = set(li_site[0]["indices"])
    b_hops = [h for h in r.hops if h.start in on_li and h.end in on_li and abs(h.length - 3.005) < 0.01]
    assert len(b_hops) == 1
    assert np.isfinite(b_hops[0].barrier) and b_hops[0].band_atoms == 96 + 5
    assert "symmetry-found interstitial" in r.table() and r.to_dict()["insertion"] == "interstitial"


def test_empty_olivine_user_site():
    model = LengthModel()
    r = screen(fepo4(), "Li", max_hop=5.0, model=model, insert_sites=[(0.5, 0.25, 0.25)])
    assert r.insertion == "user" and r.insertion_sites[0]["multiplicity"] == 16
    assert sorted(round(h.length, 2) for h in r.hops) == [3.0, 4.69]  # the LiFePO4 network, here dilute
    assert {h.band_atoms for h in r.hops} == {96 + 5}
    assert r.percolation[1].barrier == pytest.approx(0.3005, abs=1e-3) and r.percolation[3].barrier is None
    assert all(96 <= h.start < 112 and 96 <= h.end < 112 for h in r.hops)
    line = r.insertion_line()
    assert "user-given site(s)" in line and "(0.5000, 0.2500, 0.2500) x16" in line
    with pytest.raises(PathError, match="already holds 16 Li"):
        screen(EXAMPLES / "LiFePO4_olivine.cif", "Li", model=model, insert_sites=[(0.5, 0.25, 0.25)])


def test_simple_cubic_host_interstitial_at_body_centre():
    """Li in a simple-cubic Cl lattice (a = 3.5 Å) goes to the body centre; its hops are to its
    own images (3.5 Å), built in a 2x2x2 band cell of 8 Cl + 5 Li images."""
    host = Structure(Lattice.cubic(3.5), ["Cl"], [[0, 0, 0]])
    r = screen(host, "Li", max_hop=4.0, model=LengthModel())
    assert r.insertion == "interstitial" and len(r.insertion_sites) == 1
    assert r.insertion_sites[0]["frac"] == pytest.approx([0.5, 0.5, 0.5])
    (h,) = r.hops
    assert h.start == h.end == 1 and h.length == pytest.approx(3.5) and h.multiplicity == 3
    assert h.supercell == (2, 2, 2) and h.band_atoms == 8 + 5
    assert [r.percolation[d].barrier for d in (1, 2, 3)] == pytest.approx([0.35, 0.35, 0.35])


def test_ion_free_host_without_room_is_an_error():
    bcc = Structure(Lattice.cubic(2.87), ["Fe", "Fe"], [[0, 0, 0], [0.5, 0.5, 0.5]])
    with pytest.raises(PathError, match="Li is absent .* no interstitial site is 1.62 Å clear"):
        screen(bcc, "Li", model=LengthModel())


def test_cli_ion_free_host(tmp_path, capsys, fake_model):
    cif = tmp_path / "FePO4.cif"
    fepo4().to(filename=str(cif))
    out_json = tmp_path / "r.json"
    rc = main(["screen", str(cif), "--ion", "Li", "--insert-frac", "0.5", "0.25", "0.25", "--json", str(out_json)])
    assert rc == 0
    out = capsys.readouterr().out
    lines = [ln for ln in out.splitlines() if "inserted at" in ln]
    assert len(lines) == 1 and "1 user-given site(s)" in lines[0] and "one Li in the empty host" in lines[0]
    res = json.loads(out_json.read_text())["results"][0]
    assert res["insertion"] == "user" and res["insertion_sites"][0]["multiplicity"] == 16
    assert len(res["insertion_sites"][0]["indices"]) == 16 and res["min_image_distance_a"] == 6.5
    sc = tmp_path / "sc.cif"
    Structure(Lattice.cubic(3.5), ["Cl"], [[0, 0, 0]]).to(filename=str(sc))
    rc = main(["screen", str(sc), "--ion", "Li", "--max-hop", "4", "--min-image-distance", "0", "--json", str(out_json)])
    assert rc == 0 and "symmetry-found interstitial" in capsys.readouterr().out
    res = json.loads(out_json.read_text())["results"][0]
    assert res["insertion"] == "interstitial" and res["hops"][0]["band_supercell"] == [2, 1, 1]


def test_cli_ion_free_host_without_room(tmp_path, capsys, fake_model):
    cif = tmp_path / "bcc.cif"
    Structure(Lattice.cubic(2.87), ["Fe", "Fe"], [[0, 0, 0], [0.5, 0.5, 0.5]]).to(filename=str(cif))
    out_json = tmp_path / "r.json"
    rc = main(["screen", str(cif), "--ion", "Li", "--json", str(out_json)])
    assert rc != 0
    err = [ln for ln in capsys.readouterr().err.splitlines() if ln.startswith("hopnet: error")]
    assert len(err) == 1 and "no interstitial site" in err[0]
    failures = json.loads(out_json.read_text())["failures"]  # the failure is a row, not a lost run
    assert len(failures) == 1 and "no interstitial site" in failures[0]["error"]
    assert main(["screen", str(cif), "--ion", "Li", "--interstitials", "0"]) != 0
    assert "--interstitials must be" in capsys.readouterr().err


# --------------------------------------------------------------------------- invariance
def test_screen_is_invariant_to_the_input_cell():
    """The spinel's 8a-16c-8a hop: the same hops and barriers (within 0.01 eV) from the primitive
    cell, the 56-atom file, supercells up to 3x3x3, a rotated and shifted copy and a copy with
    shuffled atoms and a moved origin: every band is built in the primitive cell's canonical cell."""
    from pymatgen.core.operations import SymmOp

    s = Structure.from_file(EXAMPLES / "LiMn2O4_spinel.cif")
    prim = s.get_primitive_structure()
    rot = s.copy()
    rot.apply_operation(SymmOp.from_axis_angle_and_translation([1, 2, 3], 37.0, translation_vec=(0.3, -1.1, 2.0)))
    order = np.random.default_rng(0).permutation(len(s))
    shuffled = Structure(s.lattice, [s.species[k] for k in order], s.frac_coords[order] + 0.123)
    cells = [prim, s, s * (2, 2, 2), s * (3, 3, 3), prim * (3, 3, 3), rot, shuffled]
    results = [screen(c, "Li", max_hop=5.0) for c in cells]
    ref = results[0]
    assert len(ref.hops) == 1 and ref.hops[0].length == pytest.approx(3.57, abs=0.01)
    for c, r in zip(cells, results):
        assert [round(h.length, 3) for h in r.hops] == [round(h.length, 3) for h in ref.hops], len(c)
        assert [h.band_atoms for h in r.hops] == [h.band_atoms for h in ref.hops]
        np.testing.assert_allclose([h.barrier for h in r.hops], [h.barrier for h in ref.hops], atol=0.01)
        assert r.dimensionality == ref.dimensionality == 3
        assert r.percolation[3].barrier == pytest.approx(ref.percolation[3].barrier, abs=0.01)


# --------------------------------------------------------------------------- long runs
def _three_cifs(folder: Path) -> list[Path]:
    folder.mkdir(exist_ok=True)
    out = []
    for name, abc in (("a.cif", (3.5, 3.5, 3.5)), ("b.cif", (3.0, 3.5, 4.0)), ("c.cif", (3.2, 3.6, 4.0))):
        cscl(*abc).to(filename=str(folder / name))
        out.append(folder / name)
    return out


def _sources(csv_path: Path) -> list[str]:
    return [Path(r["source"]).name for r in csv.DictReader(csv_path.open())]


def test_cli_interrupt_keeps_finished_structures_and_resume_completes(tmp_path, capsys, fake_model, monkeypatch):
    import hopnet.screening as hs

    files = _three_cifs(tmp_path / "cifs")
    out_csv, out_json = tmp_path / "h.csv", tmp_path / "h.json"
    real, calls = hs.screen, []

    def interrupted(*a, **kw):
        calls.append(a[0])
        if len(calls) == 2:
            raise KeyboardInterrupt
        return real(*a, **kw)

    monkeypatch.setattr(hs, "screen", interrupted)
    args = ["screen", *map(str, files), "--ion", "Li", "--max-hop", "4.1", "--csv", str(out_csv), "--json", str(out_json)]
    assert main(args) == 130
    err = capsys.readouterr().err
    assert "interrupted: 1 finished structure(s) kept" in err and "--resume" in err
    assert set(_sources(out_csv)) == {"a.cif"}  # a's rows are on disk
    doc = json.loads(out_json.read_text())
    assert [Path(r["source"]).name for r in doc["results"]] == ["a.cif"] and doc["complete"] is False

    monkeypatch.setattr(hs, "screen", real)
    assert main(args + ["--resume"]) == 0
    assert "resuming: 1 of 3 structure(s) already done" in capsys.readouterr().out
    names = _sources(out_csv)
    assert set(names) == {"a.cif", "b.cif", "c.cif"}
    assert names.count("a.cif") == 1 and names.count("b.cif") == 3  # nothing repeated
    doc = json.loads(out_json.read_text())
    assert [Path(r["source"]).name for r in doc["results"]] == ["a.cif", "b.cif", "c.cif"] and doc["complete"]
    assert not list(tmp_path.glob(".h.json.journal*"))
    # resuming a finished run does nothing more
    assert main(args + ["--resume"]) == 0 and _sources(out_csv) == names


def test_cli_resume_cuts_a_row_left_half_written(tmp_path, capsys, fake_model):
    files = _three_cifs(tmp_path / "cifs")
    out_csv = tmp_path / "h.csv"
    args = ["screen", *map(str, files[:1]), "--ion", "Li", "--max-hop", "4.1", "--csv", str(out_csv)]
    assert main(args) == 0
    with open(out_csv, "a") as fh:
        fh.write(f"{files[1]},LiCl,Li,0,0,0,3.0")  # a killed run's last, unfinished row
    assert main(["screen", *map(str, files), "--ion", "Li", "--max-hop", "4.1", "--csv", str(out_csv), "--resume"]) == 0
    rows = list(csv.DictReader(out_csv.open()))
    assert {Path(r["source"]).name for r in rows} == {"a.cif", "b.cif", "c.cif"}
    assert all(r["barrier_ev"] for r in rows)


def test_cli_timeout_is_a_failure_row_not_a_stall(tmp_path, capsys, fake_model, monkeypatch):
    import time

    import hopnet.screening as hs

    files = _three_cifs(tmp_path / "cifs")
    real = hs.screen

    def slow_on_b(path, *a, **kw):
        if path.endswith("b.cif"):
            time.sleep(30)
        return real(path, *a, **kw)

    monkeypatch.setattr(hs, "screen", slow_on_b)
    out_csv = tmp_path / "h.csv"
    t0 = time.perf_counter()
    rc = main(["screen", *map(str, files), "--ion", "Li", "--max-hop", "4.1", "--csv", str(out_csv), "--timeout", "0.5"])
    assert time.perf_counter() - t0 < 20
    assert rc != 0
    rows = list(csv.DictReader(out_csv.open()))
    failed = [r for r in rows if r["error"]]
    assert [Path(r["source"]).name for r in failed] == ["b.cif"] and "timed out after 0.5 s" in failed[0]["error"]
    assert {Path(r["source"]).name for r in rows if not r["error"]} == {"a.cif", "c.cif"}


@pytest.mark.parametrize("flag", ["--csv", "--json", "--plot"])
def test_cli_unwritable_outputs_one_line_nothing_written(tmp_path, capsys, fake_model, flag):
    cif = _three_cifs(tmp_path / "cifs")[0]
    blocker = tmp_path / "a_file"
    blocker.write_text("x")
    for target in (blocker / "out.png", tmp_path / "cifs"):  # a folder that cannot exist; a folder
        rc = main(["screen", str(cif), "--ion", "Li", "--max-hop", "4.1", flag, str(target)])
        err = capsys.readouterr().err.strip().splitlines()
        assert rc == 2 and len(err) == 1 and err[0].startswith(f"hopnet: error: {flag} ")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a_file", "cifs"]


def test_network_plot_draws_the_network_the_screen_built(fake_model):
    """Li3N (108-atom file): the plot draws the screen's own graph on the 4-atom primitive cell,
    48 edges whose counts per distinct hop are the multiplicities per primitive cell (it drew
    1,296 edges of the input cell before)."""
    from hopnet.plots import hop_network_png, screen_edges

    r = screen(EXAMPLES / "Li3N.cif", "Li", max_hop=5.0, model=fake_model)
    edges = screen_edges(r.network)
    assert len(r.network.prim) == 4 and r.network.n_cells == 27 and len(edges) == 48
    for h in r.hops:
        assert sum(e.hop == h.index for e in edges) * 27 == h.multiplicity
    assert hop_network_png(r)[:8] == b"\x89PNG\r\n\x1a\n"


def test_cli_single_slow_structure_says_it_is_running(tmp_path, capsys, fake_model, monkeypatch):
    import time

    import hopnet.cli.screen_cmd as sc
    import hopnet.screening as hs

    cif = _three_cifs(tmp_path / "cifs")[0]
    real = hs.screen

    def slow(*a, **kw):
        time.sleep(0.5)
        return real(*a, **kw)

    monkeypatch.setattr(hs, "screen", slow)
    monkeypatch.setattr(sc._Heartbeat.__init__, "__defaults__", (0.1, 0.2))
    assert main(["screen", str(cif), "--ion", "Li", "--max-hop", "4.1"]) == 0
    err = capsys.readouterr().err
    assert f"hopnet: screening {cif}: " in err and " s so far" in err
