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


def add_config_flag(p: argparse.ArgumentParser) -> None:
    """``--config FILE.yaml``: flag values from a YAML mapping (read by :func:`apply_flag_file`)."""
    p.add_argument("--config", default=None, metavar="FILE.yaml",
                   help="YAML mapping of flag names to values (e.g. 'lr: 0.001', 'strategy: freeze-line'); "
                        "flags given on the command line override it (default: none)")


def apply_flag_file(sub: argparse.ArgumentParser, path: str) -> None:
    """Make the values of the YAML flag file ``path`` the defaults of ``sub`` (so the command
    line still overrides them). Keys are flag names (``batch-size`` or ``batch_size``); an
    unknown key or a value the flag refuses is one error line."""
    import yaml

    try:
        raw = yaml.safe_load(Path(path).read_text())
    except FileNotFoundError:
        raise HopnetError(f"--config {path}: file not found") from None
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        raise HopnetError(f"--config {path}: not valid YAML{f' at line {mark.line + 1}' if mark else ''}") from None
    if not isinstance(raw, dict):
        raise HopnetError(f"--config {path}: must hold a mapping of flag names to values")
    actions = {a.dest: a for a in sub._actions if a.dest not in ("help", "config", "func")}
    defaults = {}
    for key, value in raw.items():
        dest = str(key).replace("-", "_")
        action = actions.get(dest) or next((a for a in actions.values() if f"--{key}" in a.option_strings), None)
        if action is None:
            raise HopnetError(f"--config {path}: unknown key {key!r}; known: {', '.join(sorted(actions))}")
        if action.type is not None and value is not None:
            try:
                value = action.type(value)
            except (TypeError, ValueError):
                raise HopnetError(f"--config {path}: {key}: invalid value {value!r}") from None
        if action.choices is not None and value not in action.choices:
            raise HopnetError(f"--config {path}: {key} must be one of {', '.join(map(str, action.choices))}, "
                              f"got {value!r}")
        defaults[action.dest] = value
    sub.set_defaults(**defaults)


def require(args: argparse.Namespace, **flags: str) -> None:
    """One error line for the first of ``flags`` (dest=flag) that neither the command line nor
    the --config file gave."""
    for dest, flag in flags.items():
        if getattr(args, dest, None) in (None, ""):
            raise HopnetError(f"{flag} is required (on the command line or in the --config file)")
