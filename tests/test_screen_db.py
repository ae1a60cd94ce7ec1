"""hopnet screen over a database (issue #23): structure sources and their ids, --ion auto, the
Parquet table, resume after Ctrl-C and after a kill, worker processes and Ray (a worker killed
mid-run), and one error line for bad flags."""

from __future__ import annotations

import csv
import gzip
import json
import os
import sys
from pathlib import Path

import numpy as np
import pytest
from pymatgen.core import Lattice, Structure

import hopnet.inference as hp
from hopnet.cli import main
from hopnet.database import Entry, open_inputs
from hopnet.infra.errors import HopnetError
from hopnet.models.folder import Prediction
from hopnet.screen_runner import Job, parse_ions, run, screen_entry
from hopnet.screen_table import COLUMNS
from hopnet.structures import to_jarvis

pa = pytest.importorskip("pyarrow")
pq = pytest.importorskip("pyarrow.parquet")


class LengthModel:
    """E_m = 0.1 eV/Å × hop length, σ = 0.01 eV (picklable: worker processes import this module)."""

    name = "length"
    metadata: dict = {}

    def predict_paths(self, paths, batch_size=None):
        lengths = np.array([p.hop_length for p in paths])
        return Prediction(mean=0.1 * lengths, std=np.full(len(paths), 0.01))


class CrashingModel(LengthModel):
    """Kills its process (``os._exit``) on a hop of ``length`` Å: the first time only when
    ``once`` (a marker file in ``folder`` remembers it), else every time."""

    def __init__(self, folder: str, length: float, once: bool = True) -> None:
        self.folder, self.length, self.once = folder, length, once

    def predict_paths(self, paths, batch_size=None):
        marker = Path(self.folder) / f"crashed-{self.length}"
        if any(abs(p.hop_length - self.length) < 1e-3 for p in paths) and not (self.once and marker.exists()):
            marker.touch()
            os._exit(3)
        return super().predict_paths(paths, batch_size)


def cscl(a: float, b: float, c: float, ion: str = "Li", anion: str = "Cl") -> Structure:
    return Structure(Lattice.orthorhombic(a, b, c), [ion, anion], [[0, 0, 0], [0.5, 0.5, 0.5]])


def records() -> list[dict]:
    """Four entries in the JARVIS layout: a Li cell, a Na cell, one with no mobile ion, one broken."""
    return [{"jid": "JVASP-1", "target": 0.1, "atoms": to_jarvis(cscl(3.5, 3.5, 3.5))},
            {"jid": "JVASP-2", "target": 0.2, "atoms": to_jarvis(cscl(3.0, 3.5, 4.0, "Na"))},
            {"jid": "JVASP-3", "target": 0.3, "atoms": to_jarvis(cscl(3.2, 3.2, 3.2, "Fe", "O"))},
            {"jid": "JVASP-4", "target": 0.4, "atoms": {"lattice_mat": "broken", "coords": [], "elements": []}}]


def li_records(n: int) -> list[dict]:
    """``n`` Li cells with distinct lattices (hop lengths 3.0 + 0.05 k Å)."""
    return [{"jid": f"li-{k}", "atoms": to_jarvis(cscl(3.0 + 0.05 * k, 3.6, 3.9))} for k in range(n)]


def write_list(path: Path, recs: list[dict]) -> Path:
    text = "".join(json.dumps(r) + "\n" for r in recs) if ".jsonl" in path.name else json.dumps(recs)
    if path.name.endswith(".gz"):
        with gzip.open(path, "wt") as fh:
            fh.write(text)
    else:
        path.write_text(text)
    return path


@pytest.fixture
def fake_model(monkeypatch):
    model = LengthModel()
    monkeypatch.setattr(hp, "get_model", lambda m="default": model)
    return model


def table_rows(path: Path) -> list[dict]:
    return pq.read_table(path).to_pylist()


def _one_error(capsys) -> str:
    err = [ln for ln in capsys.readouterr().err.splitlines() if ln.strip()]
    assert len(err) == 1 and err[0].startswith("hopnet: error: "), err
    return err[0]


