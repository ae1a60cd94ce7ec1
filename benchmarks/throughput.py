"""Throughput benchmark: hopnet against upstream ``alignn`` on the same structures and settings.

Figures (all in structures per second, higher is better), for both implementations:

* ``graphs``      crystal graph + line graph from a JARVIS ``Atoms`` dict, no cache;
* ``train``       one optimiser step = collate a batch of 16 + forward + L1 loss + backward +
                  AdamW step (torch's fused AdamW on both sides, as hopnet's trainers use), at
                  the paper size (4 ALIGNN + 4 GCN layers, 256 hidden) and at the small size
                  (``EncoderConfig.small()``);
* ``inference``   eval mode, ``torch.no_grad``, batches of 16 (collate included), paper size;
* ``peak_rss_mb`` the RSS high-water mark (MiB) of a paper-size training step on a batch of 16
                  migration bands, measured in a fresh subprocess (its high-water mark is reset
                  after the graphs are built, so the figure is model + optimiser + step).

Upstream is ``alignn`` from PyPI, measured only when it imports in the running environment. Its
classic ``ALIGNN`` model needs DGL (no build for current torch), so the DGL-free
``ALIGNNAtomWisePure`` is configured as the classic property model (same layer counts and widths,
mean readout, no force/penalty/ZBL terms); its graphs are the classic k-nearest-neighbour graphs
(``nearest_neighbor_edges`` + ``build_undirected_edgedata``, k = 12, 8 Å, canonised) with the
line graph from ``alignn.torch_graph_builder`` (the DGL-free counterpart of DGL's
``line_graph(shared=True)``).

Every measurement runs in a subprocess that imports only one implementation; both sides see the
same structures in the same order (a seeded shuffle) and the same batches.

Usage::

    python benchmarks/throughput.py                      # full run (several minutes)
    python benchmarks/throughput.py --quick --json q.json  # < 1 min: few structures and steps
    python benchmarks/throughput.py --threads 2 --json results/throughput.json

Structures: the 559 migration bands (``migration-barriers``) and the first 1,000 (after the
shuffle) of the ``fe`` pre-training set, read through :func:`hopnet.datasets.load` (data dir from
``$HOPNET_DATA_DIR``).
"""

from __future__ import annotations

import argparse
import functools
import gc
import json
import os
import platform
import resource
import statistics
import subprocess
import sys
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Callable

BATCH = 16
SEED = 0
LR = 1e-3
HERE = Path(__file__).resolve()


# --------------------------------------------------------------------------------------------
# Plan
# --------------------------------------------------------------------------------------------


@dataclass
class Plan:
    """What a run measures. Counts are numbers of structures or of batches of 16."""

    graph_bands: int = 559
    graph_fe: int = 1000
    train_datasets: tuple[str, ...] = ("band", "fe")
    train_warmup: int = 1
    train_steps: int = 2          # timed steps per (config, dataset), paper size
    small_train_steps: int = 16   # small size: steps of ~50-300 ms, too short to time two of them
    small_rounds: int = 3         # small size: rounds, the two sides alternating; the median counts
    infer_datasets: tuple[str, ...] = ("band", "fe")
    infer_warmup: int = 1
    infer_batches: int = 3        # timed batches per dataset
    memory: bool = True           # fresh-subprocess peak RSS of a paper-size band batch
    primary: str = "band"         # dataset behind the headline ratios
    max_atoms: int | None = None  # keep only structures with at most this many atoms

    @classmethod
    def quick(cls) -> "Plan":
        return cls(graph_bands=4, graph_fe=32, train_datasets=("fe",), train_steps=1, small_train_steps=1,
                   small_rounds=1,
                   infer_datasets=("fe",), infer_batches=1, memory=False, primary="fe", max_atoms=12)


# --------------------------------------------------------------------------------------------
# Data (same list of structures for both sides)
# --------------------------------------------------------------------------------------------


