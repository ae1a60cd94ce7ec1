"""Micro-benchmark of one ALIGNN training step (forward + backward + AdamW step).

Compares implementations of the same model (``--impl fused reference``, optionally with
``EncoderConfig.checkpointing``) on batches of band-sized graphs, with 1 CPU thread by default:

    python benchmarks/encoder_micro.py --config paper small --batch 16
    python benchmarks/encoder_micro.py --real 16       # real bands from $HOPNET_DATA_DIR
    python benchmarks/encoder_micro.py --config paper --impl fused --tuned --bf16 --batch 4

Each variant runs in a fresh subprocess so its peak memory is its own. Reported per variant:
median seconds per step, graphs per second, and peak resident memory above the resident memory
before the first step (sampled every 2 ms with psutil, so it covers torch's allocations).

On CPU, glibc hands every tensor above 32 MB back to the kernel when freed, and page-faulting it
in again costs more than the arithmetic on it; ``--malloc-cache`` turns that off for the children
(environment variables only). Peak RSS is then the high-water mark, the number that matters.
"""

from __future__ import annotations

import argparse
import gzip
import json
import os
import statistics
import subprocess
import sys
import threading
import time
from pathlib import Path


def synthetic_band(n_atoms: int = 120, k: int = 12, density: float = 0.08, seed: int = 0):
    """A random periodic cube of ``n_atoms`` atoms (``density`` atoms/Å^3) with a k-NN graph and
    its full line graph; shaped like a migration band (~120 atoms, ~1,500 bonds, ~20,000 pairs)."""
    import torch
    from hopnet.graphs import AlignnGraph

    g = torch.Generator().manual_seed(seed)
    box = (n_atoms / density) ** (1 / 3)
    pos = torch.rand(n_atoms, 3, generator=g, dtype=torch.float64) * box
    diff = pos.unsqueeze(0) - pos.unsqueeze(1)               # [i, j] = pos_j - pos_i
    diff -= box * torch.round(diff / box)                    # minimum image
    dist = diff.norm(dim=-1).fill_diagonal_(float("inf"))
    nbr = dist.topk(k, largest=False).indices                # [N, k]
    dst = torch.arange(n_atoms).repeat_interleave(k)
    src = nbr.reshape(-1)
    vec = -diff[dst, src]                                    # from source u to destination v
    # bond pairs e1 = (u -> v), e2 = (v -> w): e1 among the incoming bonds of v, e2 among outgoing
    order = torch.argsort(src, stable=True)
    out_deg = torch.bincount(src, minlength=n_atoms)
    out_ptr = torch.cat([torch.zeros(1, dtype=torch.long), out_deg.cumsum(0)])
    e1 = torch.arange(dst.numel()).repeat_interleave(out_deg[dst])
    start = out_ptr[dst].repeat_interleave(out_deg[dst])
    offs = torch.arange(e1.numel()) - torch.cat([torch.zeros(1, dtype=torch.long),
                                                 out_deg[dst].cumsum(0)[:-1]]).repeat_interleave(out_deg[dst])
    e2 = order[start + offs]
    a, b = -vec[e1], vec[e2]
    cos = (a * b).sum(-1) / (a.norm(dim=-1) * b.norm(dim=-1))
    z = torch.randint(1, 84, (n_atoms,), generator=g)
    x = torch.zeros(n_atoms, 92)
    x[torch.arange(n_atoms), z - 1] = 1.0
    return AlignnGraph(
        x=x, z=z, pos=pos.float(), is_mobile=torch.arange(n_atoms) < 5,
        edge_index=torch.stack([src, dst]), edge_vec=vec.float(), edge_len=vec.norm(dim=-1).float(),
        lg_edge_index=torch.stack([e1, e2]), lg_cos=cos.clamp(-1, 1).float(),
    )


def real_bands(n: int):
    from hopnet.graphs import build_graph
    from pymatgen.core import Lattice, Structure

    root = os.environ.get("HOPNET_DATA_DIR")
    if not root:
        raise SystemExit("--real needs HOPNET_DATA_DIR")
    with gzip.open(Path(root) / "migration" / "band_train.json.gz", "rt") as fh:
        entries = json.load(fh)
    entries = sorted(entries, key=lambda e: abs(len(e["atoms"]["elements"]) - 120))[:n]
    graphs = []
    for e in entries:
        at = e["atoms"]
        s = Structure(Lattice(at["lattice_mat"]), at["elements"], at["coords"],
                      coords_are_cartesian=at["cartesian"])
        graphs.append(build_graph(s, n_mobile=5))
    return graphs


class PeakRSS:
    """Samples the resident set size in a thread; ``peak`` is the maximum seen (bytes)."""

    def __init__(self, interval: float = 0.002) -> None:
        import psutil

        self._proc = psutil.Process()
        self.interval = interval
        self.peak = self._proc.memory_info().rss
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self._stop.is_set():
            self.peak = max(self.peak, self._proc.memory_info().rss)
            time.sleep(self.interval)

    def __enter__(self) -> "PeakRSS":
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join()
        self.peak = max(self.peak, self._proc.memory_info().rss)


