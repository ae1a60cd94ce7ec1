"""Prediction throughput of a shipped model: paths per second on 1 and 2 threads.

Figures (paths per second, higher is better; target >= 50 on one core, i.e. <= 20 ms per path):

* ``examples_batched``  ``predict_many`` on the hops of ``examples/`` (prebuilt paths, repeated
                        to ``--repeat`` paths), one call;
* ``examples_single``   the same hops one ``predict_many([path])`` call each (per-call overhead);
* ``examples_end_to_end`` ``predict_many`` on specs (CIF file + ion + site indices): reading,
                        validation and band building included;
* ``bands_batched``     ``predict_many`` on every migration band of the data set (prebuilt paths;
                        needs ``$HOPNET_DATA_DIR``, skipped otherwise).

Model loading is timed once per process (``load_s``) and excluded from the rates. Each thread
count runs in a fresh subprocess with ``OMP/OPENBLAS/MKL_NUM_THREADS`` and torch's thread count
set before anything heavy is imported.

Usage::

    python benchmarks/predict.py                       # 1 and 2 threads, default model
    python benchmarks/predict.py --threads 1 --json results/predict.json
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
_THREAD_VARS = ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS", "NUMEXPR_NUM_THREADS")


def _rate(n: int, seconds: float) -> dict:
    return {"paths": n, "seconds": round(seconds, 4), "paths_per_s": round(n / seconds, 1),
            "ms_per_path": round(1000.0 * seconds / n, 3)}


def _best_of(fn, repeats: int) -> float:
    best = float("inf")
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - t0)
    return best


def worker(model: str, repeat: int, rounds: int) -> dict:
    """Run in the subprocess: every figure for one thread count."""
    import torch

    torch.set_num_threads(int(os.environ.get("OMP_NUM_THREADS", "1")))
    import hopnet.inference as hp

    t0 = time.perf_counter()
    hp.get_model(model)
    out: dict = {"threads": torch.get_num_threads(), "model": model, "load_s": round(time.perf_counter() - t0, 3)}

    index = json.loads((ROOT / "examples" / "index.json").read_text())
    specs = [{"structure": str(ROOT / "examples" / e["file"]), "ion": e["ion"], "start": e["hop"]["from"],
              "end": e["hop"]["to"]} for e in index]
    base = [r.path for r in hp.predict_many(specs, model=model)]  # warm-up + prebuilt paths
    paths = (base * (repeat // len(base) + 1))[:repeat]
    out["examples_batched"] = _rate(len(paths), _best_of(lambda: hp.predict_many(paths, model=model), rounds))
    out["examples_single"] = _rate(len(paths), _best_of(
        lambda: [hp.predict_many([p], model=model) for p in paths], rounds))
    out["examples_end_to_end"] = _rate(len(specs), _best_of(lambda: hp.predict_many(specs, model=model), rounds))

    data_dir = os.environ.get("HOPNET_DATA_DIR")
    if data_dir and Path(data_dir).is_dir():
        from hopnet.datasets import load
        from hopnet.paths import as_path

        ds = load("migration-barriers")
        bands = [as_path(e) for e in ds]
        sizes = [len(p.host) + p.n_images for p in bands]
        out["bands_batched"] = _rate(len(bands), _best_of(lambda: hp.predict_many(bands, model=model), rounds))
        out["bands_atoms_mean"] = round(sum(sizes) / len(sizes), 1)
    else:
        out["bands_batched"] = None
    return out


def run(threads: int, model: str, repeat: int, rounds: int) -> dict:
    env = dict(os.environ)
    for var in _THREAD_VARS:
        env[var] = str(threads)
    cmd = [sys.executable, str(Path(__file__).resolve()), "--worker", "--model", model,
           "--repeat", str(repeat), "--rounds", str(rounds)]
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True, check=False)
    if proc.returncode != 0:
        raise SystemExit(f"worker with {threads} thread(s) failed:\n{proc.stderr[-2000:]}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


def table(results: list[dict]) -> str:
    rows = ["threads  figure               paths/s   ms/path"]
    for r in results:
        for key in ("examples_batched", "examples_single", "examples_end_to_end", "bands_batched"):
            v = r.get(key)
            if v:
                rows.append(f"{r['threads']:>7d}  {key:19s} {v['paths_per_s']:>8.1f} {v['ms_per_path']:>9.2f}")
        rows.append(f"{r['threads']:>7d}  model load {r['load_s']:.2f} s")
    return "\n".join(rows)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="paths per second of a shipped model")
    parser.add_argument("--model", default="default")
    parser.add_argument("--threads", type=int, nargs="+", default=[1, 2])
    parser.add_argument("--repeat", type=int, default=200, help="example paths per batched call (default 200)")
    parser.add_argument("--rounds", type=int, default=3, help="timed repeats; the best is kept (default 3)")
    parser.add_argument("--json", default=None, metavar="FILE", help="write the results here")
    parser.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.worker:
        print(json.dumps(worker(args.model, args.repeat, args.rounds)))
        return 0
    results = [run(n, args.model, args.repeat, args.rounds) for n in args.threads]
    print(table(results))
    if args.json:
        sys.path.insert(0, str(ROOT / "src"))
        from hopnet.infra.provenance import atomic_write_text, run_record

        atomic_write_text(args.json, json.dumps({"results": results, "provenance": run_record(vars(args))},
                                                indent=1) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
