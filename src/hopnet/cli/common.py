"""Checks every subcommand makes of its flags before any work starts (one error line each)."""

from __future__ import annotations

import argparse
import math
import os
from pathlib import Path

from hopnet.infra.errors import HopnetError


def check_threshold(value: float, flag: str = "--threshold") -> float:
    """A conductor threshold: a finite, positive number of eV."""
    v = float(value)
    if not (math.isfinite(v) and v > 0):
        raise HopnetError(f"{flag} must be a positive number of eV, got {value}")
    return v


def check_output_file(path: str | os.PathLike | None, flag: str) -> None:
    """``path`` can be written as a file: it is not a folder, it is not read-only, and its folder
    exists (or can be made) and takes new files. Nothing is left behind by the check."""
    if path is None:
        return
    target = Path(path)
    if target.is_dir():
        raise HopnetError(f"{flag} {path} is a folder, not a file")
    folder = target.parent
    try:
        folder.mkdir(parents=True, exist_ok=True)
        probe = folder / f".hopnet-write-test.{os.getpid()}"
        probe.write_bytes(b"")
        probe.unlink()
    except OSError as exc:
        raise HopnetError(f"{flag} {path}: cannot write in {folder}: {exc.strerror or exc}") from None
    if target.exists() and not os.access(target, os.W_OK):
        raise HopnetError(f"{flag} {path}: the file is read-only")


def add_optimiser_flags(p: argparse.ArgumentParser) -> None:
    """--epochs/--batch-size/--lr/--seed/--ensemble: the TrainingConfig fields every training
    command takes (None: the config's default, named in the help)."""
    p.add_argument("--epochs", type=int, default=None, help="training epochs (default 100)")
    p.add_argument("--batch-size", type=int, default=None, help="structures per batch (default 16)")
    p.add_argument("--lr", type=float, default=None, help="peak learning rate of AdamW, > 0 (default 0.001)")
    p.add_argument("--seed", type=int, default=None, help="random seed of member 0 (default 0)")
    p.add_argument("--ensemble", type=int, default=None,
                   help="number of members, seeds seed..seed+K-1 (default 1)")