def run_variant(args: argparse.Namespace) -> dict:
    """One variant, in this process."""
    import psutil
    import torch
    from torch_geometric.data import Batch

    from hopnet.models.property import MultiPropertyModel, PropertyModelConfig
    from hopnet.nn import EncoderConfig

    torch.set_num_threads(args.threads)
    if args.tuned:
        from hopnet.infra.runtime import tune_allocator

        tune_allocator()
    torch.manual_seed(0)
    graphs = real_bands(args.real) if args.real else [synthetic_band(seed=i) for i in range(args.batch)]
    batch = Batch.from_data_list(graphs)
    base = EncoderConfig.paper() if args.config == "paper" else EncoderConfig.small()
    config = EncoderConfig.from_dict({**base.to_dict(), "implementation": args.impl,
                                      "checkpointing": args.checkpointing})
    model = MultiPropertyModel(PropertyModelConfig(encoder=config)).train()
    opt = torch.optim.AdamW(model.parameters(), lr=1e-4, fused=True)   # as hopnet's trainers
    target = torch.zeros(batch.num_graphs, 1)

    def step() -> None:
        opt.zero_grad(set_to_none=True)
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=args.bf16):
            pred = model(batch)
        loss = torch.nn.functional.l1_loss(pred.float(), target)
        loss.backward()
        opt.step()

    rss0 = psutil.Process().memory_info().rss
    times, cpu = [], []
    with PeakRSS() as mem:
        for _ in range(args.warmup + args.steps):
            t0, c0 = time.perf_counter(), time.process_time()
            step()
            times.append(time.perf_counter() - t0)
            cpu.append(time.process_time() - c0)
    sec = statistics.median(times[args.warmup:])
    return {
        "config": args.config, "impl": args.impl, "checkpointing": args.checkpointing,
        "graphs": batch.num_graphs, "atoms": batch.num_nodes, "bonds": int(batch.edge_index.shape[1]),
        "pairs": int(batch.lg_edge_index.shape[1]), "threads": args.threads,
        "sec_per_step": sec, "graphs_per_sec": batch.num_graphs / sec,
        # CPU seconds of this process (incl. the RSS sampler): robust to other jobs on the cores
        "cpu_sec_per_step": statistics.median(cpu[args.warmup:]), "bf16": args.bf16, "tuned": args.tuned,
        "peak_rss_delta_mb": (mem.peak - rss0) / 2**20,
    }


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--config", nargs="+", default=["paper", "small"], choices=["paper", "small"])
    p.add_argument("--impl", nargs="+", default=["reference", "fused", "fused+ckpt"],
                   choices=["reference", "fused", "fused+ckpt", "reference+ckpt"])
    p.add_argument("--batch", type=int, default=16, help="synthetic band-sized graphs per batch")
    p.add_argument("--real", type=int, default=0, help="use this many real bands (~120 atoms) instead")
    p.add_argument("--steps", type=int, default=3)
    p.add_argument("--warmup", type=int, default=1)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--malloc-cache", action="store_true",
                   help="run the children with glibc's mmap disabled and trimming off, so freed tensors "
                        "are reused instead of page-faulted in again (3x faster steps on CPU)")
    p.add_argument("--tuned", action="store_true",
                   help="apply hopnet.infra.runtime.tune_allocator() in the children (as hopnet's entry points do)")
    p.add_argument("--bf16", action="store_true", help="bf16 autocast (mixed precision; not equal config)")
    p.add_argument("--json", type=Path, help="also write the results here")
    p.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    p.add_argument("--checkpointing", action="store_true", help=argparse.SUPPRESS)
    args = p.parse_args(argv)

    if args.child:
        args.config, args.impl = args.config[0], args.impl[0]
        print(json.dumps(run_variant(args)))
        return 0

    results = []
    for config in args.config:
        for impl in args.impl:
            name, _, ckpt = impl.partition("+")
            cmd = [sys.executable, __file__, "--child", "--config", config, "--impl", name,
                   "--batch", str(args.batch), "--real", str(args.real), "--steps", str(args.steps),
                   "--warmup", str(args.warmup), "--threads", str(args.threads)]
            if ckpt:
                cmd.append("--checkpointing")
            cmd += ["--tuned"] * args.tuned + ["--bf16"] * args.bf16
            env = dict(os.environ)
            if args.malloc_cache:
                env.update(MALLOC_MMAP_MAX_="0", MALLOC_TRIM_THRESHOLD_=str(2**40))
            out = subprocess.run(cmd, capture_output=True, text=True, env=env)
            if out.returncode != 0:
                print(f"{config:6s} {impl:15s} FAILED\n{out.stderr[-2000:]}", file=sys.stderr)
                continue
            r = json.loads(out.stdout.strip().splitlines()[-1])
            r["variant"] = impl
            results.append(r)
            print(f"{config:6s} {impl:15s} graphs={r['graphs']} atoms={r['atoms']} bonds={r['bonds']} "
                  f"pairs={r['pairs']}  {r['sec_per_step']:.3f} s/step ({r['cpu_sec_per_step']:.3f} CPU s)  "
                  f"{r['graphs_per_sec']:.2f} graphs/s  "
                  f"peak +{r['peak_rss_delta_mb']:.0f} MB", flush=True)
    if args.json:
        from hopnet.infra.provenance import atomic_write_text

        atomic_write_text(args.json, json.dumps(results, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
