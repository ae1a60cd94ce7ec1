"""Screen the shared pre-training sets (issue #23): every structure that holds Li, Na, K, Mg, Ca or
Zn, deduplicated, with ``hopnet screen`` -- throughput with 1 and 2 worker processes and with Ray
on 2 local CPUs, the per-structure cost, peak memory per worker, failures by cause, the best
candidates per ion, and an estimate for 150,000 structures on a 100-node Ray cluster.

Steps (each resumable; the work folder keeps what is done):

1. **Select.** The seven ``pretrain/*.json.gz`` sets, entries holding one of ``--ions``;
   duplicates removed by structure: same reduced formula, atom count, volume per atom (0.1 Å^3)
   and sorted cell lengths (0.01 Å), then pymatgen's ``StructureMatcher`` inside each such group.
   Each kept structure's id is ``<set>:<jid>`` of its first occurrence (the jids of the sets are
   per-set numbers: the same jid is different materials in different sets). Written once, in a
   seeded random order (so the first N are a fair sample), to ``WORK/structures.json.gz`` (not
   in the repository: it copies the data).
2. **Rates.** The first ``--rate-sample`` structures screened ``--repeats`` times in each mode
   (``--workers 1``, ``--workers 2``, ``--ray local --workers 2``), each a fresh ``hopnet screen``
   process (end to end: start, model load, reading, screening, writing a Parquet table), one
   torch thread per worker.
3. **Full job.** ``hopnet screen WORK/structures.json.gz --ion Li,Na,K,Mg,Ca,Zn --resume
   --workers W --parquet WORK/screen.parquet`` (``--limit N``: the first N only): rerunning the
   script continues it.
4. **Record.** ``--record`` (JSON) and ``--figure`` (percolation barriers by ion and
   dimensionality), from the Parquet table.

Targets (reported, not asserted): median end-to-end >= 5 structures/s per core; 2 workers >=
1.8x one worker; peak memory per worker <= ``--max-worker-mb``.

    python benchmarks/screen_db.py                                  # the full job
    python benchmarks/screen_db.py --limit 30 --rate-sample 30 --repeats 1 --record /tmp/slice.json
"""

from __future__ import annotations

import argparse
import gzip
import json
import math
import os
import re
import statistics
import subprocess
import sys
import time
from collections import Counter, defaultdict
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SETS = ("fe", "bg", "gv", "ph", "dc", "pz", "ebg")
IONS = ("Li", "Na", "K", "Mg", "Ca", "Zn")
#: (formula, ion, expected): well-known fast conductors and well-known slow hosts
KNOWN = [("Li3N", "Li", "fast"), ("LiCoO2", "Li", "fast"), ("LiFePO4", "Li", "fast"), ("LiMn2O4", "Li", "fast"),
         ("Li10GeP2S12", "Li", "fast"), ("Li3PS4", "Li", "fast"), ("Li7La3Zr2O12", "Li", "fast"),
         ("LiTi2(PO4)3", "Li", "fast"), ("Li4Ti5O12", "Li", "fast"), ("Li6PS5Cl", "Li", "fast"),
         ("Na3PS4", "Na", "fast"), ("NaCoO2", "Na", "fast"), ("Na3Zr2Si2PO12", "Na", "fast"),
         ("NaAl11O17", "Na", "fast"), ("KAl11O17", "K", "fast"),
         ("Li2O", "Li", "slow"), ("MgO", "Mg", "slow"), ("MgAl2O4", "Mg", "slow"), ("CaO", "Ca", "slow"),
         ("CaTiO3", "Ca", "slow"), ("ZnO", "Zn", "slow"), ("ZnS", "Zn", "slow")]
MODES = {"1 worker": ["--workers", "1"], "2 workers": ["--workers", "2"],
         "ray 2 CPUs": ["--ray", "local", "--workers", "2", "--batch", "8"]}
#: tasks per second one Ray driver is assumed to schedule (order of magnitude, Ray's own figures)
RAY_TASKS_PER_S = 1000.0