def load_structures(dataset: str, limit: int | None, max_atoms: int | None = None
                    ) -> list[tuple[dict, float, int]]:
    """``(atoms dict, target, n_mobile)`` for ``dataset`` ("band" or "fe"), seeded shuffle, at
    most ``limit`` of them, only those with at most ``max_atoms`` atoms (fe only)."""
    import random

    entries = _entries(dataset)
    order = list(range(len(entries)))
    random.Random(SEED).shuffle(order)
    if max_atoms is not None and dataset == "fe":
        order = [i for i in order if len(entries[i][0]["elements"]) <= max_atoms]
    if limit is not None:
        order = order[:limit]
    n_mobile = 5 if dataset == "band" else 0
    return [(entries[i][0], entries[i][1], n_mobile) for i in order]


@functools.lru_cache(maxsize=None)
def _entries(dataset: str) -> list[tuple[dict, float]]:

    name = {"band": "migration-barriers", "fe": "fe"}[dataset]
    try:
        from hopnet.datasets import load
    except ImportError:  # hopnet not importable: read the shared file directly
        load = None
    if load is not None:
        entries = [(e.atoms, float(e.target)) for e in load(name)]
    else:
        import gzip

        data_dir = Path(os.environ.get("HOPNET_DATA_DIR", HERE.parents[1].parent / "shared" / "data"))
        rel = {"band": "migration/band_train.json.gz", "fe": "pretrain/fe.json.gz"}[dataset]
        with gzip.open(data_dir / rel, "rt") as fh:
            entries = [(e["atoms"], float(e["target"])) for e in json.load(fh)]
    return entries


# --------------------------------------------------------------------------------------------
# The two implementations behind one small interface
# --------------------------------------------------------------------------------------------


@dataclass
class Side:
    """build(atoms dict, n_mobile) -> graph; collate(graphs) -> batch; model(size) -> module;
    predict(module, batch) -> [B] tensor."""

    name: str
    build: Callable[[dict, int], Any]
    collate: Callable[[list], Any]
    model: Callable[[str], Any]
    predict: Callable[[Any, Any], Any]
    versions: dict = field(default_factory=dict)


def ours() -> Side:
    import torch
    import torch_geometric
    from torch_geometric.data import Batch

    import hopnet
    from hopnet.graphs import GraphConfig, build_graph
    from hopnet.models.property import MultiPropertyModel, PropertyModelConfig
    from hopnet.nn import EncoderConfig
    from hopnet.structures import to_structure

    gcfg = GraphConfig()

    def build(atoms: dict, n_mobile: int) -> Any:
        # no validation: a few data-set bands hold host atoms closer than the overlap check allows
        # (upstream does not check either)
        return build_graph(to_structure(atoms, validate=False), gcfg, n_mobile=n_mobile)

    def model(size: str) -> Any:
        cfg = EncoderConfig.paper() if size == "paper" else EncoderConfig.small()
        return MultiPropertyModel(PropertyModelConfig(encoder=cfg))

    def predict(m: Any, batch: Any) -> Any:
        return m(batch).squeeze(-1)

    return Side("ours", build, Batch.from_data_list, model, predict,
                {"hopnet": hopnet.__version__, "torch": torch.__version__,
                 "torch_geometric": torch_geometric.__version__})


