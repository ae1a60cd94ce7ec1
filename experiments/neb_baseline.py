"""CHGNet climbing-image NEB on a deterministic sample of the migration-barrier training paths,
compared with the DFT target and the published MACE-NEB baseline on the same paths.

Sample: for every structural class, the path with the smallest cell (ties broken by a seeded
shuffle); classes whose smallest cell has more than ``--max-atoms`` atoms are left out; paths
run from the smallest cell up so that an interrupted run holds the cheapest ones. Results are
appended per path to ``--output`` (JSON lines; a rerun resumes), then summarised.

    HOPNET_DATA_DIR=/work/shared/data nice -n 10 python experiments/neb_baseline.py \
        --output experiments/results/neb_baseline_idpp.jsonl

``--summary-only`` prints the comparison table of what the file holds without running NEB.
"""

from __future__ import annotations

import argparse
import logging
import os
import platform
import random
import sys
import time

import numpy as np

from hopnet.metrics import regression_metrics
from hopnet.neb import NebConfig, paths_from_entries, read_results, run_neb_many

log = logging.getLogger("neb_baseline")


def select(ds, max_atoms: int, seed: int) -> list:
    """One entry per class: the smallest cell (host + one ion, atoms), ties by seeded shuffle."""
    entries = list(ds)
    random.Random(seed).shuffle(entries)
    best: dict = {}
    for e in entries:
        n = len(e.atoms["elements"]) - 4  # the band holds 5 ion images; an end structure 1
        c = e.meta.get("class")
        if n <= max_atoms and (c not in best or n < best[c][0]):
            best[c] = (n, e)
    return [e for _, e in sorted(best.values(), key=lambda t: (t[0], t[1].id))]


def summary(rows: list[dict]) -> str:
    t = np.array([r["meta"]["target"] for r in rows], float)
    out = ["| method (same paths) | n | MAE (eV) | RMSE (eV) | R² | Spearman |", "|---|---|---|---|---|---|"]

    def line(name, pred, mask):
        m = regression_metrics(t[mask], pred[mask])
        out.append(f"| {name} | {m['n']} | {m['mae']:.3f} | {m['rmse']:.3f} | {m['r2']:.3f} | {m['spearman']:.3f} |")

    chg = np.array([r["barrier"] for r in rows], float)
    allm = np.ones(len(rows), bool)
    line("CHGNet-NEB, relaxed end points (this work)", chg, allm)
    conv = np.array([r["converged"] for r in rows], bool)
    if conv.any() and not conv.all():
        line("CHGNet-NEB, converged bands only", chg, conv)
    for key, name in (("mace_relax_ev", "MACE-NEB relaxed (published)"),
                      ("mace_norelax_ev", "MACE-NEB not relaxed (published)")):
        v = np.array([np.nan if r["meta"].get(key) is None else r["meta"][key] for r in rows], float)
        ok = np.isfinite(v)
        if ok.any():
            line(name, v, ok)
    wall = np.array([r["wall_s"] for r in rows], float)
    out.append("")
    out.append(f"wall time per path: median {np.median(wall):.0f} s, mean {wall.mean():.0f} s, "
               f"max {wall.max():.0f} s; bands converged {int(conv.sum())}/{len(rows)}")
    out.append("")
    out.append("| path | class | atoms | DFT | CHGNet | MACE relax | MACE no-relax | conv | steps | s |")
    out.append("|---|---|---|---|---|---|---|---|---|---|")
    for r in rows:
        m = r["meta"]
        f = lambda x: "" if x is None else f"{x:.3f}"  # noqa: E731
        out.append(f"| {r['id']} | {m.get('class')} | {r['n_atoms']} | {f(m['target'])} | {r['barrier']:.3f} | "
                   f"{f(m.get('mace_relax_ev'))} | {f(m.get('mace_norelax_ev'))} | "
                   f"{'yes' if r['converged'] else 'no'} | {r['n_steps']} | {r['wall_s']:.0f} |")
    return "\n".join(out)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--output", default="experiments/results/neb_baseline.jsonl")
    ap.add_argument("--max-atoms", type=int, default=90)
    ap.add_argument("--limit", type=int, default=None)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--fmax", type=float, default=0.05)
    ap.add_argument("--steps", type=int, default=100)
    ap.add_argument("--relax-steps", type=int, default=100)
    ap.add_argument("--interpolation", default="idpp", choices=("idpp", "linear"))
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--summary-only", action="store_true")
    args = ap.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s: %(message)s")

    import torch

    torch.set_num_threads(args.threads)
    if not args.summary_only:
        from hopnet.datasets import load

        ds = load("migration-barriers")
        chosen = select(ds, args.max_atoms, args.seed)[: args.limit]
        log.info("%d paths selected (%s); data sha256 %s; %s, %s", len(chosen),
                 ", ".join(e.id for e in chosen), ds.sha256[:12], platform.processor() or platform.machine(),
                 f"{os.cpu_count()} cores")
        config = NebConfig(fmax=args.fmax, steps=args.steps, relax_steps=args.relax_steps,
                           interpolation=args.interpolation)
        t0 = time.perf_counter()
        for pid, path, meta in paths_from_entries(chosen):
            res = run_neb_many([(pid, path, meta)], config, args.output)
            for r in res:
                log.info("%s (%s, %d atoms): CHGNet %.3f eV, DFT %.3f eV, MACE %s eV; %s in %d steps, %.0f s",
                         pid, meta.get("class"), r.n_atoms, r.barrier, meta["target"], meta.get("mace_relax_ev"),
                         "converged" if r.converged else "NOT converged", r.n_steps, r.wall_s)
        log.info("done in %.0f s", time.perf_counter() - t0)
    rows = read_results(args.output)
    if rows:
        print(summary(rows))
    return 0


if __name__ == "__main__":
    sys.exit(main())