# --------------------------------------------------------------------------- 1. select
def _coarse_key(s) -> tuple:
    abc = tuple(sorted(round(x, 2) for x in s.lattice.abc))
    return s.composition.reduced_formula, len(s), round(s.volume / len(s), 1), abc


def select(data: Path, ions: tuple[str, ...]) -> list[dict]:
    """The entries of the pre-training sets holding one of ``ions``, one per distinct structure."""
    from pymatgen.analysis.structure_matcher import StructureMatcher

    from hopnet.structures import from_jarvis

    groups: dict[tuple, list[tuple[str, dict, object]]] = defaultdict(list)
    for name in SETS:
        with gzip.open(data / "pretrain" / f"{name}.json.gz", "rt") as fh:
            for e in json.load(fh):
                if set(e["atoms"]["elements"]) & set(ions):
                    s = from_jarvis(e["atoms"])
                    groups[_coarse_key(s)].append((f"{name}:{e['jid']}", e["atoms"], s))
    matcher, out = StructureMatcher(), []
    for members in groups.values():
        if len(members) == 1:
            kinds = [[members[0]]]
        else:
            by_struct = {id(m[2]): m for m in members}
            kinds = [[by_struct[id(s)] for s in g] for g in matcher.group_structures([m[2] for m in members])]
        for kind in kinds:
            out.append({"jid": kind[0][0], "atoms": kind[0][1], "aliases": [k[0] for k in kind[1:]]})
    import random

    random.Random(0).shuffle(out)  # a seeded random order: the first N (--limit) are a fair sample
    return out


def structures_file(work: Path, data: Path, ions: tuple[str, ...]) -> tuple[Path, dict]:
    """``WORK/structures.json.gz`` (made once) and the selection's counts."""
    path, meta = work / "structures.json.gz", work / "structures.meta.json"
    if not (path.is_file() and meta.is_file()):
        t0 = time.perf_counter()
        chosen = select(data, ions)
        tmp = path.with_suffix(".tmp")
        with gzip.open(tmp, "wt") as fh:
            json.dump(chosen, fh)
        os.replace(tmp, path)
        meta.write_text(json.dumps({"ions": list(ions), "unique_structures": len(chosen),
                                    "duplicates_removed": sum(len(e["aliases"]) for e in chosen),
                                    "select_s": round(time.perf_counter() - t0, 1)}))
    return path, json.loads(meta.read_text())