# --------------------------------------------------------------------------- sources
@pytest.mark.parametrize("name", ["set.json", "set.json.gz", "set.jsonl", "set.jsonl.gz"])
def test_structure_lists_give_jid_ids(tmp_path, name):
    entries = open_inputs([write_list(tmp_path / name, records())])
    assert [e.id for e in entries] == ["JVASP-1", "JVASP-2", "JVASP-3", "JVASP-4"]
    assert entries[0].kind == "dict" and entries[0].load()["elements"] == ["Li", "Cl"]
    assert [e.id for e in open_inputs([tmp_path / name], limit=2)] == ["JVASP-1", "JVASP-2"]


def test_materials_project_layout_missing_ids_and_clashes(tmp_path):
    mp = [{"material_id": "mp-22", "structure": cscl(3.5, 3.5, 3.5).as_dict()},
          {"structure": cscl(3.0, 3.5, 4.0).as_dict()}, to_jarvis(cscl(3.1, 3.5, 4.0))]
    a = write_list(tmp_path / "a.json", mp)
    b = write_list(tmp_path / "b.json", [{"material_id": "mp-22", "structure": cscl(3.6, 3.6, 3.6).as_dict()}])
    entries = open_inputs([str(a), str(b), str(a)])  # a named twice: read once
    assert [e.id for e in entries] == ["mp-22", "a.json#1", "a.json#2", "b.json:mp-22"]
    # the same inputs give the same ids
    assert [e.id for e in open_inputs([str(a), str(b)])] == [e.id for e in entries]


def test_files_folders_globs_single_json_and_ase_db(tmp_path):
    import ase.db

    from hopnet.structures import to_ase

    folder = tmp_path / "cifs"
    folder.mkdir()
    for k, a in enumerate((3.5, 3.6)):
        cscl(a, a, a).to(filename=str(folder / f"s{k}.cif"))
    one = tmp_path / "one.json"
    one.write_text(json.dumps(cscl(3.0, 3.5, 4.0).as_dict()))  # one structure: a structure file
    db = tmp_path / "set.db"
    with ase.db.connect(str(db)) as con:
        con.write(to_ase(cscl(3.5, 3.5, 3.5)), jid="JVASP-9")
        con.write(to_ase(cscl(3.0, 3.5, 4.0)))
    entries = open_inputs([str(folder), str(tmp_path / "cifs" / "*.cif"), str(one), str(db)])
    assert [e.id for e in entries] == [str(folder / "s0.cif"), str(folder / "s1.cif"), str(one), "JVASP-9", "set.db:2"]
    assert entries[3].load().composition.reduced_formula == "LiCl"
    shipped = entries[0].portable()  # a file travels as bytes and reads the same
    assert shipped.kind == "bytes" and shipped.load() == Structure.from_file(folder / "s0.cif")
    assert entries[4].portable().kind == "dict"
    with pytest.raises(HopnetError, match="no such file"):
        open_inputs([str(tmp_path / "missing.db")])
    (tmp_path / "bad.json").write_text("[{")
    with pytest.raises(HopnetError, match="not a readable JSON structure list"):
        open_inputs([str(tmp_path / "bad.json")])


def test_ion_specs():
    assert parse_ions("Li") == (True, ("Li",))
    assert parse_ions("Li, Na,Li") == (False, ("Li", "Na"))
    assert parse_ions("auto")[0] is False and "Zn" in parse_ions("auto")[1]
    for bad in ("", "Xx", "Li,Qq"):
        with pytest.raises(HopnetError, match="--ion must be"):
            parse_ions(bad)


# --------------------------------------------------------------------------- outcomes
def test_screen_entry_auto_ion_skips_and_records_failures():
    job = Job("auto", {"model": LengthModel(), "max_hop": 4.1})
    recs = records()
    li, na, none, broken = (screen_entry(Entry(r["jid"], "dict", r["atoms"]), job) for r in recs)
    assert [r.ion for r in li.results] == ["Li"] and not li.failures and li.skipped is None
    assert [r.ion for r in na.results] == ["Na"] and na.formula == "NaCl"
    assert none.skipped and "no mobile ion" in none.skipped and "FeO" in none.skipped and not none.failures
    assert broken.failures and broken.failures[0][1] == "StructureError" and not broken.results
    assert li.seconds > 0 and li.worker.endswith(f":{os.getpid()}") and li.peak_rss_mb > 0
    assert li.results[0].structure is None  # results travel light unless plots need them
    # one fixed ion: a structure without it is a failure, as in hopnet.screen
    fixed = screen_entry(Entry("x", "dict", recs[1]["atoms"]), Job("Li", {"model": LengthModel(), "max_hop": 4.1}))
    assert fixed.failures == [("Li", "PathError", fixed.failures[0][2])] and "Li is absent" in fixed.failures[0][2]