def upstream() -> Side:
    from importlib.metadata import version

    import numpy as np
    import torch
    from jarvis.core.atoms import Atoms
    from jarvis.core.specie import get_node_attributes

    from alignn.graphs import build_undirected_edgedata, nearest_neighbor_edges
    from alignn.models.alignn_atomwise_pure import ALIGNNAtomWisePure, ALIGNNAtomWisePureConfig
    from alignn.torch_graph_builder import (
        TorchGraph,
        _line_graph_edges,
        batch_torch_graph_pairs,
        torch_bond_cosines,
    )

    feature_cache: dict[str, list] = {}

    def features(symbol: str) -> list:
        # upstream looks the CGCNN vector up per atom; memoising it only makes upstream faster
        if symbol not in feature_cache:
            feature_cache[symbol] = list(get_node_attributes(symbol, atom_features="cgcnn"))
        return feature_cache[symbol]

    def build(atoms: dict, n_mobile: int) -> Any:
        a = Atoms.from_dict(atoms)
        edges, _ = nearest_neighbor_edges(atoms=a, cutoff=8.0, max_neighbors=12, use_canonize=True)
        u, v, r, images = build_undirected_edgedata(a, edges)
        x = torch.tensor(np.array([features(s) for s in a.elements]), dtype=torch.get_default_dtype())
        g = TorchGraph(num_nodes=a.num_atoms, src=u, dst=v, ndata={"atom_features": x},
                       edata={"r": r, "images": images})
        lg_src, lg_dst = _line_graph_edges(u, v, a.num_atoms)  # all bond pairs, like DGL's
        lg = TorchGraph(num_nodes=g.num_edges, src=lg_src, dst=lg_dst, ndata={"r": r},
                        edata={"h": torch_bond_cosines(r[lg_src], r[lg_dst])})
        return g, lg

    def collate(graphs: list) -> Any:
        g, lg = batch_torch_graph_pairs(graphs)
        return g, lg, None

    def model(size: str) -> Any:
        sizes = (dict(alignn_layers=4, gcn_layers=4, hidden_features=256, embedding_features=64,
                      edge_input_features=80, triplet_input_features=40)
                 if size == "paper" else
                 dict(alignn_layers=1, gcn_layers=1, hidden_features=32, embedding_features=16,
                      edge_input_features=40, triplet_input_features=20))
        cfg = ALIGNNAtomWisePureConfig(
            name="alignn_atomwise_pure", atom_input_features=92, output_features=1,
            calculate_gradient=False, gradwise_weight=0.0, energy_mult_natoms=False,
            use_penalty=False, use_zbl=False, lg_on_fly=False, **sizes)
        return ALIGNNAtomWisePure(cfg)

    def predict(m: Any, batch: Any) -> Any:
        return m(batch)["out"].reshape(-1)

    return Side("upstream", build, collate, model, predict,
                {"alignn": version("alignn"), "jarvis-tools": version("jarvis-tools"),
                 "torch": torch.__version__})


SIDES = {"ours": ours, "upstream": upstream}


# --------------------------------------------------------------------------------------------
# Worker: runs a list of tasks for one side in this (fresh) process
# --------------------------------------------------------------------------------------------


def _status_kb(key: str) -> int | None:
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith(key + ":"):
                return int(line.split()[1])
    except OSError:
        pass
    return None


def reset_peak_rss() -> bool:
    """Reset the kernel's RSS high-water mark of this process (Linux ``clear_refs``)."""
    try:
        Path("/proc/self/clear_refs").write_text("5")
    except OSError:
        return False
    return True


def peak_rss_mb() -> float:
    hwm = _status_kb("VmHWM")
    if hwm is None:  # not Linux: the lifetime maximum
        hwm = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return hwm / 1024.0


def rss_mb() -> float | None:
    rss = _status_kb("VmRSS")
    return None if rss is None else rss / 1024.0


def _batches(items: list, n: int) -> list[list]:
    return [items[i * BATCH:(i + 1) * BATCH] for i in range(n)]


def task_graphs(side: Side, spec: dict) -> dict:
    out = {}
    for dataset, limit in (("band", spec["graph_bands"]), ("fe", spec["graph_fe"])):
        structs = load_structures(dataset, limit, spec["max_atoms"] if dataset == "fe" else None)
        side.build(structs[0][0], structs[0][2])  # warm caches / lazy imports (not timed)
        gc.collect()
        t0 = time.perf_counter()
        for atoms, _, n_mobile in structs:
            side.build(atoms, n_mobile)
        dt = time.perf_counter() - t0
        out[f"graphs_{dataset}"] = len(structs) / dt
        out[f"graphs_{dataset}_n"] = len(structs)
    return out