# --------------------------------------------------------------------------- 2./3. runs
def screen_cli(structures: Path, out: Path, extra: list[str], limit: int | None, resume: bool) -> float:
    """One ``hopnet screen`` process; its wall time (s)."""
    argv = [sys.executable, "-m", "hopnet", "screen", str(structures), "--ion", ",".join(IONS), "--quiet",
            "--parquet", str(out), *extra, *(["--limit", str(limit)] if limit else []), *(["--resume"] if resume else [])]
    env = {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}
    t0 = time.perf_counter()
    proc = subprocess.run(argv, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    wall = time.perf_counter() - t0
    if proc.returncode not in (0, 2) or not out.is_file():  # 2: some structures failed (rows say why)
        raise SystemExit(f"hopnet screen failed ({proc.returncode}): {proc.stderr[-2000:]}")
    return wall


def rows_of(path: Path) -> list[dict]:
    import pyarrow.parquet as pq

    return pq.read_table(path).to_pylist()


def per_structure(rows: list[dict]) -> dict[str, dict]:
    """One row per structure id (elapsed, worker, memory are per structure)."""
    return {r["id"]: r for r in rows}


def rates(structures: Path, work: Path, n: int, repeats: int, modes: dict[str, list[str]]) -> dict:
    """Structures/s of each mode on the first ``n`` structures: median of ``repeats`` runs."""
    out = {}
    for mode, flags in modes.items():
        walls, mem, cost = [], {}, []
        for k in range(repeats):
            target = work / "rates" / f"{re.sub(r'[^a-z0-9]+', '_', mode)}_{k}.parquet"
            target.parent.mkdir(parents=True, exist_ok=True)
            walls.append(screen_cli(structures, target, flags, n, resume=False))
            for r in per_structure(rows_of(target)).values():
                mem[r["worker"]] = max(mem.get(r["worker"], 0.0), r["worker_peak_rss_mb"] or 0.0)
                cost.append(r["elapsed_s"])
        cores = 2 if "2" in mode else 1
        wall = statistics.median(walls)
        out[mode] = {"structures": n, "walls_s": [round(w, 2) for w in walls], "median_wall_s": round(wall, 2),
                     "structures_per_s": round(n / wall, 2), "per_core": round(n / wall / cores, 2),
                     "peak_rss_mb_per_worker": round(max(mem.values()), 1) if mem else None,
                     "per_structure_median_s": round(statistics.median(cost), 4),
                     "per_structure_mean_s": round(statistics.fmean(cost), 4)}
    return out


# --------------------------------------------------------------------------- 4. analysis
def _norm(msg: str) -> str:
    """A failure message with its numbers and formulas blanked, to count kinds of failure."""
    msg = re.sub(r"\([^)]*\)", "(...)", msg or "")
    return re.sub(r"\d+(\.\d+)?", "#", msg)[:120]


def _best(rows: list[dict]) -> list[dict]:
    """One record per (structure, ion) screened: formula, percolation barriers, dimensionality."""
    seen, out = set(), []
    for r in rows:
        if r["status"] == "ok" and (r["id"], r["ion"]) not in seen:
            seen.add((r["id"], r["ion"]))
            out.append({k: r[k] for k in ("id", "formula", "ion", "percolation_1d_ev", "percolation_2d_ev",
                                          "percolation_3d_ev", "dimensionality", "n_atoms")})
    return out


def _percentile(values: list[float], x: float) -> float:
    return round(100.0 * sum(v <= x for v in values) / len(values), 1) if values else float("nan")


def analyse(rows: list[dict]) -> dict:
    """Counts, failures by cause, cost, memory, top-20 per ion and the known-conductor check."""
    structs = per_structure(rows)
    status = Counter(r["status"] for r in structs.values())
    failed = [r for r in rows if r["status"] == "failed"]
    best = _best(rows)
    by_ion: dict[str, list[dict]] = defaultdict(list)
    for b in best:
        by_ion[b["ion"]].append(b)
    top = {ion: sorted((b for b in bs if b["percolation_1d_ev"] is not None),
                       key=lambda b: b["percolation_1d_ev"])[:20] for ion, bs in sorted(by_ion.items())}
    known = []
    for formula, ion, expected in KNOWN:
        hits = [b for b in by_ion.get(ion, []) if b["formula"] == formula and b["percolation_1d_ev"] is not None]
        if hits:
            p1 = min(b["percolation_1d_ev"] for b in hits)
            pct = _percentile([b["percolation_1d_ev"] for b in by_ion[ion] if b["percolation_1d_ev"] is not None], p1)
            known.append({"formula": formula, "ion": ion, "expected": expected, "percolation_1d_ev": round(p1, 3),
                          "percentile_in_ion": pct, "ids": [b["id"] for b in hits][:5],
                          "agrees": (pct <= 50.0) if expected == "fast" else (pct >= 50.0)})
    elapsed = [r["elapsed_s"] for r in structs.values()]
    mem: dict[str, float] = {}
    for r in structs.values():
        mem[r["worker"]] = max(mem.get(r["worker"], 0.0), r["worker_peak_rss_mb"] or 0.0)
    ok_hops = [r for r in rows if r["status"] == "ok"]
    dims = Counter((b["ion"], b["dimensionality"]) for b in best)
    return {
        "structures": len(structs), "status": dict(status), "screens_ok": len(best), "hops": len(ok_hops),
        "hops_failed": sum(1 for r in ok_hops if r["hop_error"]),
        "screens_by_ion": {ion: len(bs) for ion, bs in sorted(by_ion.items())},
        "dimensionality_by_ion": {f"{ion} {d}-D": n for (ion, d), n in sorted(dims.items())},
        "failures_by_cause": dict(Counter(r["cause"] for r in failed).most_common()),
        "failures_by_kind": dict(Counter(f"{r['cause']}: {_norm(r['error'])}" for r in failed).most_common(12)),
        "per_structure_s": {"median": round(statistics.median(elapsed), 4), "mean": round(statistics.fmean(elapsed), 4),
                            "p90": round(sorted(elapsed)[int(0.9 * (len(elapsed) - 1))], 4),
                            "max": round(max(elapsed), 3)} if elapsed else {},
        "peak_rss_mb_per_worker": {"max": round(max(mem.values()), 1), "workers": len(mem)} if mem else {},
        "top20_by_ion": {ion: [{k: (round(v, 3) if isinstance(v, float) else v) for k, v in b.items()} for b in bs]
                         for ion, bs in top.items()},
        "known_conductors": known,
    }


def commit_cost(structures: Path, n: int = 20, parts: int = 50) -> dict:
    """What the driver spends per finished structure: unpickling the outcome (what arrives from
    a worker), its rows and the Parquet table (``structure_s``, from real outcomes of the first
    ``n`` structures), and per part file written (``part_s``: temporary file, fsync, rename)."""
    import pickle
    import tempfile

    import pyarrow as pa

    from hopnet.database import open_inputs
    from hopnet.screen_runner import Job, screen_entry
    from hopnet.screen_table import outcome_rows, schema, write_parquet_atomic

    job = Job(",".join(IONS), {"model": "default"})
    blobs = [pickle.dumps(screen_entry(e, job)) for e in open_inputs([structures], limit=n)]
    t0 = time.perf_counter()
    rows = [r for b in blobs for r in outcome_rows(pickle.loads(b))]
    table = pa.Table.from_pylist(rows, schema=schema())
    per_structure = (time.perf_counter() - t0) / len(blobs)
    with tempfile.TemporaryDirectory() as tmp:
        small = table.slice(0, 1)
        t0 = time.perf_counter()
        for j in range(parts):
            write_parquet_atomic(small, Path(tmp) / f"part-{j}.parquet")
        per_part = (time.perf_counter() - t0) / parts
    return {"part_s": round(per_part, 6), "structure_s": round(per_structure, 6)}


def estimate(per_structure_mean_s: float, commit: dict, startup_s: float, tail_s: float, n: int = 150_000,
             nodes: int = 100, cores_per_node: int = 16) -> dict:
    """Wall time of ``n`` structures on ``nodes`` x ``cores_per_node`` Ray CPUs. Compute spread
    over the cores gives a rate R; the single writer keeps up with at most 1/structure_s (parts
    grow as it falls behind); the driver schedules about :data:`RAY_TASKS_PER_S` tasks, so tasks
    need R / RAY_TASKS_PER_S structures or more (``--batch``). Plus worker start-up and the
    slowest structure (tail)."""
    cores = nodes * cores_per_node
    compute = n * per_structure_mean_s / cores
    rate = n / compute if compute > 0 else math.inf
    writer = n * commit["structure_s"]
    batch = max(1, math.ceil(rate / RAY_TASKS_PER_S))
    total = max(compute, writer) + startup_s + tail_s
    return {"structures": n, "nodes": nodes, "cores_per_node": cores_per_node, "compute_s": round(compute, 1),
            "writer_s": round(writer, 1), "startup_s": round(startup_s, 1), "tail_s": round(tail_s, 1),
            "total_s": round(total, 1), "total_min": round(total / 60.0, 1),
            "bound_by": "writer" if writer > compute else "compute", "ray_batch_needed": batch,
            "cluster_structures_per_s": round(n / total, 1)}


def figure(rows: list[dict], path: Path) -> None:
    """Percolation barriers by ion (boxes) for 1-, 2- and 3-D networks (panels)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    best = _best(rows)
    fig, axes = plt.subplots(1, 3, figsize=(12, 4), sharey=True)
    for ax, d in zip(axes, (1, 2, 3)):
        data = [[b[f"percolation_{d}d_ev"] for b in best if b["ion"] == ion and b[f"percolation_{d}d_ev"] is not None]
                for ion in IONS]
        ax.boxplot([x if x else [math.nan] for x in data], showfliers=False)
        ax.set_xticks(range(1, len(IONS) + 1), [f"{ion}\n(n={len(x)})" for ion, x in zip(IONS, data)])
        ax.set_title(f"{d}-D percolation barrier")
        ax.grid(axis="y", alpha=0.3)
    axes[0].set_ylabel("barrier (eV)")
    fig.suptitle(f"hopnet screen of the pre-training sets: {len({b['id'] for b in best})} structures")
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=120)
    plt.close(fig)


# --------------------------------------------------------------------------- main
def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--data", type=Path, default=Path(os.environ.get("HOPNET_DATA_DIR", ROOT.parent / "shared" / "data")))
    p.add_argument("--workdir", type=Path, default=Path.home() / ".cache" / "hopnet" / "screen_db")
    p.add_argument("--limit", type=int, default=None, help="full job: only the first N structures")
    p.add_argument("--workers", type=int, default=2, help="worker processes of the full job (default 2)")
    p.add_argument("--rate-sample", type=int, default=300, help="structures per throughput run (default 300)")
    p.add_argument("--repeats", type=int, default=3, help="runs per throughput mode (median; default 3)")
    p.add_argument("--no-ray", action="store_true", help="skip the Ray throughput runs")
    p.add_argument("--max-worker-mb", type=float, default=2048.0, help="memory target per worker (MB)")
    p.add_argument("--nodes", type=int, default=100)
    p.add_argument("--cores-per-node", type=int, default=16)
    p.add_argument("--record", type=Path, default=ROOT / "experiments" / "results" / "screen_db.json")
    p.add_argument("--figure", type=Path, default=ROOT / "experiments" / "results" / "screen_db.png")
    a = p.parse_args(argv)
    a.workdir.mkdir(parents=True, exist_ok=True)
    structures, selection = structures_file(a.workdir, a.data, IONS)
    print(f"selected {selection['unique_structures']} structures ({selection['duplicates_removed']} duplicates removed)")
    modes = {m: f for m, f in MODES.items() if not (a.no_ray and "ray" in m)}
    sample = min(a.rate_sample, a.limit or a.rate_sample)
    rate = rates(structures, a.workdir, sample, a.repeats, modes)
    print("rates:", json.dumps(rate))
    full = a.workdir / ("screen.parquet" if a.limit is None else f"screen_limit{a.limit}.parquet")
    wall = screen_cli(structures, full, ["--workers", str(a.workers)], a.limit, resume=True)
    rows = rows_of(full)
    res = analyse(rows)
    one = rate["1 worker"]
    # the per-structure cost of one uncontended worker (in the full job, workers share the cores)
    startup = max(0.0, one["median_wall_s"] - sample * one["per_structure_mean_s"])
    commit = commit_cost(structures)
    record = {
        "what": "hopnet screen of the shared pre-training sets (issue #23)", "slice": a.limit is not None,
        "selection": selection, "full_job": {"structures": res["structures"], "workers": a.workers,
                                             "wall_s_this_invocation": round(wall, 1)},
        "rates": rate, **res, "writer_cost": commit,
        "targets": {"per_core_ge_5": one["per_core"] >= 5.0,
                    "per_core_1_worker": one["per_core"],
                    "speedup_2_workers": round(rate["2 workers"]["structures_per_s"] / one["structures_per_s"], 2),
                    "speedup_ge_1_8": rate["2 workers"]["structures_per_s"] >= 1.8 * one["structures_per_s"],
                    "worker_memory_ok": all((m.get("peak_rss_mb_per_worker") or 0) <= a.max_worker_mb for m in rate.values())},
        "estimate_150k_100_nodes": estimate(one["per_structure_mean_s"], commit, startup,
                                            res["per_structure_s"]["max"], nodes=a.nodes, cores_per_node=a.cores_per_node),
        "machine": {"cpus": os.cpu_count(), "load_1min": round(os.getloadavg()[0], 2)},
    }
    a.record.parent.mkdir(parents=True, exist_ok=True)
    a.record.write_text(json.dumps(record, indent=1) + "\n")
    figure(rows, a.figure)
    print(json.dumps({k: record[k] for k in ("full_job", "status", "failures_by_cause", "per_structure_s",
                                             "targets", "estimate_150k_100_nodes")}, indent=1))
    print(f"wrote {a.record} and {a.figure}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
