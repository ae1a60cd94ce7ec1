"""Process-level settings for CPU training and inference.

glibc serves every allocation above its mmap threshold (at most 32 MB) with a fresh ``mmap``
and gives it back to the kernel on free. ALIGNN's bond-pair tensors (tens of thousands of rows
× hidden features) are far above that, so each training step pays for zero-filling and faulting
in gigabytes of fresh pages: on this project's CPUs that was 3-4× the arithmetic
(``benchmarks/encoder_micro.py --malloc-cache``). :func:`tune_allocator` keeps freed memory in
the heap instead. The command line calls it for ``hopnet train`` / ``pretrain`` / ``finetune`` /
``reproduce``, and the benchmarks do; the library never does (a Python caller opts in by calling
it), and nothing does at import. ``HOPNET_TUNE_ALLOCATOR=0`` turns it off.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import logging
import os
import sys

log = logging.getLogger(__name__)

_M_TRIM_THRESHOLD = -1
_M_MMAP_MAX = -4
_done = False


def env_flag(name: str, default: bool = False) -> bool:
    """A yes/no environment variable: unset or empty gives ``default``; ``0``, ``false`` and
    ``no`` (any case) are off; anything else is on."""
    value = os.environ.get(name, "").strip().lower()
    return default if not value else value not in ("0", "false", "no")


def tune_allocator() -> bool:
    """Keep large freed blocks in the heap (glibc only). Returns True when applied.

    Process-wide and idempotent; a no-op (False) off Linux/glibc or with
    ``HOPNET_TUNE_ALLOCATOR=0`` in the environment."""
    global _done
    if _done:
        return True
    if not env_flag("HOPNET_TUNE_ALLOCATOR", default=True):
        return False
    if not sys.platform.startswith("linux"):
        return False
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        mallopt = libc.mallopt
    except (OSError, AttributeError):
        return False
    mallopt.argtypes = [ctypes.c_int, ctypes.c_int]
    ok = bool(mallopt(_M_MMAP_MAX, 0)) and bool(mallopt(_M_TRIM_THRESHOLD, 2**30))
    _done = ok
    log.debug("glibc allocator tuned for large tensors: %s", ok)
    return ok
