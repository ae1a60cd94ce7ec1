"""CHGNet climbing-image NEB (hopnet.neb) and ``hopnet neb`` on a 16-atom rock-salt LiF cell.

The Li vacancy hop between nearest Li sites (a/√2 = 2.85 Å) is symmetric: both end points
are equivalent by symmetry, so forward and reverse barriers agree and A->B mirrors B->A.
"""

from __future__ import annotations

import dataclasses
import json
import sys
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("chgnet")

import torch  # noqa: E402
from pymatgen.core import Lattice, Structure  # noqa: E402

from hopnet import potentials  # noqa: E402
from hopnet.cli import main  # noqa: E402
from hopnet.infra.errors import HopnetError  # noqa: E402
from hopnet.neb import (  # noqa: E402
    MISSING_CHGNET,
    NebConfig,
    NebDependencyError,
    read_results,
    run_neb,
    run_neb_many,
)
from hopnet.paths import MigrationPath  # noqa: E402
from hopnet.structures import to_jarvis  # noqa: E402

torch.set_num_threads(1)
EXAMPLES_DIR = Path(__file__).resolve().parents[1] / "examples"

FAST = NebConfig(fmax=0.15, steps=40, relax_fmax=0.15, relax_steps=20)
CHEAP = NebConfig(steps=0, relax=False, interpolation="linear")  # the straight band's energies


@pytest.fixture(scope="module")
def lif() -> Structure:
    s = Structure.from_spacegroup("Fm-3m", Lattice.cubic(4.03), ["Li", "F"], [[0, 0, 0], [0.5, 0.5, 0.5]])
    s = s.get_primitive_structure()
    s.make_supercell([2, 2, 2])
    assert len(s) == 16
    return s


@pytest.fixture(scope="module")
def hop(lif: Structure) -> tuple[int, int]:
    li = [i for i, sp in enumerate(lif.species) if sp.symbol == "Li"]
    j = next(j for j in li[1:] if abs(lif.get_distance(li[0], j) - 4.03 / np.sqrt(2)) < 1e-3)
    return li[0], j


@pytest.fixture(scope="module")
def forward(lif, hop):
    return run_neb(MigrationPath.from_sites(lif, "Li", *hop), FAST, id="A->B")


def test_symmetric_hop_barrier(forward, hop):
    r = forward
    assert r.n_atoms == 15 and r.ion == "Li" and r.relaxed and r.relax_converged
    assert len(r.energies) == 5 and all(np.isfinite(r.energies))
    assert r.converged and r.n_steps <= FAST.steps and r.max_force < FAST.fmax + 1e-9
    assert r.barrier == r.forward_barrier == pytest.approx(max(r.energies) - r.energies[0])
    # a Li vacancy hop in LiF costs a few tenths of an eV (DFT ~0.7 eV); the climbing image is the middle
    assert 0.2 < r.barrier < 1.5
    assert int(np.argmax(r.energies)) == 2
    # symmetric hop: the two end points are equivalent
    assert r.reverse_barrier == pytest.approx(r.forward_barrier, abs=0.02)
    assert r.hop_length == pytest.approx(4.03 / np.sqrt(2), abs=1e-6)
    assert r.wall_s > 0


def test_forward_equals_reverse_of_backward_hop(lif, hop, forward):
    back = run_neb(MigrationPath.from_sites(lif, "Li", hop[1], hop[0]), FAST, id="B->A")
    assert back.converged
    assert back.reverse_barrier == pytest.approx(forward.forward_barrier, abs=0.03)
    assert back.forward_barrier == pytest.approx(forward.reverse_barrier, abs=0.03)


def test_unrelaxed_band_energies_are_symmetric(lif, hop):
    r = run_neb(MigrationPath.from_sites(lif, "Li", *hop), CHEAP)
    assert not r.relaxed and r.relax_converged is None and r.n_steps == 0 and not r.converged
    e = np.array(r.energies)
    np.testing.assert_allclose(e, e[::-1], atol=2e-3)  # mirror-symmetric straight-line band
    assert r.barrier > 0


