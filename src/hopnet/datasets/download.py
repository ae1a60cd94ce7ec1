"""Content hashing and checksum-verified downloads into the user cache.

A download is streamed into a temporary file next to its destination, verified against the
pinned sha256 and only then moved into place with :func:`os.replace`, so the cache never holds a
half-written or unverified file.
"""

from __future__ import annotations

import gzip
import hashlib
import logging
import os
import tempfile
import urllib.error
import urllib.request
from pathlib import Path

from hopnet.infra.errors import DataError

log = logging.getLogger(__name__)

GZIP_MAGIC = b"\x1f\x8b"


class DownloadFailed(DataError):
    """No URL could be fetched (network error, HTTP error); a checksum mismatch is a plain DataError."""
_CHUNK = 1 << 20


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


def download_verified(urls: list[str], dest: Path, sha256: str, *, timeout: float = 60.0) -> Path:
    """Fetch the first URL that answers into ``dest`` and check its content sha256.

    The file is stored as ``dest`` when the payload is gzipped and as ``dest`` without ``.gz``
    otherwise; the path written is returned. A checksum mismatch raises :class:`DataError` and
    leaves nothing behind; when no URL answers, :class:`DownloadFailed` lists the errors.
    """
    if not sha256:
        raise DataError(f"no pinned sha256 for {dest.name}; refusing an unverified download")
    dest.parent.mkdir(parents=True, exist_ok=True)
    errors: list[str] = []
    for url in urls:
        fd, tmp_name = tempfile.mkstemp(prefix=f".{dest.name}.", suffix=".part", dir=dest.parent)
        tmp = Path(tmp_name)
        try:
            try:
                log.info("downloading %s", url)
                with os.fdopen(fd, "wb") as out, urllib.request.urlopen(url, timeout=timeout) as resp:
                    while chunk := resp.read(_CHUNK):
                        out.write(chunk)
            except urllib.error.HTTPError as exc:
                errors.append(f"{url}: HTTP {exc.code} {exc.reason}")
                continue
            except (urllib.error.URLError, OSError, ValueError) as exc:
                errors.append(f"{url}: {getattr(exc, 'reason', exc)}")
                continue
            got = content_sha256(tmp)
            if got != sha256:
                raise DataError(
                    f"checksum mismatch for {url}: sha256 {got[:12]}... != pinned {sha256[:12]}...; file discarded"
                )
            final = dest if is_gzip(tmp) else (dest.with_suffix("") if dest.suffix == ".gz" else dest)
            os.replace(tmp, final)
            log.info("stored %s", final)
            return final
        finally:
            tmp.unlink(missing_ok=True)
    raise DownloadFailed(f"download of {dest.name} failed: {'; '.join(errors) or 'no URL'}")
