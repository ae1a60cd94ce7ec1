"""Resource bounds: graphs over the memory budget are refused before allocation; ``hopnet screen``
streams its outputs so that memory does not grow with the number of structures."""

from __future__ import annotations

import contextlib
import csv
import importlib.util
import json
import os
import tracemalloc
import warnings
from pathlib import Path

import numpy as np
import pytest
import torch
from pymatgen.core import Lattice, Structure

from hopnet.infra.errors import HopnetError, StructureError
from hopnet.graphs import GraphConfig, build_graph, build_graph_arrays, knn_edges
from hopnet.graphs.config import (
    DEFAULT_GRAPH_MEMORY_GB,
    GRAPH_MEMORY_ENV,
    graph_memory_budget,
)
from hopnet.graphs.linegraph import LINE_GRAPH_BYTES_PER_PAIR, line_graph_size
from hopnet.graphs.neighbors import search_cost

torch.set_num_threads(1)
ROOT = Path(__file__).resolve().parents[1]
EXAMPLES = ROOT / "examples"


@pytest.fixture(autouse=True)
def _default_budget(monkeypatch):
    monkeypatch.delenv(GRAPH_MEMORY_ENV, raising=False)


def rock_salt(n: int = 1) -> Structure:
    """NaCl, conventional cell (8 atoms) repeated n x n x n: 18 neighbours per atom, 324 pairs."""
    s = Structure.from_spacegroup("Fm-3m", Lattice.cubic(5.64), ["Na", "Cl"], [[0, 0, 0], [0.5, 0.5, 0.5]])
    return s * (n, n, n)


def traced_peak(fn, *args, **kwargs) -> tuple[int, BaseException | None]:
    """Peak bytes tracemalloc saw (numpy arrays included) while ``fn`` ran, and what it raised."""
    tracemalloc.start()
    try:
        fn(*args, **kwargs)
        exc = None
    except HopnetError as e:
        exc = e
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    return peak, exc


# --------------------------------------------------------------------------- graph memory budget
def test_budget_default_env_and_keyword(monkeypatch):
    assert graph_memory_budget() == DEFAULT_GRAPH_MEMORY_GB
    monkeypatch.setenv(GRAPH_MEMORY_ENV, "0.5")
    assert graph_memory_budget() == 0.5 and graph_memory_budget(2) == 2.0  # keyword wins
    monkeypatch.setenv(GRAPH_MEMORY_ENV, "lots")
    with pytest.raises(HopnetError, match=f"{GRAPH_MEMORY_ENV} must be a positive number of GB, got 'lots'"):
        graph_memory_budget()
    with pytest.raises(HopnetError, match="positive number of GB"):
        graph_memory_budget(0)


def test_budget_is_not_part_of_the_cache_key(monkeypatch):
    key = GraphConfig().key()
    monkeypatch.setenv(GRAPH_MEMORY_ENV, "0.0123")
    assert GraphConfig().key() == key and "0.0123" not in key


def test_thin_cell_refused_before_the_search():
    # 1e-9 Å thick: the search would expand 2 atoms into ~1.8e10 image cells (~860 GB)
    lattice = np.diag([100.0, 100.0, 1e-9])
    frac = np.array([[0.0, 0.0, 0.0], [0.5, 0.5, 0.5]])
    need, images, _ = search_cost(lattice, 2, 1.0)
    assert images > 1e9 and need > 100 * DEFAULT_GRAPH_MEMORY_GB * 1e9
    peak, exc = traced_peak(build_graph_arrays, lattice, frac, [3, 17])
    assert isinstance(exc, StructureError) and "\n" not in str(exc)
    msg = str(exc)
    assert msg.startswith("graph of LiCl (2 atoms) would need ~") and "periodic images" in msg
    assert f"over the 8 GB graph memory budget (set {GRAPH_MEMORY_ENV} to change it)" in msg
    assert peak < 1_000_000  # refused before anything big was allocated


def test_search_estimate_matches_the_cell_widths():
    # 0.05 Å thin along c: 2 * ceil(8 / 0.05) + 1 = 321 image cells along it, 3 along a and b
    _, images, pairs = search_cost(np.diag([10.0, 10.0, 0.05]), 4, 8.0)
    assert images == 3 * 3 * 321
    assert pairs == pytest.approx(16 * 4 / 3 * np.pi * 8.0 ** 3 / 5.0)