def test_run_neb_many_resumes(lif, hop, tmp_path):
    path = MigrationPath.from_sites(lif, "Li", *hop)
    out = tmp_path / "res.jsonl"
    out.write_text(json.dumps({"id": "p1", "barrier": 9.0}) + "\n")
    new = run_neb_many([("p1", path), ("p2", path, {"target": 0.7})], CHEAP, out)
    assert [r.id for r in new] == ["p2"]
    rows = read_results(out)
    assert [r["id"] for r in rows] == ["p1", "p2"] and rows[0]["barrier"] == 9.0
    assert rows[1]["meta"] == {"target": 0.7} and rows[1]["barrier"] == pytest.approx(new[0].barrier)
    assert run_neb_many([("p1", path), ("p2", path)], CHEAP, out) == []  # all done: nothing runs
    assert len(read_results(out)) == 2
    # a line cut short by a killed run is ignored and the path is redone
    with open(out, "a") as fh:
        fh.write('{"id": "p3", "barr')
    assert [r.id for r in run_neb_many([("p3", path)], CHEAP, out)] == ["p3"]
    assert [r["id"] for r in read_results(out)] == ["p1", "p2", "p3"]


def test_missing_chgnet_message(lif, hop, monkeypatch, tmp_path, capsys):
    monkeypatch.setattr(potentials, "_LOADED", {})
    monkeypatch.setitem(sys.modules, "chgnet.model", None)  # import fails
    path = MigrationPath.from_sites(lif, "Li", *hop)
    with pytest.raises(NebDependencyError, match=r"pip install 'hopnet\[neb\]'"):
        run_neb(path, CHEAP)
    cif = tmp_path / "LiF.cif"
    lif.to(filename=str(cif))
    out = tmp_path / "out.jsonl"
    rc = main(["neb", str(cif), "--ion", "Li", "--from", str(hop[0]), "--to", str(hop[1]),
               "--output", str(out)])
    err = capsys.readouterr().err.strip()
    assert rc != 0 and err == f"hopnet: error: {MISSING_CHGNET}"
    assert not out.exists()


def test_cli_structure_and_data(lif, hop, tmp_path, capsys):
    cif = tmp_path / "LiF.cif"
    lif.to(filename=str(cif))
    out = tmp_path / "s.jsonl"
    rc = main(["neb", str(cif), "--ion", "Li", "--from", str(hop[0]), "--to", str(hop[1]),
               "--steps", "0", "--no-relax", "--interpolation", "linear", "--json", "--output", str(out)])
    assert rc == 0
    printed = [json.loads(x) for x in capsys.readouterr().out.splitlines()]  # nothing but JSON on stdout
    assert len(printed) == 1 and printed[0]["barrier"] > 0
    stored = read_results(out)
    assert set(stored[0]["provenance"]) == {"hopnet_version", "git_commit"}
    assert [{k: v for k, v in row.items() if k != "provenance"} for row in stored] == printed

    band = MigrationPath.from_sites(lif, "Li", *hop).band()
    data = tmp_path / "bands.json"
    data.write_text(json.dumps([{"sys_name": "LiF_1", "target": 0.7, "atoms": to_jarvis(band)},
                                {"sys_name": "LiF_2", "target": 0.7, "atoms": to_jarvis(band)}]))
    out2 = tmp_path / "d.jsonl"
    args = ["neb", "--data", str(data), "--limit", "1", "--steps", "0", "--no-relax", "--output", str(out2)]
    assert main(args) == 0
    text = capsys.readouterr().out
    assert text.startswith("LiF_1: barrier ") and "(reference 0.700 eV)" in text and " s\n" in text
    assert main(args) == 0  # rerun: resumed, nothing computed
    assert "LiF_1: already in" in capsys.readouterr().out
    assert [r["id"] for r in read_results(out2)] == ["LiF_1"]