def _prepared_batches(side: Side, dataset: str, n_batches: int, max_atoms: int | None
                      ) -> tuple[list, list, int]:
    import torch

    structs = load_structures(dataset, n_batches * BATCH, max_atoms)
    graphs = [side.build(a, m) for a, _, m in structs]
    targets = [t for _, t, _ in structs]
    n_atoms = sum(len(a["elements"]) for a, _, _ in structs)
    gb = _batches(graphs, n_batches)
    tb = [torch.tensor(t, dtype=torch.float32) for t in _batches(targets, n_batches)]
    return gb, tb, n_atoms


def task_train(side: Side, spec: dict) -> dict:
    import torch

    size, dataset = spec["size"], spec["dataset"]
    warm, steps = spec["train_warmup"], spec["train_steps"]
    graph_batches, target_batches, n_atoms = _prepared_batches(side, dataset, warm + steps, spec["max_atoms"])
    gc.collect()
    reset = reset_peak_rss()
    base = rss_mb()
    torch.manual_seed(SEED)
    model = side.model(size)
    model.train()
    opt = torch.optim.AdamW(model.parameters(), lr=LR, fused=True)   # as hopnet's trainers, both sides
    n_params = sum(p.numel() for p in model.parameters())
    times = []
    autocast = spec.get("precision") == "bf16-mixed"  # what Lightning's precision="bf16-mixed" does on CPU
    for graphs, y in zip(graph_batches, target_batches):
        t0 = time.perf_counter()
        batch = side.collate(graphs)
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=autocast):
            pred = side.predict(model, batch)
        loss = torch.nn.functional.l1_loss(pred.float(), y)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        times.append(time.perf_counter() - t0)
        if not torch.isfinite(loss):
            raise RuntimeError(f"{side.name}: non-finite training loss")
    timed = times[warm:]
    return {
        f"train_{size}_{dataset}": BATCH * len(timed) / sum(timed),
        f"train_{size}_{dataset}_step_s": times,
        f"train_{size}_{dataset}_atoms_per_structure": n_atoms / (BATCH * len(times)),
        f"params_{size}": n_params,
        f"train_{size}_{dataset}_peak_rss_mb": peak_rss_mb(),
        f"train_{size}_{dataset}_rss_before_mb": base,
        f"train_{size}_{dataset}_peak_reset": reset,
    }


def task_infer(side: Side, spec: dict) -> dict:
    import torch

    dataset = spec["dataset"]
    warm, n = spec["infer_warmup"], spec["infer_batches"]
    graph_batches, _, _ = _prepared_batches(side, dataset, warm + n, spec["max_atoms"])
    torch.manual_seed(SEED)
    model = side.model("paper")
    model.eval()
    times = []
    with torch.no_grad():
        for graphs in graph_batches:
            t0 = time.perf_counter()
            side.predict(model, side.collate(graphs))
            times.append(time.perf_counter() - t0)
    timed = times[warm:]
    return {f"inference_{dataset}": BATCH * len(timed) / sum(timed)}


TASKS = {"graphs": task_graphs, "train": task_train, "infer": task_infer}


def worker(payload: str) -> None:
    job = json.loads(payload)
    if job.get("tuned"):  # hopnet's process-level runtime settings (as hopnet's entry points apply)
        from hopnet.infra.runtime import tune_allocator  # ctypes only: imports no hopnet model code

        if not tune_allocator():
            print("  runtime tuning not applicable here", file=sys.stderr, flush=True)
    import torch

    torch.set_num_threads(job["threads"])
    side = SIDES[job["side"]]()
    result: dict[str, Any] = {"versions": side.versions}
    for spec in job["tasks"]:
        t0 = time.perf_counter()
        result.update(TASKS[spec["task"]](side, spec))
        print(f"  {job['side']} {_task_label(spec)}: {time.perf_counter() - t0:.1f} s", file=sys.stderr, flush=True)
    print("RESULT " + json.dumps(result), flush=True)