# --------------------------------------------------------------------------- CLI
def test_cli_database_auto_ion_parquet_csv_json(tmp_path, capsys, fake_model):
    src = write_list(tmp_path / "set.json.gz", records())
    out = {k: tmp_path / f"r.{k}" for k in ("parquet", "csv", "json")}
    rc = main(["screen", str(src), "--ion", "auto", "--max-hop", "4.1", "--quiet",
               *(x for k, p in out.items() for x in (f"--{k}", str(p)))])
    assert rc == 2  # JVASP-4 is broken
    text = capsys.readouterr()
    assert "screened 4 structure(s): 2 ok, 1 failed, 1 skipped" in text.out and "distinct hop" not in text.out
    rows = table_rows(out["parquet"])
    assert [r["id"] for r in rows] == ["JVASP-1"] + ["JVASP-2"] * 3 + ["JVASP-3", "JVASP-4"]
    assert set(rows[0]) == set(COLUMNS)
    li = rows[0]
    assert li["ion"] == "Li" and li["status"] == "ok" and li["hop"] == 0 and li["multiplicity"] == 3
    assert li["barrier_ev"] == pytest.approx(0.35) and li["percolation_3d_ev"] == pytest.approx(0.35)
    assert li["dimensionality"] == 3 and len(li["image"]) == 3 and li["elapsed_s"] > 0
    na = [r for r in rows if r["id"] == "JVASP-2"]
    assert [r["percolation_1d_ev"] for r in na] == pytest.approx([0.30] * 3)
    assert rows[4]["status"] == "skipped" and "no mobile ion" in rows[4]["error"] and rows[4]["hop"] is None
    assert rows[5]["status"] == "failed" and rows[5]["cause"] == "StructureError"
    assert not list(tmp_path.glob(".r.parquet.parts"))
    csv_rows = list(csv.DictReader(out["csv"].open()))
    assert [r["source"] for r in csv_rows].count("JVASP-2") == 3
    assert any(r["error"].startswith("skipped: no mobile ion") for r in csv_rows)
    doc = json.loads(out["json"].read_text())
    assert [r["source"] for r in doc["results"]] == ["JVASP-1", "JVASP-2"] and doc["complete"]
    assert doc["skipped"][0]["source"] == "JVASP-3" and doc["failures"][0]["cause"] == "StructureError"


def test_cli_interrupt_and_resume_parquet_exactly_once(tmp_path, capsys, fake_model, monkeypatch):
    import hopnet.screening as hs

    src = write_list(tmp_path / "li.jsonl", li_records(5))
    out_pq, out_csv = tmp_path / "h.parquet", tmp_path / "h.csv"
    real, calls = hs.screen, []

    def interrupted(*a, **kw):
        calls.append(kw["source"])
        if len(calls) == 3:
            raise KeyboardInterrupt
        return real(*a, **kw)

    monkeypatch.setattr(hs, "screen", interrupted)
    args = ["screen", str(src), "--ion", "Li", "--max-hop", "4.0", "--parquet", str(out_pq), "--csv", str(out_csv), "-q"]
    assert main(args) == 130
    assert "interrupted: 2 finished structure(s) kept" in capsys.readouterr().err
    # the final file is complete and consistent for what finished; no parts left
    assert sorted({r["id"] for r in table_rows(out_pq)}) == ["li-0", "li-1"]
    assert not (tmp_path / ".h.parquet.parts").exists()
    monkeypatch.setattr(hs, "screen", real)
    assert main(args + ["--resume"]) == 0
    assert "resuming: 2 of 5 structure(s) already done" in capsys.readouterr().out
    rows = table_rows(out_pq)
    ids = [r["id"] for r in rows]
    assert sorted(set(ids)) == [f"li-{k}" for k in range(5)]
    assert ids == sorted(ids, key=lambda i: int(i.split("-")[1]))  # input order
    per = {i: ids.count(i) for i in set(ids)}
    assert len(set(per.values())) == 1  # every structure's hops exactly once
    assert sorted(r["source"] for r in csv.DictReader(out_csv.open())) == sorted(ids)
    assert main(args + ["--resume"]) == 0 and table_rows(out_pq) == rows  # nothing more to do