@pytest.mark.parametrize("argv, needle", [
    (["--from", "0", "--to", "99"], "out of range"),
    (["--from", "0"], "needs --to"),
    (["--from", "0", "--to", "1", "--fmax", "-1"], "--fmax"),
])
def test_cli_bad_input(lif, tmp_path, capsys, argv, needle):
    cif = tmp_path / "LiF.cif"
    lif.to(filename=str(cif))
    out = tmp_path / "o.jsonl"
    rc = main(["neb", str(cif), "--ion", "Li", *argv, "--output", str(out)])
    err = capsys.readouterr().err.strip().splitlines()
    assert rc != 0 and len(err) == 1 and needle in err[0]
    assert not out.exists()


def test_cli_needs_one_input(capsys):
    assert main(["neb"]) != 0
    assert "either a STRUCTURE" in capsys.readouterr().err


# --------------------------------------------------------------------------- potentials, cells
def test_batched_images_one_call_per_step_and_same_numbers(lif, hop):
    from hopnet.neb import _to_atoms
    from hopnet.potentials import BatchedImages, load_potential

    pot = load_potential("chgnet")
    path = MigrationPath.from_sites(lif, "Li", *hop)
    images = [_to_atoms(path.initial()) for _ in range(3)]
    for k, im in enumerate(images):
        im.positions[0] += 0.05 * k
    group = BatchedImages(pot, images).attach()
    e = [im.get_potential_energy() for im in images]
    f = [im.get_forces() for im in images]
    assert group.n_calls == 1 and group.n_evaluations == 3  # the first image asked evaluated all three
    alone = [pot.evaluate([im])[0][0] for im in images]
    np.testing.assert_allclose(e, alone, atol=1e-4)
    images[1].positions[0] += 0.01  # one image moves: only it is evaluated again
    images[1].get_forces()
    assert group.n_calls == 2 and group.n_evaluations == 4
    assert all(np.isfinite(x).all() for x in f)


def test_cpu_forward_passes_group_small_cells_only():
    from hopnet.potentials import ChgnetPotential, load_potential

    pot = load_potential("chgnet")
    assert isinstance(pot, ChgnetPotential)
    assert pot._chunks([13, 13, 13]) == [[0, 1, 2]]
    assert pot._chunks([111, 111, 111]) == [[0], [1], [2]]
    assert pot._chunks([40, 40, 40, 10]) == [[0, 1], [2, 3]]


def test_canonical_cell_of_a_supercell_band_is_the_same(lif, hop):
    """A band given in a 2x2x2 supercell of the 16-atom cell and the band of the 16-atom cell
    run in the same canonical cell: same atom count, hop and straight-band energies."""
    from hopnet.cells import canonical_from_path

    small = MigrationPath.from_sites(lif, "Li", *hop)
    full = lif.make_supercell([2, 2, 2], in_place=False)  # the crystal, then the same hop in it
    ends = full.lattice.get_all_distances(np.vstack([small.initial_frac, small.final_frac]) / 2, full.frac_coords)
    gone = [int(np.argmin(row)) for row in ends]
    big_host = full.copy()
    big_host.remove_sites(gone)
    big = MigrationPath(big_host, "Li", small.initial_frac / 2, small.final_frac / 2, image_convention="as_given")
    a, b = canonical_from_path(small), canonical_from_path(big)
    assert len(a.path.host) == len(b.path.host) and a.supercell == b.supercell
    assert a.path.hop_length == pytest.approx(small.hop_length) == pytest.approx(b.path.hop_length)
    ra = run_neb(small, NebConfig(steps=0, relax=False, interpolation="linear", cell="canonical"))
    rb = run_neb(big, NebConfig(steps=0, relax=False, interpolation="linear", cell="canonical"))
    assert ra.n_atoms == rb.n_atoms and ra.supercell == rb.supercell and ra.cell == "canonical"
    np.testing.assert_allclose(np.array(ra.energies) - ra.energies[0], np.array(rb.energies) - rb.energies[0], atol=2e-3)