def run_worker(side: str, tasks: list[dict], threads: int, log: Callable[[str], None],
               thp: bool = False, tuned: bool = False) -> dict:
    env = dict(os.environ)
    if thp:  # torch's CPU allocator then backs large tensors with transparent huge pages
        env["THP_MEM_ALLOC_ENABLE"] = "1"
    for var in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS"):
        env[var] = str(threads)
    payload = json.dumps({"side": side, "tasks": tasks, "threads": threads, "tuned": tuned})
    log(f"[{side}{' tuned' if tuned else ''}] " + ", ".join(_task_label(t) for t in tasks))
    t0 = time.perf_counter()
    proc = subprocess.run([sys.executable, str(HERE), "--_worker", payload], env=env,
                          stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    for line in proc.stderr.splitlines():
        if line.startswith("  "):
            log(line)
    lines = [ln for ln in proc.stdout.splitlines() if ln.startswith("RESULT ")]
    if proc.returncode != 0 or not lines:
        tail = "\n".join((proc.stderr or proc.stdout).strip().splitlines()[-15:])
        raise RuntimeError(f"{side} worker failed (exit {proc.returncode}):\n{tail}")
    log(f"[{side}]   done in {time.perf_counter() - t0:.1f} s")
    return json.loads(lines[-1][len("RESULT "):])


def _task_label(t: dict) -> str:
    return "-".join(str(t[k]) for k in ("task", "size", "dataset", "precision") if k in t)


# --------------------------------------------------------------------------------------------
# Orchestration
# --------------------------------------------------------------------------------------------


def upstream_available() -> bool:
    """True when ``alignn`` and what the benchmark uses of it import in this environment."""
    probe = ("import alignn.graphs, alignn.torch_graph_builder, jarvis.core.atoms\n"
             "from alignn.models.alignn_atomwise_pure import ALIGNNAtomWisePure\n")
    proc = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True)
    return proc.returncode == 0


def measure_side(side: str, plan: Plan, threads: int, log: Callable[[str], None], thp: bool = False,
                 tuned: bool = False) -> dict:
    common = {"train_warmup": plan.train_warmup, "train_steps": plan.train_steps,
              "infer_warmup": plan.infer_warmup, "infer_batches": plan.infer_batches,
              "graph_bands": plan.graph_bands, "graph_fe": plan.graph_fe, "max_atoms": plan.max_atoms}
    tasks: list[dict] = [{"task": "graphs", **common}]
    tasks += [{"task": "infer", "dataset": d, **common} for d in plan.infer_datasets]
    tasks += _small_tasks(plan)
    fresh: list[dict] = []
    for d in plan.train_datasets:
        t = {"task": "train", "size": "paper", "dataset": d, **common}
        # the paper-size band step gets its own process: its high-water mark is the memory figure
        (fresh if (d == "band" and plan.memory) else tasks).append(t)
    result = run_worker(side, tasks, threads, log, thp, tuned)
    for t in fresh:
        result.update({k: v for k, v in run_worker(side, [t], threads, log, thp, tuned).items()
                       if k != "versions"})
    if plan.memory and "band" in plan.train_datasets:
        result["peak_rss_mb_band_batch"] = result["train_paper_band_peak_rss_mb"]
        base = result["train_paper_band_rss_before_mb"]
        if base is not None:
            result["step_rss_mb_band_batch"] = result["peak_rss_mb_band_batch"] - base
    result["runtime_tuned"] = tuned
    return result


def _small_tasks(plan: Plan) -> list[dict]:
    return [{"task": "train", "size": "small", "dataset": d, "train_warmup": plan.train_warmup,
             "train_steps": plan.small_train_steps, "max_atoms": plan.max_atoms}
            for d in plan.train_datasets]