def test_many_atoms_refused_at_the_search_with_a_small_budget(monkeypatch):
    s = rock_salt(5)  # 1,000 atoms, ~4 MB of neighbour search
    need = search_cost(s.lattice.matrix, len(s), 5.0)[0]
    monkeypatch.setenv(GRAPH_MEMORY_ENV, "0.001")
    traced_peak(build_graph, rock_salt(1) * (1, 1, 2))  # first refusal: imports outside the traced run
    peak, exc = traced_peak(build_graph, s)
    assert isinstance(exc, StructureError) and "graph of NaCl (1,000 atoms)" in str(exc)
    assert "neighbour search" in str(exc) and "over the 0.001 GB graph memory budget" in str(exc)
    assert need > 4e6 and peak < need / 10, (peak, need)
    # the keyword overrides the environment
    assert build_graph(rock_salt(1), memory_gb=1.0).num_nodes == 8
    with pytest.raises(StructureError, match="graph memory budget"):
        knn_edges(s.lattice.matrix, s.frac_coords, memory_gb=1e-4)


def test_line_graph_refused_before_the_pairs_are_built(monkeypatch):
    s = rock_salt(5)
    edges = knn_edges(s.lattice.matrix, s.frac_coords)
    pairs = line_graph_size(edges.src, edges.dst, len(s))
    assert pairs == 1000 * 18 * 18  # every atom: 18 bonds in, 18 out
    search = search_cost(s.lattice.matrix, len(s), edges.cutoff)[0]
    need = LINE_GRAPH_BYTES_PER_PAIR * pairs
    assert search < need / 1.5
    monkeypatch.setenv(GRAPH_MEMORY_ENV, str((search + need) / 2 / 1e9))  # the search fits, the pairs do not
    peak, exc = traced_peak(build_graph, s)
    assert isinstance(exc, StructureError)
    assert "graph of NaCl (1,000 atoms)" in str(exc) and "(324,000 bond pairs)" in str(exc)
    assert peak < need / 3
    # without the line graph the same structure fits
    assert build_graph(s, GraphConfig(line_graph=False)).num_bonds == 18_000


@pytest.mark.parametrize("make", [lambda: rock_salt(3), lambda: Structure.from_file(EXAMPLES / "LiCoO2_layered.cif"),
                                  lambda: "band"], ids=["rock-salt-216", "LiCoO2-108", "band"])
def test_estimate_within_a_factor_2_of_the_real_peak(make):
    s = make()
    if isinstance(s, str):  # a data-set-like band: 5 Li images + host
        from hopnet.paths import MigrationPath

        host = Structure.from_file(EXAMPLES / "LiCoO2_layered.cif")
        li = [k for k, site in enumerate(host) if site.specie.symbol == "Li"]
        s = MigrationPath.from_sites(host, "Li", li[0], li[1]).band()
    build_graph(s)  # warm up imports and caches outside the traced run
    edges = knn_edges(s.lattice.matrix, s.frac_coords)
    estimate = max(LINE_GRAPH_BYTES_PER_PAIR * line_graph_size(edges.src, edges.dst, len(s)),
                   search_cost(s.lattice.matrix, len(s), edges.cutoff)[0])
    peak, exc = traced_peak(build_graph, s)
    assert exc is None
    assert 0.5 < peak / estimate < 2.0, (peak, estimate)


def test_normal_structures_pass_untouched():
    for s in (rock_salt(1), Structure.from_file(EXAMPLES / "LiFePO4_olivine.cif")):
        g = build_graph(s)
        assert g.num_nodes == len(s) and g.lg_edge_index.shape[1] == g.lg_cos.shape[0] > 0