def test_cli_resume_after_a_kill_mends_each_output(tmp_path, capsys, fake_model, monkeypatch):
    """A SIGKILL leaves Parquet parts unconsolidated, and the CSV ahead of the Parquet (its
    newest part lost): --resume writes each structure once into each output."""
    import hopnet.screen_table as st

    src = write_list(tmp_path / "li.json", li_records(4))
    out_pq, out_csv = tmp_path / "h.parquet", tmp_path / "h.csv"
    args = ["screen", str(src), "--ion", "Li", "--max-hop", "4.0", "--parquet", str(out_pq), "--csv", str(out_csv), "-q"]
    monkeypatch.setattr(st.ParquetTable, "consolidate", lambda self, order=None: 0)  # killed before it
    assert main(args + ["--limit", "3"]) == 0
    parts = sorted((tmp_path / ".h.parquet.parts").glob("part-*.parquet"))
    assert len(parts) == 3 and not out_pq.exists()
    parts[-1].unlink()  # li-2 reached the CSV but not the Parquet
    monkeypatch.undo()
    monkeypatch.setattr(hp, "get_model", lambda m="default": fake_model)
    assert main(args + ["--resume"]) == 0
    assert "resuming: 2 of 4 structure(s) already done" in capsys.readouterr().out
    ids = [r["id"] for r in table_rows(out_pq)]
    csv_ids = [r["source"] for r in csv.DictReader(out_csv.open())]
    for got in (ids, csv_ids):
        assert sorted(set(got)) == [f"li-{k}" for k in range(4)]
        assert len({got.count(i) for i in set(got)}) == 1
    assert not (tmp_path / ".h.parquet.parts").exists()


@pytest.mark.parametrize("flags, words", [
    (["--workers", "0"], "--workers"),
    (["--ion", "Xx"], "--ion must be"),
    (["--ion", "auto", "--hop", "0", "1"], "need one fixed --ion"),
    (["--limit", "0"], "--limit"),
    (["--batch", "0"], "--batch"),
    (["--ray", "10.0.0.1:6379", "--workers", "2"], "--workers is for this machine"),
])
def test_cli_bad_flags_one_line(tmp_path, capsys, flags, words):
    src = write_list(tmp_path / "set.json", records())
    argv = ["screen", str(src), "--ion", "Li", *flags]
    rc = main(argv)
    line = _one_error(capsys)
    assert rc == 2 and words in line


def test_cli_parquet_folder_and_missing_ray(tmp_path, capsys, monkeypatch):
    src = write_list(tmp_path / "set.json", records())
    rc = main(["screen", str(src), "--ion", "Li", "--parquet", str(tmp_path)])
    assert rc == 2 and "--parquet" in _one_error(capsys) and sorted(p.name for p in tmp_path.iterdir()) == ["set.json"]
    monkeypatch.setitem(sys.modules, "ray", None)  # as if Ray were not installed
    rc = main(["screen", str(src), "--ion", "Li", "--ray"])
    line = _one_error(capsys)
    assert rc == 2 and "pip install 'hopnet[ray]'" in line


# --------------------------------------------------------------------------- worker processes
def test_worker_pool_streams_each_structure_once(tmp_path):
    entries = [Entry(r["jid"], "dict", r["atoms"]) for r in li_records(6)]
    job = Job("Li", {"model": LengthModel(), "max_hop": 4.0})
    serial = {o.id: o for batch in run(entries, job) for o in batch}
    batches = list(run(entries, job, workers=2))
    got = [o for b in batches for o in b]
    assert sorted(o.id for o in got) == sorted(serial) and len(got) == 6
    assert len({o.worker for o in got}) <= 2 and all(o.worker.split(":")[1] != str(os.getpid()) for o in got)
    for o in got:
        assert not o.failures and [h.barrier for h in o.results[0].hops] == [h.barrier for h in serial[o.id].results[0].hops]
        assert o.peak_rss_mb > 0