def test_budget_stops_the_band_and_flags_it(lif, hop):
    r = run_neb(MigrationPath.from_sites(lif, "Li", *hop),
                NebConfig(fmax=0.001, steps=500, relax=False, time_budget=0.5))
    assert r.stop == "time" and not r.converged and r.n_steps < 500
    assert np.isfinite(r.barrier) and r.max_force > 0.001  # flagged features, never nothing


def test_cache_returns_the_band_without_running_it_again(lif, hop, tmp_path, monkeypatch):
    from hopnet import neb as nebmod
    from hopnet.neb_cache import NebCache

    cache = NebCache(tmp_path / "neb")
    path = MigrationPath.from_sites(lif, "Li", *hop)
    first = run_neb(path, CHEAP, id="a", cache=cache)
    assert not first.cached and cache.misses == 1
    calls = []
    monkeypatch.setattr(nebmod, "_relaxed_ends", lambda *a, **k: calls.append(1))  # must not run
    again = run_neb(path, CHEAP, id="b", meta={"x": 1}, cache=cache)
    assert again.cached and not calls and again.id == "b" and again.meta == {"x": 1}
    assert again.energies == first.energies and again.barrier == first.barrier
    # other settings: another key
    assert NebCache.key(path, CHEAP, "p") != NebCache.key(path, NebConfig(steps=1, relax=False), "p")
    # a damaged file is removed and recomputed, never used
    files = list((tmp_path / "neb").rglob("*.json"))
    assert len(files) == 1
    files[0].write_bytes(files[0].read_bytes()[:-5])
    monkeypatch.undo()
    third = run_neb(path, CHEAP, cache=cache)
    assert not third.cached and third.barrier == pytest.approx(first.barrier, abs=1e-6)


def test_cli_uses_the_cache(lif, hop, tmp_path, capsys):
    cif = tmp_path / "LiF.cif"
    lif.to(filename=str(cif))
    args = ["neb", str(cif), "--ion", "Li", "--from", str(hop[0]), "--to", str(hop[1]), "--steps", "0",
            "--no-relax", "--interpolation", "linear", "--cache-dir", str(tmp_path / "c")]
    assert main(args) == 0 and "from the cache" not in capsys.readouterr().out
    assert main(args) == 0 and "from the cache" in capsys.readouterr().out
    assert main(args + ["--no-cache"]) == 0 and "from the cache" not in capsys.readouterr().out


# --------------------------------------------------------------------------- NEB features in a model
def test_classical_model_with_neb_features_ships_its_training_table(data_dir, tmp_path, monkeypatch):
    """Trees on descriptors + NEB features: trained from results-file rows, the rows kept in the
    model folder by NEB-cache key, so predicting the training paths again runs no NEB; saved and
    loaded it predicts the same numbers."""
    from hopnet import neb as nebmod
    from hopnet.datasets import load
    from hopnet.models.folder import load_model
    from hopnet.models.classical import (NEB_TABLE_FILE, ClassicalConfig, band_structures,
                                         model_feature_names, train_classical)
    from hopnet.neb import NEB_FEATURE_NAMES, paths_from_entries

    ds = load("migration-barriers", data_dir=data_dir)
    small = [k for k, e in enumerate(ds) if e.id in ("MgTb2Se4", "NaSc2Se4", "MgY2Te4", "Li4P2S7")]
    sub = ds.subset(np.array(small))
    assert len(sub) == 4
    cfg_neb = NebConfig(steps=0, relax=False, interpolation="linear", cell="canonical", n_images=3)
    rows = {pid: {**r.to_dict(), "id": pid} for pid, p, _ in paths_from_entries(list(sub))
            for r in [run_neb(p, cfg_neb, id=pid)]}
    config = ClassicalConfig(n_estimators=5, max_depth=2, neb=dataclasses.asdict(cfg_neb))
    folder = train_classical(sub, tmp_path / "acc", config, seeds=(0,), neb_rows=rows)
    assert (folder / NEB_TABLE_FILE).is_file()
    model = load_model(folder)
    assert model.metadata["feature_names"] == model_feature_names(config) == [*model.metadata["feature_names"][:-8], *NEB_FEATURE_NAMES]
    monkeypatch.setattr(nebmod, "_relaxed_ends", lambda *a, **k: pytest.fail("a training path ran again"))
    paths = band_structures(sub)
    pred = model.predict_paths(paths)
    again = load_model(folder).predict_paths(paths)
    np.testing.assert_array_equal(pred.mean, again.mean)
    assert np.isfinite(pred.mean).all()
    with pytest.raises(HopnetError, match="no NEB result for 1 of 4"):
        train_classical(sub, tmp_path / "x", config, neb_rows={k: v for k, v in list(rows.items())[:3]})