def repeat_small(results: dict[str, dict], plan: Plan, threads: int, log: Callable[[str], None],
                 thp: bool = False, tuned: dict[str, bool] | None = None) -> None:
    """Small-size training figures over ``plan.small_rounds`` rounds, the sides alternating
    (their first round is the one already in ``results``): a step of 50-300 ms swings with
    whatever else the machine runs, and alternating spreads that over both sides. Each figure
    becomes the median of its rounds; ``<figure>_rounds`` keeps them all."""
    keys = [f"train_small_{d}" for d in plan.train_datasets]
    rounds = {side: {k: [r[k]] for k in keys if k in r} for side, r in results.items()}
    for _ in range(plan.small_rounds - 1):
        for side in results:
            again = run_worker(side, _small_tasks(plan), threads, log, thp, (tuned or {}).get(side, False))
            for k in rounds[side]:
                rounds[side][k].append(again[k])
    for side, per_key in rounds.items():
        for k, vals in per_key.items():
            results[side][k] = statistics.median(vals)
            results[side][k + "_rounds"] = vals


def measure_training(side: str, plan: Plan, threads: int, log: Callable[[str], None], thp: bool = False,
                     tuned: bool = False, precision: str = "32") -> dict:
    """Only the paper-size training figures (band batch in a fresh process for its memory), for the
    extra comparison lines (same allocator on both sides; bf16 mixed precision)."""
    common = {"train_warmup": plan.train_warmup, "train_steps": plan.train_steps,
              "max_atoms": plan.max_atoms, "precision": precision}
    result: dict = {"runtime_tuned": tuned, "precision": precision}
    for d in plan.train_datasets:
        t = {"task": "train", "size": "paper", "dataset": d, **common}
        result.update({k: v for k, v in run_worker(side, [t], threads, log, thp, tuned).items()
                       if k != "versions"})
    if "train_paper_band_peak_rss_mb" in result:
        result["peak_rss_mb_band_batch"] = result["train_paper_band_peak_rss_mb"]
    return result


HEADLINE = {"graphs": "graphs_{p}", "train_step": "train_paper_{p}", "train_step_small": "train_small_{p}",
            "inference": "inference_{p}", "peak_memory": "peak_rss_mb_band_batch"}


def ratios(ours_r: dict, up: dict | None, primary: str) -> tuple[dict, dict]:
    """Headline ratios (ours / upstream; for memory the ratio of peaks, lower is better) and the
    ratio of every figure both sides have."""
    if up is None:
        return {k: None for k in ("graphs", "train_step", "inference")}, {}
    detail = {}
    for key, val in ours_r.items():
        other = up.get(key)
        if isinstance(val, (int, float)) and not isinstance(val, bool) and isinstance(other, (int, float)) \
                and other and not key.endswith(("_n", "_reset")) and "params" not in key:
            detail[key] = val / other
    head = {name: detail.get(tmpl.format(p=primary)) for name, tmpl in HEADLINE.items()}
    return head, detail


def machine_info() -> dict:
    model = platform.processor() or platform.machine()
    try:
        out = subprocess.run(["lscpu"], capture_output=True, text=True).stdout
        for line in out.splitlines():
            if line.startswith("Model name:"):
                model = line.split(":", 1)[1].strip()
    except OSError:
        pass
    ram_gb = None
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal:"):
                ram_gb = round(int(line.split()[1]) / 1024 ** 2, 1)
    except OSError:
        pass
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    return {"cpu": model, "cores": cores, "ram_gb": ram_gb, "python": platform.python_version(),
            "platform": platform.platform()}


def commit() -> str:
    try:
        from hopnet.infra.provenance import git_commit
    except ImportError:
        return "unknown"
    return git_commit(HERE.parent)


TARGETS = {"graphs": ("≥", 5.0), "train_step": ("≥", 2.0), "peak_memory": ("≤", 0.5)}


