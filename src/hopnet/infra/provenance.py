"""What every result file records: package version, git commit, data hash, seed, config."""

from __future__ import annotations

import hashlib
import json
import os
import platform
import random
import subprocess
from pathlib import Path
from typing import Any

import numpy as np

from hopnet.infra import package_version  # noqa: F401 (re-exported: every result file records it)


def git_commit(cwd: str | os.PathLike | None = None) -> str:
    """The commit of the source tree hopnet runs from ("unknown" outside a git checkout)."""
    here = Path(cwd) if cwd is not None else Path(__file__).resolve().parent
    try:
        out = subprocess.run(
            ["git", "rev-parse", "HEAD"], cwd=here, capture_output=True, text=True, timeout=5
        )
    except (OSError, subprocess.SubprocessError):
        return "unknown"
    if out.returncode != 0:
        return "unknown"
    commit = out.stdout.strip()
    dirty = subprocess.run(
        ["git", "status", "--porcelain", "--untracked-files=no"],
        cwd=here, capture_output=True, text=True, timeout=5,
    )
    return commit + ("-dirty" if dirty.returncode == 0 and dirty.stdout.strip() else "")


def hash_json(obj: Any) -> str:
    """sha256 of the canonical JSON text of ``obj`` (keys sorted)."""
    text = json.dumps(obj, sort_keys=True, separators=(",", ":"), default=_jsonable)
    return hashlib.sha256(text.encode()).hexdigest()


def _jsonable(o: Any) -> Any:
    if isinstance(o, np.ndarray):
        return o.tolist()
    if isinstance(o, (np.floating, np.integer)):
        return o.item()
    if isinstance(o, Path):
        return str(o)
    if hasattr(o, "__dataclass_fields__"):
        from dataclasses import asdict

        return asdict(o)
    raise TypeError(f"not JSON serialisable: {type(o).__name__}")


def seed_everything(seed: int) -> None:
    """Seed python, numpy and torch (CPU determinism)."""
    random.seed(seed)
    np.random.seed(seed % (2**32))
    import torch

    torch.manual_seed(seed)


def run_record(config: Any = None, seed: int | None = None, data_hash: str | None = None) -> dict:
    """The provenance block stored in every result file and model folder."""
    return {
        "hopnet_version": package_version(),
        "git_commit": git_commit(),
        "python": platform.python_version(),
        "platform": platform.platform(),
        "seed": seed,
        "data_hash": data_hash,
        "config": json.loads(json.dumps(config, default=_jsonable)) if config is not None else None,
    }


def atomic_write_text(path: str | os.PathLike, text: str) -> None:
    """Write a file so that readers see either the old or the whole new content, never half."""
    atomic_write_bytes(path, text.encode())


def atomic_write_bytes(path: str | os.PathLike, data: bytes) -> None:
    """Write ``data`` so that readers see either the old or the whole new file (:func:`atomic_write_with`)."""
    atomic_write_with(path, lambda fh: fh.write(data))


def atomic_write_with(path: str | os.PathLike, write: Any) -> None:
    """``write(fh)`` into a temporary sibling opened for binary writing, flushed to disk (fsync)
    and renamed over ``path``: a crash or a SIGKILL at any point leaves either the old file or
    the whole new one."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    remove_stale_temporaries(path)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        with open(tmp, "wb") as fh:
            write(fh)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def remove_stale_temporaries(path: str | os.PathLike) -> int:
    """Delete the temporaries that writers killed before their rename left next to ``path``
    (``.<name>.<pid>[.<anything>].tmp`` files and ``.<name>.<pid>.<anything>`` folders) whose
    process no longer runs; those of live processes (concurrent writers) are kept. Returns how
    many were removed."""
    import glob
    import shutil

    path = Path(path)
    if not path.parent.is_dir():
        return 0
    removed = 0
    for p in path.parent.glob(f".{glob.escape(path.name)}.*"):
        pid_text = p.name[len(path.name) + 2:].split(".", 1)[0]
        if not pid_text.isdigit() or _process_alive(int(pid_text)):
            continue
        if p.is_dir() and not p.is_symlink():
            shutil.rmtree(p, ignore_errors=True)
        elif p.name.endswith(".tmp"):
            p.unlink(missing_ok=True)
        else:
            continue
        removed += 1
    return removed


def _process_alive(pid: int) -> bool:
    if pid == os.getpid():
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except (PermissionError, OverflowError):
        return True  # another user's process, or not a pid: keep the file
    return True


def cut_partial_line(path: str | os.PathLike) -> None:
    """Cut a last line left without its newline by a run killed mid-write (a line-per-record
    file then holds whole records only); nothing happens to a missing or whole file."""
    path = Path(path)
    if not (path.is_file() and path.stat().st_size):
        return
    with open(path, "rb") as fh:  # only the last byte, unless there is a fragment to cut
        fh.seek(-1, os.SEEK_END)
        whole = fh.read(1) == b"\n"
    if not whole:
        os.truncate(path, path.read_bytes().rfind(b"\n") + 1)


def append_jsonl(path: str | os.PathLike, record: dict) -> None:
    """Append one JSON line to a results file and fsync it. A last line left without its newline
    by a run killed mid-write is cut off first, so the file stays one record per line."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    text = json.dumps(record, sort_keys=True, default=_jsonable)
    cut_partial_line(path)
    with open(path, "a") as fh:
        fh.write(text + "\n")
        fh.flush()
        os.fsync(fh.fileno())


def read_jsonl(path: str | os.PathLike) -> list[dict]:
    """The records of a file written by :func:`append_jsonl` ([] when absent). A cut-short last
    line (an interrupted run) is ignored with a warning; a bad line elsewhere is a DataError."""
    import logging

    from hopnet.infra.errors import DataError

    p = Path(path)
    if not p.is_file():
        return []
    rows = []
    lines = p.read_text(errors="replace").splitlines()
    for k, line in enumerate(lines):
        if not line.strip():
            continue
        try:
            rows.append(json.loads(line))
        except json.JSONDecodeError:
            if k == len(lines) - 1:
                logging.getLogger(__name__).warning("%s: ignoring a truncated last line", p)
                continue
            raise DataError(f"{p}: line {k + 1} is not JSON; the results file is damaged") from None
    return rows
