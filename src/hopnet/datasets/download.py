"""Content hashing, cache paths and resumable, checksum-verified downloads.

A file is downloaded into ``<dest>.part``, checked against its pinned sha256 and only then renamed
to ``dest`` (:func:`os.replace`), so ``dest`` never holds a half-written or unverified file. An
interrupted transfer keeps the ``.part`` file; the next attempt asks for the missing bytes with an
HTTP ``Range`` request (a server that ignores it sends the whole file, which then starts over).
Progress goes to stderr: a running byte count on a terminal and one line per finished file.
"""

from __future__ import annotations

import gzip
import hashlib
import http.client
import logging
import os
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from pathlib import Path

from hopnet.infra.errors import DataError
from hopnet.infra.integrity import sha256_file

log = logging.getLogger(__name__)

GZIP_MAGIC = b"\x1f\x8b"
_CHUNK = 1 << 20
#: seconds to wait before resuming an interrupted transfer within one call
RETRY_PAUSE_S = 1.0


class DownloadFailed(DataError):
    """A file could not be fetched (network error, HTTP error); a checksum mismatch is a plain DataError."""


class NotFound(DownloadFailed):
    """The server has no such file (HTTP 404 or 410)."""


class _Interrupted(Exception):
    """A transfer stopped before its end; what arrived is kept in the ``.part`` file."""


def is_gzip(path: str | os.PathLike) -> bool:
    """True when the file starts with the gzip magic bytes (independent of its suffix)."""
    with open(path, "rb") as fh:
        return fh.read(2) == GZIP_MAGIC


def content_sha256(path: str | os.PathLike) -> str:
    """sha256 of the file's content, decompressed first when the file is gzipped."""
    h = hashlib.sha256()
    opener = gzip.open if is_gzip(path) else open
    try:
        with opener(path, "rb") as fh:
            while chunk := fh.read(_CHUNK):
                h.update(chunk)
    except (OSError, EOFError) as exc:
        raise DataError(f"cannot read {path}: {exc}") from None
    return h.hexdigest()


def default_cache_dir() -> Path:
    """``$HOPNET_CACHE_DIR`` or ``~/.cache/hopnet/datasets``."""
    env = os.environ.get("HOPNET_CACHE_DIR")
    return Path(env).expanduser() if env else Path.home() / ".cache" / "hopnet" / "datasets"


def cache_candidates(cache_dir: Path, relpath: str) -> list[Path]:
    """Where a cached copy of ``relpath`` may lie: as given and without/with the ``.gz`` suffix."""
    p = cache_dir / relpath
    alt = p.with_suffix("") if p.suffix == ".gz" else p.with_name(p.name + ".gz")
    return [p, alt]


def format_size(n: float) -> str:
    """``n`` bytes for people: ``512 B``, ``12.3 kB``, ``4.1 MB`` (powers of 1000)."""
    for unit in ("B", "kB", "MB"):
        if n < 1000:
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1000
    return f"{n:.1f} GB"


class Progress:
    """Progress of one file on stderr: a running byte count on a terminal (a few updates a
    second), and one line when the file is complete. ``enabled=False`` prints nothing."""

    def __init__(self, label: str, enabled: bool = True) -> None:
        self.label, self.enabled = label, enabled
        self.done, self.total, self._shown = 0, None, 0.0

    def start(self, done: int, total: int | None) -> None:
        self.done, self.total = done, total

    def advance(self, n: int) -> None:
        self.done += n
        now = time.monotonic()
        if self.enabled and sys.stderr.isatty() and now - self._shown > 0.2:
            self._shown = now
            of = f" of {format_size(self.total)}" if self.total else ""
            print(f"\r  {self.label}: {format_size(self.done)}{of}", end="", file=sys.stderr, flush=True)

    def finish(self, size: int, note: str = "") -> None:
        if self.enabled:
            end = f" ({note})" if note else ""
            print(f"\r  {self.label}: {format_size(size)}{end}\x1b[K" if sys.stderr.isatty()
                  else f"  {self.label}: {format_size(size)}{end}", file=sys.stderr, flush=True)


def _range_start(resp: http.client.HTTPResponse) -> int | None:
    """First byte of a 206 answer (``Content-Range: bytes START-END/TOTAL``), None otherwise."""
    value = resp.headers.get("Content-Range", "")
    try:
        return int(value.split()[1].split("-")[0]) if value.startswith("bytes ") else None
    except (IndexError, ValueError):
        return None