# --------------------------------------------------------------------------- streaming screen
def _bench():
    """benchmarks/screen_stream.py, whose ``make_structures`` writes the small Li cells."""
    spec = importlib.util.spec_from_file_location("hopnet_bench_screen_stream", ROOT / "benchmarks" / "screen_stream.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


make_structures = _bench().make_structures


def screen_cli(folder: Path, out: Path, *extra: str) -> int:
    """``hopnet screen FOLDER --ion Li --json out.json --csv out.csv`` with the tables printed to
    /dev/null (a captured stdout would itself grow with the number of structures)."""
    from hopnet.cli import main

    with open(os.devnull, "w") as devnull, contextlib.redirect_stdout(devnull), warnings.catch_warnings():
        warnings.simplefilter("ignore")  # CIF parser notes, recorded by pytest per structure
        return main(["screen", str(folder), "--ion", "Li", "--max-hop", "4.1", "--json", str(out.with_suffix(".json")),
                     "--csv", str(out.with_suffix(".csv")), *extra])


def test_screen_memory_does_not_grow_with_the_number_of_structures(tmp_path):
    for n in (10, 40, 41):
        make_structures(tmp_path / f"in{n}", n, seed=n)
    # warm up: model, imports, and pymatgen's bounded caches (32 spglib data sets) filled with other cells
    assert screen_cli(tmp_path / "in41", tmp_path / "warm") == 0
    peaks = {}
    tracemalloc.start()
    try:
        for n in (10, 40):
            base = tracemalloc.get_traced_memory()[0]
            tracemalloc.reset_peak()
            assert screen_cli(tmp_path / f"in{n}", tmp_path / f"out{n}") == 0
            peaks[n] = tracemalloc.get_traced_memory()[1] - base
    finally:
        tracemalloc.stop()
    # holding the 40 results and rendering the outputs at the end (the old way) peaked ~1.9x higher
    assert peaks[40] < 1.3 * peaks[10], peaks
    payload = json.loads((tmp_path / "out40.json").read_text())
    assert len(payload["results"]) == 40 and payload["failures"] == []
    assert sorted(Path(r["source"]).name for r in payload["results"]) == sorted(f.name for f in (tmp_path / "in40").iterdir())
    rows = list(csv.DictReader((tmp_path / "out40.csv").open()))
    assert len(rows) == sum(len(r["hops"]) for r in payload["results"]) and {r["ion"] for r in rows} == {"Li"}


def test_streamed_json_is_the_same_document(tmp_path):
    folder = tmp_path / "in"
    make_structures(folder, 3)
    (folder / "z_broken.cif").write_text("not a CIF\n")
    assert screen_cli(folder, tmp_path / "r", "--plot", str(tmp_path / "bars.png")) == 2  # one failed
    text = (tmp_path / "r.json").read_text()
    payload = json.loads(text)
    assert text == json.dumps(payload, indent=1) + "\n"  # what json.dumps of the whole payload gives
    assert list(payload) == ["results", "failures", "skipped", "provenance", "complete"] and payload["complete"]
    assert payload["skipped"] == []  # structures without the ion (--ion auto): none here
    assert len(payload["results"]) == 3 and len(payload["failures"]) == 1
    assert payload["failures"][0]["source"].endswith("z_broken.cif") and payload["provenance"]["config"]["ion"] == "Li"
    stems = [Path(r["source"]).stem for r in payload["results"]]
    assert sorted(p.name for p in tmp_path.glob("bars_*.png")) == sorted(f"bars_{s}.png" for s in stems)
    assert not list(tmp_path.rglob(".*tmp"))


def test_interrupted_screen_keeps_finished_structures_only(tmp_path, monkeypatch):
    """Ctrl-C while the second structure's plot is drawn: the first structure is in every output,
    nothing of the second is, and no temporary is left."""
    import hopnet.plots as hs

    folder = tmp_path / "in"
    make_structures(folder, 3)
    (tmp_path / "r.json").write_text("previous run\n")  # without --resume: started afresh
    real, calls = hs.hop_bar_chart, []

    def chart_then_interrupt(result):
        calls.append(result.source)
        if len(calls) == 2:
            raise KeyboardInterrupt  # Ctrl-C in the middle of the second structure's outputs
        return real(result)

    monkeypatch.setattr(hs, "hop_bar_chart", chart_then_interrupt)
    assert screen_cli(folder, tmp_path / "r", "--plot", str(tmp_path / "bars.png")) == 130
    assert len(calls) == 2
    payload = json.loads((tmp_path / "r.json").read_text())
    assert [r["source"] for r in payload["results"]] == calls[:1] and payload["complete"] is False
    assert {r["source"] for r in csv.DictReader((tmp_path / "r.csv").open())} == set(calls[:1])
    assert [p.name for p in tmp_path.glob("bars*.png")] == [f"bars_{Path(calls[0]).stem}.png"]
    assert not list(tmp_path.rglob(".*tmp"))  # every temporary removed
