"""Cost of the universal-potential NEB per training path (issue: fast, robust uMLIP NEB).

Two modes:

    # what the feature run cost: CPU seconds per path, convergence, stop reasons, lost paths
    python benchmarks/neb_paths.py summary experiments/results/neb_features/chgnet_shard*.jsonl

    # A/B on the same paths in one run: the reference (the path's own cell, one potential call
    # per image, fmax 0.05 eV/Å, 100 steps: the settings of the earlier 23-path measurement)
    # against the feature settings (canonical cell, one climbing image, fmax 0.1, 30 + 40 steps,
    # 150 CPU-s)
    HOPNET_DATA_DIR=../shared/data python benchmarks/neb_paths.py ab --n 6 --seed 0 --json results/neb_ab.json

Targets (issue #20): median <= 20 CPU-s per path over the 559 training paths, the whole set
<= 4 CPU-hours, no path lost. One thread (OMP_NUM_THREADS=1) is what a CPU-s means here.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import sys
import time

import numpy as np

TARGET_MEDIAN_CPU_S = 20.0
TARGET_TOTAL_CPU_H = 4.0
N_PATHS = 559

REFERENCE = dict(cell="given", batch=False, fmax=0.05, relax_fmax=0.05, steps=100, relax_steps=100)
FEATURES = dict(cell="canonical", batch=True, fmax=0.1, relax_fmax=0.1, steps=40, relax_steps=30, time_budget=150.0,
                n_images=3)


def summary(files: list[str]) -> dict:
    rows = []
    for f in files:
        with open(f) as fh:
            rows += [json.loads(line) for line in fh if line.strip().endswith("}")]
    ok = [r for r in rows if "error" not in r]
    cpu = np.array([r.get("cpu_s", r.get("wall_s", np.nan)) for r in ok], dtype=float)
    stops: dict[str, int] = {}
    for r in ok:
        stops[r.get("stop") or "?"] = stops.get(r.get("stop") or "?", 0) + 1
    out = {
        "files": files, "n_rows": len(rows), "n_ok": len(ok), "n_errors": len(rows) - len(ok),
        "median_cpu_s": float(np.median(cpu)) if len(cpu) else None,
        "mean_cpu_s": float(np.mean(cpu)) if len(cpu) else None,
        "p90_cpu_s": float(np.percentile(cpu, 90)) if len(cpu) else None,
        "projected_total_cpu_h": float(np.mean(cpu) * N_PATHS / 3600) if len(cpu) else None,
        "median_atoms": float(np.median([r["n_atoms"] for r in ok])) if ok else None,
        "converged": sum(bool(r.get("converged")) for r in ok), "stops": stops,
        "ion_held": sum(bool(r.get("ion_held")) for r in ok),
        "targets": {"median_cpu_s": TARGET_MEDIAN_CPU_S, "total_cpu_h": TARGET_TOTAL_CPU_H},
    }
    out["meets_median"] = out["median_cpu_s"] is not None and out["median_cpu_s"] <= TARGET_MEDIAN_CPU_S
    out["meets_total"] = out["projected_total_cpu_h"] is not None and out["projected_total_cpu_h"] <= TARGET_TOTAL_CPU_H
    return out


def ab(n: int, seed: int) -> dict:
    import torch

    torch.set_num_threads(1)
    from hopnet.datasets import load
    from hopnet.neb import NebConfig, paths_from_entries, run_neb
    from hopnet.infra.provenance import run_record

    items = paths_from_entries(list(load("migration-barriers")))
    pick = random.Random(seed).sample(items, n)
    rows = []
    for pid, path, meta in pick:
        row = {"id": pid, "target": meta.get("target")}
        for name, cfg in (("reference", REFERENCE), ("ours", FEATURES)):  # same path, back to back
            r = run_neb(path, NebConfig(**cfg), id=pid)
            row[name] = {"cpu_s": r.cpu_s, "wall_s": r.wall_s, "barrier": r.barrier, "n_atoms": r.n_atoms,
                         "stop": r.stop, "n_steps": r.n_steps, "relax_steps": r.relax_steps}
        print(f"{pid:28s} ref {row['reference']['cpu_s']:7.1f} CPU-s ({row['reference']['n_atoms']} atoms, "
              f"{row['reference']['barrier']:.3f} eV)  ours {row['ours']['cpu_s']:6.1f} CPU-s "
              f"({row['ours']['n_atoms']} atoms, {row['ours']['barrier']:.3f} eV)  DFT {row['target']:.3f}", flush=True)
        rows.append(row)
    ref = np.array([r["reference"]["cpu_s"] for r in rows])
    ours = np.array([r["ours"]["cpu_s"] for r in rows])
    return {"paths": rows, "median_cpu_s": {"reference": float(np.median(ref)), "ours": float(np.median(ours))},
            "speedup_of_medians": float(np.median(ref) / np.median(ours)),
            "speedup_per_path_median": float(np.median(ref / ours)),
            "configs": {"reference": REFERENCE, "ours": FEATURES}, "seed": seed,
            "provenance": run_record({"n": n, "seed": seed})}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = p.add_subparsers(dest="mode", required=True)
    s = sub.add_parser("summary")
    s.add_argument("files", nargs="+")
    a = sub.add_parser("ab")
    a.add_argument("--n", type=int, default=6)
    a.add_argument("--seed", type=int, default=0)
    for q in (s, a):
        q.add_argument("--json", default=None)
    args = p.parse_args(argv)
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    t0 = time.time()
    out = summary(args.files) if args.mode == "summary" else ab(args.n, args.seed)
    out["elapsed_s"] = time.time() - t0
    text = json.dumps(out, indent=1)
    if args.json:
        from hopnet.infra.provenance import atomic_write_text

        atomic_write_text(args.json, text + "\n")
    print(text if args.mode == "summary" else json.dumps({k: out[k] for k in ("median_cpu_s", "speedup_of_medians",
                                                                               "speedup_per_path_median")}, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