def test_screen_refines_only_the_deciding_hops(data_dir, tmp_path):
    """A screen with --refine predicts the deciding hops again with an NEB-feature model and
    flags them; the others keep the fast model's numbers."""
    from hopnet.datasets import load
    from hopnet.models.classical import ClassicalConfig, train_classical
    from hopnet.neb import paths_from_entries
    from hopnet.screening import deciding_hops, screen

    ds = load("migration-barriers", data_dir=data_dir)
    sub = ds.subset(np.array([k for k, e in enumerate(ds) if e.id in ("MgTb2Se4", "NaSc2Se4", "MgY2Te4", "Li4P2S7")]))
    cfg_neb = NebConfig(steps=0, relax=False, interpolation="linear", cell="canonical", n_images=3)
    rows = {pid: {**run_neb(p, cfg_neb, id=pid).to_dict(), "id": pid} for pid, p, _ in paths_from_entries(list(sub))}
    folder = train_classical(sub, tmp_path / "acc", ClassicalConfig(n_estimators=5, max_depth=2,
                                                                     neb=dataclasses.asdict(cfg_neb)), neb_rows=rows)
    plain = screen(EXAMPLES_DIR / "LiF.cif", "Li", max_hop=4.1, min_image_distance=0.0)
    decide = deciding_hops(plain.hops, plain.percolation, plain.threshold)
    assert decide and all(not h.refined for h in plain.hops)
    r = screen(EXAMPLES_DIR / "LiF.cif", "Li", max_hop=4.1, min_image_distance=0.0, refine=str(folder),
               model="default")
    assert [h.index for h in r.hops if h.refined] == decide
    for h, h0 in zip(r.hops, plain.hops):
        if not h.refined:
            assert h.barrier == h0.barrier
    assert "refined with acc" in r.model and "(refined)" in r.table()
    assert r.csv_rows()[decide[0]][-1] == "yes"


def test_cli_refine_with_an_unknown_model_is_one_line(capsys):
    assert main(["screen", str(EXAMPLES_DIR / "LiF.cif"), "--ion", "Li", "--refine", "no-such-model"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "'no-such-model' is neither a shipped model" in err[0]


def test_sevennet_backbone_behind_the_same_interface(lif, hop):
    pytest.importorskip("sevenn")
    from hopnet.potentials import load_potential

    pot = load_potential("sevennet")
    path = MigrationPath.from_sites(lif, "Li", *hop)
    from hopnet.neb import _to_atoms

    e, f = pot.evaluate([_to_atoms(path.initial()), _to_atoms(path.final())])
    assert e.shape == (2,) and np.isfinite(e).all() and f[0].shape == (15, 3)
    assert e[0] == pytest.approx(e[1], abs=2e-3)  # the two ends of a symmetric hop
    r = run_neb(path, NebConfig(steps=0, relax=False, interpolation="linear", potential="sevennet"))
    assert r.potential.startswith("sevenn") and np.isfinite(r.barrier)
