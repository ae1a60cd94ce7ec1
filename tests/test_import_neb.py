"""``hopnet import-neb`` / :mod:`hopnet.importing`: NEB runs written by ASE and in the VASP NEB folder
layout become band entries that the loader, ``evaluate`` and ``train`` read; bad runs are refused
with one line and nothing written.

The NEBs are real: climbing-image NEBs of a vacancy hop in fcc metals with ASE's EMT potential
(2x2x2 cubic supercell, 31 atoms, 5 images; well under a second each)."""

from __future__ import annotations

import json
import os
import re
import shlex
from pathlib import Path

import ase.io
import numpy as np
import pytest

from hopnet.cli import main
from hopnet.importing import HOST_TOLERANCE, import_neb, outcar_energy, read_neb, write_dataset

ROOT = Path(__file__).resolve().parents[1]
METALS = {"Cu": 3.61, "Al": 4.05, "Ag": 4.09, "Ni": 3.52}


def _example_module():
    """examples/make_neb_example.py (the EMT vacancy-hop NEB the README's example file comes from)."""
    import importlib.util

    spec = importlib.util.spec_from_file_location("make_neb_example", ROOT / "examples" / "make_neb_example.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def emt_vacancy_neb(metal: str, a0: float, trajectory: str | None = None) -> list:
    """Images (with energies) of a climbing-image NEB of the nearest-neighbour hop into a vacancy."""
    return _example_module().vacancy_neb(metal, a0, trajectory)


def same_sites(a, b, atol=1e-6) -> bool:
    """Fractional positions ``a`` and ``b`` agree modulo lattice translations."""
    d = np.asarray(a, float) - np.asarray(b, float)
    return bool(np.allclose(d - np.round(d), 0.0, atol=atol))


def energies(images) -> np.ndarray:
    return np.array([im.get_potential_energy() for im in images])


@pytest.fixture(scope="module")
def nebs(tmp_path_factory) -> dict:
    """metal -> (extxyz file, images); Cu also as an optimiser trajectory of the whole run."""
    folder = tmp_path_factory.mktemp("nebs")
    out = {}
    for metal, a0 in METALS.items():
        traj = str(folder / f"{metal}_run.traj") if metal == "Cu" else None
        images = emt_vacancy_neb(metal, a0, trajectory=traj)
        path = folder / f"{metal}.extxyz"
        ase.io.write(path, images)
        out[metal] = (path, images)
    return out


# --------------------------------------------------------------------------- OUTCAR
def outcar_text(energy: float) -> str:
    """The lines of a VASP OUTCAR around an ionic step's energy (two steps: the last one counts),
    with the header lines pymatgen's Outcar parser insists on."""
    def step(e: float) -> str:
        return ("\n  FREE ENERGIE OF THE ION-ELECTRON SYSTEM (eV)\n"
                "  ---------------------------------------------------\n"
                f"  free  energy   TOTEN  =     {e - 0.0123:16.8f} eV\n\n"
                f"  energy  without entropy=     {e + 0.0061:16.8f}  energy(sigma->0) =     {e:16.8f}\n\n")
    return (" vasp.6.3.0 18Jan22 (build Feb 09 2022 12:00:00) complex\n\n"
            "   total plane-waves  NPLWV =   32768\n"
            "   IBRION =      3    ionic relax: 0-MD 1-quasi-New 2-CG\n"
            "   k-points           NKPTS =      1   k-points in BZ     NKDIM =      1"
            "   number of bands    NBANDS=     64\n"
            + "-" * 104 + "\n" + step(energy + 0.5) + step(energy))


def test_outcar_energy_is_the_last_sigma0_energy_as_pymatgen_reads_it(tmp_path):
    from pymatgen.io.vasp.outputs import Outcar

    p = tmp_path / "OUTCAR"
    p.write_text(outcar_text(-110.25))
    assert outcar_energy(p) == pytest.approx(-110.25, abs=1e-8)
    assert outcar_energy(p) == pytest.approx(Outcar(str(p)).final_energy, abs=1e-8)
    p.write_text("  free  energy   TOTEN  =      -12.5 eV\n")  # no sigma->0 line: TOTEN
    assert outcar_energy(p) == -12.5
    p.write_text("  energy  without entropy=     ***************  energy(sigma->0) =     ***************\n")
    assert np.isnan(outcar_energy(p))


def write_vasp_neb(folder: Path, images, end_outcars: bool = False, inner_poscar=None) -> Path:
    """``images`` in the VASP NEB layout: 00..NN, POSCAR in the end folders, CONTCAR and OUTCAR in
    the inner ones (plus a POSCAR of ``inner_poscar``, the starting band, when given)."""
    n = len(images)
    for k, im in enumerate(images):
        d = folder / f"{k:02d}"
        d.mkdir(parents=True)
        end = k in (0, n - 1)
        ase.io.write(d / ("POSCAR" if end else "CONTCAR"), im, format="vasp", direct=True)
        if not end and inner_poscar is not None:
            ase.io.write(d / "POSCAR", inner_poscar[k], format="vasp", direct=True)
        if not end or end_outcars:
            (d / "OUTCAR").write_text(outcar_text(im.get_potential_energy()))
    return folder


# --------------------------------------------------------------------------- reading and the band
def test_extxyz_band_becomes_a_data_set_band(nebs):
    from hopnet.paths import as_path

    path, images = nebs["Cu"]
    e = energies(images)
    (rec,) = import_neb(path, "Cu", xc="EMT", source="ASE EMT", cls="FCC")
    assert rec["target"] == pytest.approx(e.max() - e[0], abs=1e-9)
    assert rec["reverse_barrier"] == pytest.approx(e.max() - e[-1], abs=1e-9)
    assert rec["target"] > 0.5 and rec["n_source_images"] == 5 and rec["energies"] == pytest.approx(e.tolist())
    assert (rec["sys_name"], rec["xc"], rec["source"], rec["class"]) == ("Cu", "EMT", "ASE EMT", "FCC")
    assert rec["provenance"]["files"] == {str(path): rec["provenance"]["files"][str(path)]}
    assert len(rec["provenance"]["files"][str(path)]) == 64 and rec["provenance"]["hopnet_version"]
    atoms = rec["atoms"]
    assert atoms["elements"] == ["Cu"] * 35 and len(atoms["coords"]) == 5 + 30
    # the mobile atom: the one Cu that moves; the host: the initial image without it
    moved = np.linalg.norm(images[-1].positions - images[0].positions, axis=1)
    m = int(np.argmax(moved))
    cell = images[0].cell.array
    frac = np.array(atoms["coords"])
    host0 = np.delete(images[0].get_scaled_positions(wrap=False), m, axis=0)
    assert np.allclose(frac[5:], host0, atol=1e-9)
    ends = np.array([images[0].positions[m], images[-1].positions[m]])
    assert same_sites(frac[[0, 4]], np.linalg.solve(cell.T, ends.T).T)
    path_ = as_path(rec)  # what every model reads: straight, equally spaced images
    hop = np.linalg.solve(cell.T, ends[1] - ends[0])
    hop = (hop - np.round(hop)) @ cell  # this hop crosses the cell boundary: minimum image
    assert path_.ion == "Cu" and path_.hop_length == pytest.approx(np.linalg.norm(hop), abs=1e-6)
    assert path_.hop_length < 3
    assert rec["hop_length"] == pytest.approx(path_.hop_length)
    # the NEB's own path, resampled at equal fractions of its length, from end to end
    curve = np.array(rec["path_frac"])
    assert curve.shape == (5, 3) and np.allclose(curve[[0, -1]], frac[[0, 4]], atol=1e-9)
    assert rec["path_length"] >= rec["hop_length"] - 1e-9


def test_a_traj_and_an_optimiser_trajectory_give_the_same_band(nebs, tmp_path):
    path, images = nebs["Cu"]
    ase.io.write(tmp_path / "band.traj", images)
    run = path.with_name("Cu_run.traj")
    assert len(ase.io.read(run, ":")) > 5  # every step of the run, 5 images each
    want = import_neb(path)[0]
    for src, kw in ((tmp_path / "band.traj", {}), (run, {}), (run, {"images": 5})):
        got = import_neb(src, **kw)[0]
        assert got["target"] == pytest.approx(want["target"], abs=1e-9)
        assert same_sites(got["atoms"]["coords"], want["atoms"]["coords"])
        assert got["n_source_images"] == 5


def test_a_hop_across_the_cell_boundary_is_taken_by_minimum_image(nebs, tmp_path):
    path, images = nebs["Cu"]
    m = int(np.argmax(np.linalg.norm(images[-1].positions - images[0].positions, axis=1)))
    shift = -(images[0].positions[m] + images[-1].positions[m]) / 2  # the hop's midpoint to the corner
    moved = []
    for im in images:
        c = im.copy()
        c.positions += shift
        c.wrap()
        c.calc = im.calc
        moved.append(c)
    ase.io.write(tmp_path / "wrapped.extxyz", moved)
    got = import_neb(tmp_path / "wrapped.extxyz")[0]
    want = import_neb(path)[0]
    assert got["hop_length"] == pytest.approx(want["hop_length"], abs=1e-6) and got["hop_length"] < 3
    assert got["path_length"] == pytest.approx(want["path_length"], abs=1e-6)
    assert got["target"] == pytest.approx(want["target"], abs=1e-9)


def test_vasp_folder_contcar_over_poscar_and_end_energies(nebs, tmp_path):
    path, images = nebs["Cu"]
    start = [im.copy() for im in images]  # a different (straight-line) starting band as inner POSCARs
    for k, im in enumerate(start):
        im.positions = images[0].positions + k / 4 * (images[-1].positions - images[0].positions)
    e = energies(images)
    folder = write_vasp_neb(tmp_path / "neb", images, inner_poscar=start)
    with pytest.raises(Exception, match=r"missing energy of image 00"):
        import_neb(folder)
    (rec,) = import_neb(folder, "Cu", end_energies=(e[0], e[-1]))
    want = import_neb(path)[0]
    assert rec["target"] == pytest.approx(e.max() - e[0], abs=1e-6)
    assert same_sites(rec["path_frac"], want["path_frac"])  # the CONTCARs, not the POSCARs
    assert rec["sys_name"] == "neb" and rec["n_source_images"] == 5
    assert any(f.endswith("02/CONTCAR") for f in rec["provenance"]["files"])
    assert not any(f.endswith("02/POSCAR") for f in rec["provenance"]["files"])
    # OUTCARs in the end folders (e.g. copied from the end-point relaxations) are read too
    both = write_vasp_neb(tmp_path / "neb2", images, end_outcars=True)
    assert read_neb(both).energies == pytest.approx(e, abs=1e-6)


# --------------------------------------------------------------------------- the file it writes
def test_the_file_loads_evaluates_and_trains(nebs, tmp_path, capsys):
    from hopnet.datasets import load

    out = tmp_path / "mine.json.gz"
    rc = main(["import-neb", *(str(p) for p, _ in nebs.values()), "--xc", "EMT", "--source", "ASE EMT",
               "--class", "FCC-METAL", "--out", str(out)])
    printed = capsys.readouterr().out
    assert rc == 0 and f"wrote 4 path(s) to {out}" in printed
    assert out.read_bytes()[:2] == b"\x1f\x8b"
    assert load(str(out)).ids == load("mine", path=out).ids
    ds = load("mine", path=out)
    assert len(ds) == 4 and set(ds.ids) == set(METALS)
    for entry in ds:
        e = energies(nebs[entry.id][1])
        assert entry.target == pytest.approx(e.max() - e[0], abs=1e-9)
        assert entry.meta["ion"] == entry.id and entry.meta["compound"] == f"{entry.id}:{entry.id}"
        assert (entry.meta["xc"], entry.meta["class"], entry.meta["source"]) == ("EMT", "FCC-METAL", "ASE EMT")
    # evaluate reads it like the published file (the EMT metals are outside the model's domain:
    # the point is that the file is read and scored, not the score)
    report = tmp_path / "report.json"
    assert main(["evaluate", "--model", "default", "--data", str(out), "--output", str(report)]) == 0
    assert json.loads(report.read_text())["n"] == 4
    # and it is a training file
    assert main(["train", "--model", "classical", "--data", str(out), "--out", str(tmp_path / "m")]) == 0
    assert (tmp_path / "m" / "metadata.json").is_file()
    # fine-tune the shipped default on them (trees refitted on the union, these paths weighted)
    # and evaluate: the paths it was fine-tuned on come out closer than before (in-sample: the
    # point is that the user's data entered the model, not its quality)
    assert main(["finetune", "--from", "default", "--data", str(out), "--user-weight", "20",
                 "--out", str(tmp_path / "mine")]) == 0
    meta = json.loads((tmp_path / "mine" / "metadata.json").read_text())
    assert meta["finetune_data"]["size"] == 4 and meta["finetune_data"]["data_hash"] == ds.sha256
    assert meta["finetune"]["n_user"] == 4 and meta["finetune"]["n_base"] == 559
    mine = tmp_path / "report-mine.json"
    assert main(["evaluate", "--model", str(tmp_path / "mine"), "--data", str(out), "--output", str(mine)]) == 0
    before, after = json.loads(report.read_text()), json.loads(mine.read_text())
    assert after["mae"] < before["mae"] and after["in_training_set"]["n"] == 4


def test_write_dataset_plain_json_and_unique_names(nebs, tmp_path):
    from hopnet.datasets import load

    path, _ = nebs["Ag"]
    recs = import_neb([path, path])
    assert [r["sys_name"] for r in recs] == ["Ag", "Ag_2"]
    out = write_dataset(recs, tmp_path / "sub" / "ag.json")
    assert json.loads(out.read_text())[1]["sys_name"] == "Ag_2"
    ds = load(str(out))
    assert ds.ids == ["Ag", "Ag_2"]
    assert write_dataset(list(ds), tmp_path / "again.json").is_file()  # Entry objects too


# --------------------------------------------------------------------------- refusals
def _one_error(capsys) -> str:
    err = [ln for ln in capsys.readouterr().err.splitlines() if ln.strip()]
    assert len(err) == 1 and err[0].startswith("hopnet: error: "), err
    return err[0]


def _bad_sources(tmp: Path, images) -> dict[str, tuple[list[str], str]]:
    """case -> (CLI arguments, what the error line must say)."""
    def write(name, ims):
        ase.io.write(tmp / name, ims)
        return str(tmp / name)

    def copy(ims):
        out = []
        for im in ims:
            c = im.copy()
            c.calc = im.calc
            out.append(c)
        return out

    m = int(np.argmax(np.linalg.norm(images[-1].positions - images[0].positions, axis=1)))
    other = (m + 7) % len(images[0])
    host = copy(images)
    host[2].positions[other] += [0.8, 0.0, 0.0]  # a host atom off its site in one image
    two = copy(images)
    for k, im in enumerate(two):
        im.positions[other] += [0.5 * k, 0.0, 0.0]  # a second atom hops along
    species = copy(images)
    species[3].symbols[other] = "Ag"
    cell = copy(images)
    cell[1].set_cell(cell[1].cell.array * 1.01, scale_atoms=False)
    nan_dir = write_vasp_neb(tmp / "nan_neb", images, end_outcars=True)
    (nan_dir / "02" / "OUTCAR").write_text(
        "  energy  without entropy=     ***************  energy(sigma->0) =     ***************\n")
    gap = write_vasp_neb(tmp / "gap_neb", images, end_outcars=True)
    (gap / "02" / "CONTCAR").rename(gap / "02" / "CONTCAR.old")
    (tmp / "results.jsonl").write_text('{"id": "x", "barrier": 0.3}\n')
    return {
        "host": ([write("host.extxyz", host)], "images do not share a host: atom"),
        "two ions": ([write("two.extxyz", two)], "more than one atom moves"),
        "species": ([write("species.extxyz", species)],
                    "images do not share a host: image 3 has another species order"),
        "cell": ([write("cell.extxyz", cell)], "images do not share a host: image 1 has another cell"),
        "two images": ([write("short.extxyz", images[::4])], "at least 3 images"),
        "nan energy": ([str(nan_dir)], "energy of image 02 is not a finite number"),
        "no end energy": ([str(write_vasp_neb(tmp / "plain_neb", images))], "missing energy of image 00"),
        "no structure": ([str(gap)], "02: no CONTCAR or POSCAR"),
        "wrong ion": ([write("ok.extxyz", images), "--ion", "Li"], "the atom that moves is Cu"),
        "hopnet neb output": ([str(tmp / "results.jsonl")], "no image positions"),
        "missing": ([str(tmp / "nowhere")], "no such file or folder"),
        "not a neb folder": ([str(tmp / "plain_neb" / "00")], "not a VASP NEB folder"),
    }


@pytest.fixture(scope="module")
def bad(nebs, tmp_path_factory):
    return _bad_sources(tmp_path_factory.mktemp("bad"), nebs["Cu"][1])


CASES = ["host", "two ions", "species", "cell", "two images", "nan energy", "no end energy", "no structure",
         "wrong ion", "hopnet neb output", "missing", "not a neb folder"]


@pytest.mark.parametrize("case", CASES)
def test_cli_refuses_with_one_line_and_writes_nothing(case, bad, tmp_path, capsys):
    args, says = bad[case]
    out = tmp_path / "out.json"
    rc = main(["import-neb", *args, "--out", str(out)])
    line = _one_error(capsys)
    assert rc == 2 and says in line, line
    assert not out.exists() and list(tmp_path.iterdir()) == []


def test_cli_refuses_an_output_folder_and_a_bad_suffix(nebs, tmp_path, capsys):
    src = str(nebs["Cu"][0])
    assert main(["import-neb", src, "--out", str(tmp_path)]) == 2
    assert "is a folder" in _one_error(capsys)
    assert main(["import-neb", src, "--out", str(tmp_path / "x.csv")]) == 2
    assert ".json or .json.gz" in _one_error(capsys)
    assert list(tmp_path.iterdir()) == []


def test_cli_options_that_belong_to_one_source(nebs, tmp_path, capsys):
    two = [str(nebs["Cu"][0]), str(nebs["Ag"][0])]
    out = str(tmp_path / "o.json")
    assert main(["import-neb", *two, "--end-energies", "1", "2", "--out", out]) == 2
    assert "end energies belong to one NEB" in _one_error(capsys)
    assert main(["import-neb", *two, "--name", "x", "--out", out]) == 2
    assert "--name applies to one SOURCE" in _one_error(capsys)
    assert list(tmp_path.iterdir()) == []


def test_host_tolerance_is_a_setting(bad):
    args, _ = bad["host"]
    assert import_neb(args[0], host_tol=1.0)[0]["target"] > 0  # 0.8 Å off: within 1 Å
    assert HOST_TOLERANCE == 0.5


# --------------------------------------------------------------------------- the docs run
def test_docs_commands_run_as_written(tmp_path, monkeypatch, capsys):
    """The blocks of docs/import-neb.md marked ``<!-- test: run -->`` run in order: Python blocks
    exec-ed, bash lines ``VAR=value`` set a variable and ``hopnet ...`` lines run the CLI."""
    text = (ROOT / "docs" / "import-neb.md").read_text()
    blocks = re.findall(r"<!-- test: run -->\s*\n```(\w+)\n(.*?)```", text, flags=re.DOTALL)
    assert [lang for lang, _ in blocks] == ["python", "bash", "bash"]
    (tmp_path / "examples").symlink_to(ROOT / "examples")
    if os.environ.get("HOPNET_DATA_DIR"):  # CI gives it relative to the checkout
        monkeypatch.setenv("HOPNET_DATA_DIR", str(Path(os.environ["HOPNET_DATA_DIR"]).resolve()))
    monkeypatch.chdir(tmp_path)
    env: dict[str, str] = {}
    ran = []
    for lang, code in blocks:
        if lang == "python":
            exec(compile(code, "docs/import-neb.md", "exec"), {"__name__": "__docs__"})  # noqa: S102
            continue
        for raw in code.splitlines():
            words = shlex.split(raw, comments=True)
            if not words:
                continue
            if len(words) == 1 and re.fullmatch(r"\w+=\S+", words[0]):
                key, value = words[0].split("=", 1)
                env[key] = value
                continue
            assert words[0] == "hopnet", raw
            argv = [re.sub(r"\$(\w+)", lambda m: env[m.group(1)], w) for w in words[1:]]
            assert main(argv) == 0, f"{raw}\n{capsys.readouterr().err}"
            ran.append(argv[0])
    assert ran == ["import-neb", "evaluate", "train", "finetune", "evaluate", "screen"]