def test_worker_killed_mid_run_is_replaced_and_a_killer_is_recorded(tmp_path):
    entries = [Entry(r["jid"], "dict", r["atoms"]) for r in li_records(6)]
    # li-2 (3.10 Å hops) kills its worker once: it is run again, alone, and finishes
    job = Job("Li", {"model": CrashingModel(str(tmp_path), 3.1), "max_hop": 4.0})
    got = [o for b in run(entries, job, workers=2) for o in b]
    assert sorted(o.id for o in got) == sorted(e.id for e in entries)
    assert not any(o.failures for o in got) and (tmp_path / "crashed-3.1").exists()
    # li-4 (3.20 Å) kills it every time: retried, then recorded; the others finish
    job = Job("Li", {"model": CrashingModel(str(tmp_path), 3.2, once=False), "max_hop": 4.0})
    got = [o for b in run(entries, job, workers=2, max_retries=1) for o in b]
    assert sorted(o.id for o in got) == sorted(e.id for e in entries)
    failed = [o for o in got if o.failures]
    assert [o.id for o in failed] == ["li-4"] and failed[0].failures[0][1] == "worker died"


def test_cli_two_workers_default_model(tmp_path, capsys):
    src = write_list(tmp_path / "li.json", li_records(4) + records()[2:3])
    out_pq = tmp_path / "w.parquet"
    rc = main(["screen", str(src), "--ion", "auto", "--max-hop", "4.0", "--workers", "2", "--parquet", str(out_pq), "-q"])
    assert rc == 0, capsys.readouterr().err
    rows = table_rows(out_pq)
    assert [r["id"] for r in rows if r["hop"] in (0, None)] == ["li-0", "li-1", "li-2", "li-3", "JVASP-3"]
    assert all(np.isfinite(r["barrier_ev"]) for r in rows if r["status"] == "ok")
    assert len({r["worker"] for r in rows}) <= 2


# --------------------------------------------------------------------------- Ray
@pytest.fixture(scope="module")
def local_ray():
    ray = pytest.importorskip("ray")
    here = str(Path(__file__).resolve().parent)
    path = os.pathsep.join([here, os.environ.get("PYTHONPATH", "")]).rstrip(os.pathsep)
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False, runtime_env={"env_vars": {"PYTHONPATH": path}})
    yield ray
    ray.shutdown()


def test_ray_worker_killed_mid_run_every_structure_once(tmp_path, local_ray):
    entries = [Entry(r["jid"], "dict", r["atoms"]) for r in li_records(5)]
    job = Job("Li", {"model": CrashingModel(str(tmp_path), 3.1), "max_hop": 4.0})
    got = [o for b in run(entries, job, ray="auto") for o in b]
    assert sorted(o.id for o in got) == sorted(e.id for e in entries)
    assert not any(o.failures for o in got) and (tmp_path / "crashed-3.1").exists()
    assert all(o.worker.split(":")[1] != str(os.getpid()) for o in got)
    assert local_ray.is_initialized()  # a Ray the caller started is left running
    # tasks of 2 structures; li-4 kills its worker every time: its task is split, li-4 recorded
    job = Job("Li", {"model": CrashingModel(str(tmp_path), 3.2, once=False), "max_hop": 4.0})
    got = [o for b in run(entries, job, ray="auto", batch=2, max_retries=1) for o in b]
    assert sorted(o.id for o in got) == sorted(e.id for e in entries)
    failed = [o for o in got if o.failures]
    assert [o.id for o in failed] == ["li-4"] and failed[0].failures[0][1] == "worker died"


def test_cli_ray_files_shipped_as_bytes(tmp_path, capsys, local_ray):
    folder = tmp_path / "cifs"
    folder.mkdir()
    for k in range(3):
        cscl(3.0 + 0.1 * k, 3.6, 3.9).to(filename=str(folder / f"s{k}.cif"))
    out_pq = tmp_path / "r.parquet"
    assert main(["screen", str(folder), "--ion", "Li", "--max-hop", "4.0", "--ray", "--parquet", str(out_pq), "-q"]) == 0
    rows = table_rows(out_pq)
    assert sorted({Path(r["id"]).name for r in rows}) == ["s0.cif", "s1.cif", "s2.cif"]
    assert all(r["status"] == "ok" and np.isfinite(r["barrier_ev"]) for r in rows)
