"""``hopnet screen`` over many structures: throughput and peak memory against the number screened.

``hopnet screen FOLDER --ion Li --json ... --csv ...`` streams every structure's record to its
output files and keeps nothing per structure, so its peak memory should not grow with the number
of structures. This benchmark writes ``--counts`` (default 100 and 1,000) small Li cells (2-atom
CsCl-type and 4-atom layered cells with random orthorhombic lattices, CIF and POSCAR) into a
temporary folder, screens each set in a fresh subprocess with the default (classical) model, and
reports per set:

* ``structures_per_s``  screened structures per second (model loading excluded: the worker
                        screens one structure first);
* ``rss_before_mb``     resident memory after that warm-up;
* ``peak_rss_mb``       peak resident memory of the whole run (``resource.getrusage``);
* ``growth_mb``         ``peak_rss_mb - rss_before_mb``: what the screening itself added.

Usage::

    OMP_NUM_THREADS=1 python benchmarks/screen_stream.py                 # 100 vs 1,000
    OMP_NUM_THREADS=1 python benchmarks/screen_stream.py --counts 50 500 --json results/screen_stream.json
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path


def make_structures(folder: Path, n: int, seed: int = 0) -> list[Path]:
    """``n`` distinct small Li cells in ``folder``: even k a 4-atom layered Li2Br2 cell (POSCAR),
    odd k a 2-atom CsCl-type LiCl cell (CIF), lattice constants drawn from 3-4 Å."""
    import numpy as np
    from pymatgen.core import Lattice, Structure

    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    out = []
    for k in range(n):
        a, b, c = rng.uniform(3.0, 4.0, 3)
        if k % 2:
            s = Structure(Lattice.orthorhombic(a, b, c), ["Li", "Cl"], [[0, 0, 0], [0.5, 0.5, 0.5]])
            path = folder / f"s{k:05d}.cif"
            s.to(filename=str(path))
        else:
            s = Structure(Lattice.orthorhombic(a, b, 2 * c), ["Li", "Br", "Li", "Br"],
                          [[0, 0, 0], [0.5, 0.5, 0.25], [0, 0, 0.5], [0.5, 0.5, 0.75]])
            path = folder / f"POSCAR_{k:05d}"
            s.to(filename=str(path), fmt="poscar")
        out.append(path)
    return out


def _rss_mb() -> float:
    """Peak resident memory of this process so far (MB; ru_maxrss is KiB on Linux, bytes on macOS)."""
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak / 2**20 if sys.platform == "darwin" else peak / 2**10


def worker(folder: str, warm: str, out_dir: str) -> dict:
    """In the subprocess: warm up on one structure, then screen ``folder`` through the CLI (as
    ``hopnet screen`` runs: the classical default model does not import torch)."""
    from hopnet.cli import main

    # the table printed per structure is not the point: to /dev/null
    with open(os.devnull, "w") as devnull, contextlib.redirect_stdout(devnull):
        main(["screen", warm, "--ion", "Li", "--json", os.path.join(out_dir, "warm.json")])
        before = _rss_mb()
        t0 = time.perf_counter()
        rc = main(["screen", folder, "--ion", "Li", "--json", os.path.join(out_dir, "r.json"),
                   "--csv", os.path.join(out_dir, "r.csv")])
        seconds = time.perf_counter() - t0
    peak = _rss_mb()  # before reading the results back, which holds them all
    payload = json.loads(Path(out_dir, "r.json").read_text())
    n = len(payload["results"]) + len(payload["failures"])
    return {"structures": n, "ok": len(payload["results"]), "rc": rc, "seconds": round(seconds, 2),
            "structures_per_s": round(n / seconds, 1), "rss_before_mb": round(before, 1),
            "peak_rss_mb": round(peak, 1), "growth_mb": round(peak - before, 1)}


def run_set(tmp: Path, n: int) -> dict:
    folder = tmp / f"structures_{n}"
    make_structures(folder, n, seed=n)
    warm = make_structures(tmp / f"warm_{n}", 1, seed=10**6 + n)[0]
    out_dir = tmp / f"out_{n}"
    out_dir.mkdir()
    cmd = [sys.executable, __file__, "--worker", str(folder), str(warm), str(out_dir)]
    proc = subprocess.run(cmd, capture_output=True, text=True, check=False)
    if proc.returncode != 0:
        raise SystemExit(f"worker for {n} structures failed:\n{proc.stderr[-4000:]}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--counts", type=int, nargs="+", default=[100, 1000], help="structure counts (default 100 1000)")
    ap.add_argument("--json", default=None, help="also write the results to this JSON file")
    ap.add_argument("--worker", nargs=3, default=None, help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if args.worker:
        print(json.dumps(worker(*args.worker)))
        return 0
    with tempfile.TemporaryDirectory(prefix="hopnet-screen-stream-") as tmp:
        rows = {str(n): run_set(Path(tmp), n) for n in args.counts}
    print(f"{'structures':>10} {'ok':>6} {'s':>8} {'struct/s':>9} {'RSS before':>11} {'peak RSS':>9} {'growth':>7}")
    for r in rows.values():
        print(f"{r['structures']:>10} {r['ok']:>6} {r['seconds']:>8.1f} {r['structures_per_s']:>9.1f} "
              f"{r['rss_before_mb']:>8.1f} MB {r['peak_rss_mb']:>6.1f} MB {r['growth_mb']:>4.1f} MB")
    result = {"benchmark": "screen_stream", "threads": os.environ.get("OMP_NUM_THREADS"), "runs": rows}
    if args.json:
        from hopnet.infra.provenance import atomic_write_text, run_record

        result["provenance"] = run_record({"counts": args.counts})
        atomic_write_text(args.json, json.dumps(result, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
