"""Shared pieces of the transfer-learning experiments: fold-wise fine-tuning with a held-out
test fold, metrics, a resumable JSON-lines result file. ``--quick`` profiles are for CPU smoke
runs; the full settings are for a GPU (see each script's docstring)."""

from __future__ import annotations

import json
import logging
import time
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np
import torch

from hopnet.datasets.multiprop import MultiPropertyDataset
from hopnet.metrics import regression_metrics
from hopnet.infra.provenance import append_jsonl, read_jsonl, run_record
from hopnet.training.config import TrainingConfig
from hopnet.models.property import PropertyGraphs, load_property_model, predict_graphs
from hopnet.training.pretrain import finetune, sample_indices

log = logging.getLogger("experiments.transfer")


def quick_training(epochs: int = 1) -> TrainingConfig:
    return TrainingConfig(epochs=epochs, batch_size=8, lr=1e-3, val_fraction=0.2, patience=0,
                          progress_bar=False, cache_dir="none")


# CPU profile: pre-training gets the same number of structure passes for every source (pair-wise
# or MPT), so the comparison is at equal pre-training compute; fine-tuning the same budget for all.
CPU_PT_PASSES = 105_000


def add_profile_flags(ap: Any, quick_help: str) -> None:
    """``--profile quick|cpu|gpu`` (default gpu: the paper-size runs) and ``--quick`` (= quick)."""
    ap.add_argument("--quick", action="store_true", help=f"{quick_help} (= --profile quick)")
    ap.add_argument("--profile", choices=("quick", "cpu", "gpu"), default="gpu")


def profile_of(args: Any) -> str:
    return "quick" if args.quick else args.profile


def cpu_pretraining(n_rows: int) -> TrainingConfig:
    epochs = max(3, round(CPU_PT_PASSES / max(n_rows, 1)))
    return TrainingConfig(epochs=epochs, batch_size=32, lr=2e-3, val_fraction=0.05, patience=0,
                          progress_bar=False)


def cpu_training(epochs: int = 40) -> TrainingConfig:
    return TrainingConfig(epochs=epochs, batch_size=16, lr=1e-3, val_fraction=0.1, patience=10,
                          progress_bar=False)


def full_training(epochs: int = 100, accelerator: str = "auto") -> TrainingConfig:
    return TrainingConfig(epochs=epochs, batch_size=32, lr=1e-3, val_fraction=0.1, patience=20,
                          accelerator=accelerator, progress_bar=False)


def read_rows(path: Path) -> list[dict]:
    """The rows of a JSON-lines result file ([] when it does not exist yet; a last line cut short
    by a killed run is dropped)."""
    return read_jsonl(path)


def done_keys(path: Path) -> set[str]:
    return {row["key"] for row in read_rows(path)}


def append(path: Path, row: dict) -> None:
    """Append one result row (fsynced; see :func:`hopnet.infra.provenance.append_jsonl`)."""
    append_jsonl(path, row)


def finetune_and_test(source: str | None, train: MultiPropertyDataset, test: MultiPropertyDataset,
                      strategy: str, training: TrainingConfig, out: Path, encoder: Any = None,
                      size: int | None = None, sampling: str = "random") -> dict:
    """Fine-tune (or train from scratch when ``source`` is None) on ``size`` entries of ``train``
    and score on ``test`` (data units). Returns metrics + timing."""
    idx = sample_indices(train.targets[:, 0], size, sampling, training.seed)
    t0 = time.time()
    folder = finetune(source, train.subset(idx), strategy, training, out, resume=True, encoder=encoder)
    seconds = time.time() - t0
    models, cfg, _ = load_property_model(folder)
    pred = predict_graphs(models, PropertyGraphs(test, cfg.graph, None), training.batch_size)[:, 0]
    m = regression_metrics(test.targets[:, 0], pred)
    return {"n_train": int(len(idx)), "n_test": len(test), "seconds": round(seconds, 1),
            "mae": m["mae"], "r2": m["r2"], "rmse": m["rmse"]}


def summarise(rows: list[dict], by: str) -> dict:
    out: dict[str, dict] = {}
    for name in sorted({r[by] for r in rows}):
        sel = [r for r in rows if r[by] == name]
        r2 = np.array([r["r2"] for r in sel])
        mae = np.array([r["mae"] for r in sel])
        out[name] = {"n": len(sel), "r2_mean": float(r2.mean()), "r2_sd": float(r2.std(ddof=1)) if len(sel) > 1 else 0.0,
                     "mae_mean": float(mae.mean()), "mae_sd": float(mae.std(ddof=1)) if len(sel) > 1 else 0.0}
    return out


def record(config: Any, seed: int, data_hash: str | None = None) -> dict:
    return run_record(config=config, seed=seed, data_hash=data_hash)


def model_training(folder: str | Path) -> dict | None:
    """The training config a model folder was trained with (its config.json; None when absent)."""
    cfg = Path(folder) / "config.json"
    return json.loads(cfg.read_text()).get("training") if cfg.is_file() else None


def setup() -> None:
    torch.set_num_threads(max(1, torch.get_num_threads()))
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    from hopnet.infra.runtime import tune_allocator

    tune_allocator()


__all__ = ["read_rows", "add_profile_flags", "profile_of", "append", "model_training", "cpu_pretraining", "cpu_training", "done_keys", "finetune_and_test", "full_training", "quick_training", "record",
           "replace", "setup", "summarise"]