def table(res: dict) -> str:
    """Markdown table of ours / upstream / ratio."""
    o, u, r = res["ours"], res["upstream"] or {}, res["ratio_detail"]
    rows = [("graphs_band", "graph construction, bands", "structures/s"),
            ("graphs_fe", "graph construction, fe", "structures/s"),
            ("train_paper_band", "training step, paper size, bands", "structures/s"),
            ("train_paper_fe", "training step, paper size, fe", "structures/s"),
            ("train_small_band", "training step, small size, bands", "structures/s"),
            ("train_small_fe", "training step, small size, fe", "structures/s"),
            ("inference_band", "inference, paper size, bands", "structures/s"),
            ("inference_fe", "inference, paper size, fe", "structures/s"),
            ("peak_rss_mb_band_batch", "peak RSS, paper-size training step, band batch", "MiB"),
            ("step_rss_mb_band_batch", "RSS growth in that step (above graphs loaded)", "MiB")]
    out = ["| figure | unit | hopnet | upstream alignn | hopnet / upstream |", "|---|---|---:|---:|---:|"]
    for key, label, unit in rows:
        if key not in o and key not in u:
            continue
        out.append(f"| {label} | {unit} | {_fmt(o.get(key))} | {_fmt(u.get(key))} | {_fmt(r.get(key), 'x')} |")
    return "\n".join(out)


LINE_KEYS = ("train_paper_band", "train_paper_fe", "peak_rss_mb_band_batch")


def _line_ratios(a: dict, b: dict) -> dict:
    """a / b for the paper-size training figures both have (memory: ratio of peaks)."""
    return {k: a[k] / b[k] for k in LINE_KEYS if isinstance(a.get(k), (int, float)) and b.get(k)}


def lines_table(res: dict) -> str:
    """Markdown table of the extra comparison lines (paper-size training only)."""
    o, u, lines = res["ours"], res["upstream"] or {}, res.get("lines") or {}
    out = ["| line | hopnet bands/s | upstream bands/s | ratio | hopnet fe/s | upstream fe/s | ratio "
           "| hopnet peak MiB | upstream peak MiB | ratio |", "|---" * 10 + "|"]

    def row(label: str, a: dict, b: dict) -> None:
        cells = []
        for k in LINE_KEYS:
            r = a.get(k) / b[k] if isinstance(a.get(k), (int, float)) and b.get(k) else None
            cells += [_fmt(a.get(k)), _fmt(b.get(k)), _fmt(r, "x")]
        out.append(f"| {label} | " + " | ".join(cells) + " |")

    tuned = res["config"].get("ours_runtime_tuned")
    row("as shipped (hopnet " + ("tuned" if tuned else "untuned") + ", upstream default)", o, u)
    if "same_allocator" in lines:
        row("same allocator (both tuned), fp32", o, lines["same_allocator"]["upstream"])
    if "bf16_mixed" in lines:
        bf = lines["bf16_mixed"]["ours"]
        ref = lines["same_allocator"]["upstream"] if "same_allocator" in lines else u
        row("hopnet bf16-mixed vs upstream fp32" + (" (both tuned)" if "same_allocator" in lines else ""),
            bf, ref)
    return "\n".join(out)


