"""Tall matrix products as the encoder makes them on bond pairs: [T, K] x [K, N] in one call
against row blocks of 2,048, with a fresh output and with a preallocated one.

    OMP_NUM_THREADS=1 python benchmarks/tall_matmul.py [--rows 80000] [--untuned]

Session 3 (docs/benchmarks.md): the blocked product only wins against a freshly allocated
output (first-touch page faults); with ``hopnet.infra.runtime.tune_allocator()`` it does not.
"""

from __future__ import annotations

import argparse
import time

import torch

SHAPES = ((40, 64), (64, 256), (256, 64), (256, 256), (256, 1024))


def _ms(f, n: int = 5) -> float:
    f()
    t = time.perf_counter()
    for _ in range(n):
        f()
    return (time.perf_counter() - t) / n * 1e3


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--rows", type=int, default=80_000, help="T, rows of the tall operand (bond pairs)")
    ap.add_argument("--block", type=int, default=2048)
    ap.add_argument("--untuned", action="store_true", help="skip hopnet.infra.runtime.tune_allocator()")
    args = ap.parse_args(argv)
    if not args.untuned:
        from hopnet.infra.runtime import tune_allocator

        tune_allocator()
    torch.set_num_threads(1)
    t, blk = args.rows, args.block
    print(f"T={t}, block {blk}, allocator {'default' if args.untuned else 'tuned'}; ms per product")
    print(f"{'K':>5} {'N':>5} {'fresh out':>10} {'out=':>8} {'blocked':>8}")
    for k, n in SHAPES:
        x, w, b, out = torch.randn(t, k), torch.randn(k, n), torch.randn(n), torch.empty(t, n)

        def blocked() -> None:
            for i in range(0, t, blk):
                torch.addmm(b, x[i:i + blk], w, out=out[i:i + blk])

        fresh = _ms(lambda: torch.addmm(b, x, w))
        pre = _ms(lambda: torch.addmm(b, x, w, out=out))
        print(f"{k:5d} {n:5d} {fresh:10.1f} {pre:8.1f} {_ms(blocked):8.1f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
