"""Typed training configuration, and the run file of ``hopnet train --config FILE.yaml``.

Run file layout (every key optional; keys map 1:1 to the dataclass fields, unknown keys are an
error)::

    data: migration-barriers     # registered name or a .json/.json.gz path
    model: gnn                   # gnn | classical
    out: runs/model3
    folds: 5                     # with fold: train on that grouped fold's training part only
    fold: 0
    gnn:                         # BarrierModelConfig
      variant: band
      encoder: small             # "paper" | "small" | {preset: small, hidden_features: 64, ...}
      graph: {mobile_flag: true}
      crop_radius: 5.0
    training:                    # TrainingConfig
      epochs: 50
      batch_size: 16
    classical: {}                # ClassicalConfig fields (hopnet.models.classical)
"""

from __future__ import annotations

import math

import os
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Literal

from hopnet.infra.configs import check_keys
from hopnet.infra.errors import HopnetError
from hopnet.models.barrier import BarrierModelConfig

Schedule = Literal["onecycle", "cosine"]
SCHEDULES = ("onecycle", "cosine")
Precision = Literal["32-true", "bf16-mixed"]
PRECISIONS = ("32-true", "bf16-mixed")


class TrainingConfigError(HopnetError, ValueError):
    """A training configuration or run file holds an invalid value or an unknown key."""


def _check_keys(cls: type, data: dict, what: str) -> None:
    check_keys(cls, data, what, TrainingConfigError)


@dataclass(frozen=True)
class TrainingConfig:
    """How a barrier model is trained.

    * ``lr``: peak learning rate of AdamW; ``schedule``: ``"onecycle"`` (warm-up then anneal) or
      ``"cosine"`` (cosine decay), both stepped per batch.
    * ``val_fraction``: share of the training paths held out (whole compounds) as the validation
      fold for early stopping and model selection; 0 = none (the last epoch is kept).
    * ``patience``: epochs without a better validation MAE before stopping (0 = never stop early).
    * ``ensemble``: members trained with seeds ``seed, seed + 1, ...``.
    * ``max_batch_atoms`` / ``max_batch_line_edges``: caps per batch besides ``batch_size``.
    * ``devices`` / ``accelerator`` / ``strategy`` / ``num_nodes``: passed to Lightning's
      ``Trainer`` as they are (``devices=2, strategy="ddp"`` = two DDP processes, gloo on CPU);
      each process then takes every world-size-th batch.
    * ``precision``: Lightning's precision, ``"32-true"`` (default) or ``"bf16-mixed"`` (bf16
      autocast: on CPUs with AVX512-BF16 about 1.9x faster and 0.57x the memory of the fp32 step
      at paper size, docs/benchmarks.md; bf16 numerics, so opt-in).
    * ``float16_weights``: store the weights in half precision (half the file size).
    * ``cache_dir``: graph cache folder (None = ``$HOPNET_CACHE_DIR/graphs`` or ``~/.cache``);
      ``"none"`` disables the disk cache.
    """

    epochs: int = 100
    batch_size: int = 16
    lr: float = 1e-3
    weight_decay: float = 1e-5
    schedule: Schedule = "onecycle"
    patience: int = 20
    val_fraction: float = 0.1
    seed: int = 0
    ensemble: int = 1
    num_workers: int = 0
    devices: int | str = 1
    accelerator: str = "cpu"
    strategy: str = "auto"
    num_nodes: int = 1
    max_batch_atoms: int | None = 6000
    max_batch_line_edges: int | None = 600_000
    gradient_clip: float | None = None
    precision: Precision = "32-true"
    float16_weights: bool = False
    progress_bar: bool = True
    cache_dir: str | None = None

    def __post_init__(self) -> None:
        ints = {"epochs": 1, "batch_size": 1, "patience": 0, "ensemble": 1, "num_workers": 0, "seed": 0,
                "num_nodes": 1}
        for name, low in ints.items():
            v = getattr(self, name)
            if isinstance(v, bool) or not isinstance(v, int) or v < low:
                raise TrainingConfigError(f"training.{name} must be an int >= {low}, got {v!r}")
        for name in ("lr", "weight_decay"):
            v = getattr(self, name)
            if (isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v) or v < 0
                    or (name == "lr" and v == 0)):
                raise TrainingConfigError(f"training.{name} must be a {'positive' if name == 'lr' else 'non-negative'} number, got {v!r}")
        if self.schedule not in SCHEDULES:
            raise TrainingConfigError(f"training.schedule must be one of {', '.join(SCHEDULES)}, got {self.schedule!r}")
        if self.precision not in PRECISIONS:
            raise TrainingConfigError(f"training.precision must be one of {', '.join(PRECISIONS)}, "
                                      f"got {self.precision!r}")
        if isinstance(self.val_fraction, bool) or not isinstance(self.val_fraction, (int, float)) \
                or not 0 <= self.val_fraction < 1:
            raise TrainingConfigError(f"training.val_fraction must be in [0, 1), got {self.val_fraction!r}")
        for name in ("max_batch_atoms", "max_batch_line_edges"):
            v = getattr(self, name)
            if v is not None and (isinstance(v, bool) or not isinstance(v, int) or v < 1):
                raise TrainingConfigError(f"training.{name} must be a positive int or null, got {v!r}")
        if self.gradient_clip is not None and not (isinstance(self.gradient_clip, (int, float))
                                                   and self.gradient_clip > 0):
            raise TrainingConfigError(f"training.gradient_clip must be > 0 or null, got {self.gradient_clip!r}")

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "TrainingConfig":
        _check_keys(cls, data, "training")
        return cls(**data)


@dataclass
class RunConfig:
    """Everything ``hopnet train`` needs: data, model kind, output folder, fold, configs."""

    data: str = "migration-barriers"
    model: str = "gnn"
    out: str | None = None
    folds: int | None = None
    fold: int | None = None
    gnn: BarrierModelConfig = field(default_factory=BarrierModelConfig)
    training: TrainingConfig = field(default_factory=TrainingConfig)
    classical: dict = field(default_factory=dict)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "RunConfig":
        data = dict(data or {})
        _check_keys(cls, data, "run file")
        if "gnn" in data:
            data["gnn"] = BarrierModelConfig.from_dict(data["gnn"] or {})
        if "training" in data:
            data["training"] = TrainingConfig.from_dict(data["training"] or {})
        if "classical" in data and not isinstance(data["classical"] or {}, dict):
            raise TrainingConfigError("classical must be a mapping of ClassicalConfig fields")
        run = cls(**data)
        run.classical = dict(run.classical or {})
        if run.model not in ("gnn", "classical"):
            raise TrainingConfigError(f"model must be 'gnn' or 'classical', got {run.model!r}")
        return run


def load_run_config(path: str | os.PathLike) -> RunConfig:
    """Read a YAML run file (see the module docstring)."""
    import yaml

    p = Path(path)
    try:
        raw = yaml.safe_load(p.read_text())
    except FileNotFoundError:
        raise TrainingConfigError(f"config file {p} not found") from None
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" at line {mark.line + 1}" if mark is not None else ""
        raise TrainingConfigError(f"config file {p} is not valid YAML{where}") from None
    if raw is None:
        raw = {}
    if not isinstance(raw, dict):
        raise TrainingConfigError(f"config file {p} must hold a mapping at the top level")
    try:
        return RunConfig.from_dict(raw)
    except TypeError as exc:
        raise TrainingConfigError(f"config file {p}: {exc}") from None
    except HopnetError as exc:
        raise TrainingConfigError(f"config file {p}: {exc}") from None