def _fmt(v: Any, suffix: str = "") -> str:
    if v is None:
        return "–"
    if abs(v) >= 100:
        return f"{v:.0f}{suffix}"
    if abs(v) >= 10:
        return f"{v:.1f}{suffix}"
    return f"{v:.3g}{suffix}"


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--quick", action="store_true", help="few structures and steps (< 1 min on 2 cores)")
    ap.add_argument("--json", type=Path, help="write the results to this JSON file")
    ap.add_argument("--threads", type=int, default=1, help="torch intra-op threads (default 1)")
    ap.add_argument("--sides", default="ours,upstream",
                    help="comma list of ours, upstream (upstream only where alignn imports)")
    ap.add_argument("--train-steps", type=int, help="timed training steps per paper-size figure")
    ap.add_argument("--small-train-steps", type=int, help="timed training steps per small-size figure")
    ap.add_argument("--small-rounds", type=int,
                    help="rounds of the small-size training figures, sides alternating (median)")
    ap.add_argument("--no-memory", action="store_true", help="skip the band-batch memory figure")
    ap.add_argument("--thp", action="store_true",
                    help="set THP_MEM_ALLOC_ENABLE=1 for both sides (huge pages for large tensors)")
    ap.add_argument("--untuned", action="store_true",
                    help="run hopnet without its runtime tuning (hopnet.infra.runtime.tune_allocator)")
    ap.add_argument("--extras", choices=["auto", "on", "off"], default="auto",
                    help="extra training lines: upstream with hopnet's allocator tuning, and hopnet with "
                         "bf16 autocast (auto: on in full runs, off with --quick)")
    ap.add_argument("--_worker", help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if args._worker:
        worker(args._worker)
        return 0

    def log(msg: str) -> None:
        print(msg, file=sys.stderr, flush=True)

    plan = Plan.quick() if args.quick else Plan()
    if args.train_steps:
        plan.train_steps = args.train_steps
    if args.small_train_steps:
        plan.small_train_steps = args.small_train_steps
    if args.small_rounds:
        plan.small_rounds = args.small_rounds
    if args.no_memory:
        plan.memory = False
    sides = [s.strip() for s in args.sides.split(",") if s.strip()]
    t0 = time.perf_counter()
    tuned = not args.untuned
    extras = args.extras == "on" or (args.extras == "auto" and not args.quick)
    ours_r = measure_side("ours", plan, args.threads, log, args.thp, tuned) if "ours" in sides else {}
    up = None
    have_up = "upstream" in sides and upstream_available()
    if have_up:
        up = measure_side("upstream", plan, args.threads, log, args.thp)
    elif "upstream" in sides:
        log("upstream alignn does not import here: upstream = null")
    if plan.small_rounds > 1 and (ours_r or up):
        measured = {k: v for k, v in (("ours", ours_r), ("upstream", up)) if v}
        repeat_small(measured, plan, args.threads, log, args.thp, {"ours": tuned, "upstream": False})
    head, detail = ratios(ours_r, up, plan.primary)
    lines: dict[str, Any] = {}
    if extras and ours_r:
        # same process-level runtime on both sides: what the kernels alone give
        if have_up and tuned:
            up_t = measure_training("upstream", plan, args.threads, log, args.thp, tuned=True)
            lines["same_allocator"] = {"upstream": up_t, "ratio": _line_ratios(ours_r, up_t)}
        # optional mixed precision (NOT equal config): hopnet under bf16 autocast
        bf = measure_training("ours", plan, args.threads, log, args.thp, tuned, precision="bf16-mixed")
        lines["bf16_mixed"] = {"ours": bf, "ratio_vs_upstream": _line_ratios(bf, up) if up else None,
                               "ratio_vs_upstream_same_allocator":
                                   _line_ratios(bf, lines["same_allocator"]["upstream"])
                                   if "same_allocator" in lines else None,
                               "ratio_vs_ours_fp32": _line_ratios(bf, ours_r)}
    res = {
        "ours": ours_r, "upstream": up, "ratio": head, "ratio_detail": detail,
        "targets": {k: {"target": f"{op} {v}", "met": None if head.get(k) is None else
                        (head[k] >= v if op == "≥" else head[k] <= v)} for k, (op, v) in TARGETS.items()},
        "lines": lines,
        "machine": machine_info(), "threads": args.threads, "commit": commit(),
        "config": {"mode": "quick" if args.quick else "full", "batch": BATCH, "seed": SEED, "lr": LR,
                   "loss": "l1", "optimizer": "AdamW (fused)", "thp_mem_alloc": args.thp,
                   "ours_runtime_tuned": tuned, "upstream_runtime_tuned": False, **asdict(plan)},
        "wall_s": time.perf_counter() - t0,
    }
    print(table(res))
    if lines:
        print(lines_table(res))
    print("headline ratios (hopnet / upstream): " + ", ".join(f"{k} {_fmt(v, 'x')}" for k, v in head.items()))
    if args.json:
        from hopnet.infra.provenance import atomic_write_text

        atomic_write_text(args.json, json.dumps(res, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