def _open(url: str, have: int, timeout: float) -> http.client.HTTPResponse:
    """GET ``url``, asking for the bytes from ``have`` on when ``have`` > 0."""
    headers = {"Range": f"bytes={have}-"} if have else {}
    try:
        return urllib.request.urlopen(urllib.request.Request(url, headers=headers), timeout=timeout)
    except urllib.error.HTTPError as exc:
        if exc.code == 416 and have:  # the part is not a prefix of the file: start over
            raise _Interrupted("the server refused the resume range") from None
        cls = NotFound if exc.code in (404, 410) else DownloadFailed
        raise cls(f"{url}: HTTP {exc.code} {exc.reason}") from None
    except ValueError as exc:  # not a URL urllib can fetch
        raise DownloadFailed(f"{url}: {exc}") from None
    except (urllib.error.URLError, OSError, http.client.HTTPException) as exc:
        raise _Interrupted(str(getattr(exc, "reason", exc))) from None


def _transfer(url: str, part: Path, bar: Progress, timeout: float) -> int:
    """One attempt: continue (or start) ``part`` from ``url``; returns the byte it resumed at."""
    have = part.stat().st_size if part.is_file() else 0
    try:
        resp = _open(url, have, timeout)
    except _Interrupted:
        if have:  # e.g. 416: what we hold cannot be continued
            part.unlink(missing_ok=True)
        raise
    with resp:
        if not (have and resp.status == 206 and _range_start(resp) == have):
            have = 0  # the server ignored the range (or there was none): the whole file follows
        length = resp.headers.get("Content-Length")
        total = have + int(length) if length and length.isdigit() else None
        bar.start(have, total)
        with open(part, "ab" if have else "wb") as out:
            try:
                while chunk := resp.read(_CHUNK):
                    out.write(chunk)
                    bar.advance(len(chunk))
            except (OSError, http.client.HTTPException) as exc:
                raise _Interrupted(str(exc) or type(exc).__name__) from None
            out.flush()
            os.fsync(out.fileno())
    size = part.stat().st_size
    if total is not None and size < total:
        raise _Interrupted(f"connection closed after {size} of {total} bytes")
    return have


def fetch_file(url: str, dest: Path, sha256: str | None, *, label: str | None = None,
               digest: Callable[[Path], str] = sha256_file, retries: int = 2, timeout: float = 60.0,
               progress: bool = True) -> int:
    """Download ``url`` to ``dest``, resumably, and check it; returns the size of ``dest``.

    A file already at ``dest`` that matches ``sha256`` is kept (a mismatching one is replaced).
    ``digest`` computes the checksum compared with ``sha256`` (raw sha256 by default; None =
    unpinned, only for files whose converted result is pinned). An interrupted transfer is
    resumed up to ``retries`` times in this call, and from the kept ``.part`` by a later call. A
    mismatch deletes the download and raises :class:`DataError` naming the file and both sums.
    """
    label = label or dest.name
    if dest.is_file() and (sha256 is None or digest(dest) == sha256):
        Progress(label, progress).finish(dest.stat().st_size, "downloaded before")
        return dest.stat().st_size
    part = dest.with_name(dest.name + ".part")
    dest.parent.mkdir(parents=True, exist_ok=True)
    bar = Progress(label, progress)
    for attempt in range(retries + 1):
        try:
            resumed = _transfer(url, part, bar, timeout)
            break
        except _Interrupted as exc:
            if attempt == retries:
                kept = part.stat().st_size if part.is_file() else 0
                tail = f"; {kept} bytes kept in {part}: run again to resume" if kept else ""
                raise DownloadFailed(f"download of {label} from {url} failed: {exc}{tail}") from None
            log.info("%s: %s; resuming", label, exc)
            time.sleep(RETRY_PAUSE_S)
    got = digest(part)
    if sha256 is not None and got != sha256:
        part.unlink()
        raise DataError(f"checksum mismatch for {label} ({url}): sha256 {got} != pinned {sha256}; "
                        "file discarded")
    os.replace(part, dest)
    size = dest.stat().st_size
    bar.finish(size, f"resumed at byte {resumed}" if resumed else "")
    return size
