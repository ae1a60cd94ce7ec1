"""Sealed on-disk cache of universal-potential NEB results.

A result is stored as ``<root>/<aa>/<key>.json``, a sealed file (:mod:`hopnet.infra.integrity`: payload
+ sha256 trailer, written via temporary file + fsync + rename). The key is the sha256 of

* the band the NEB ran on (after the canonical cell was built, so the same hop given in any
  cell, order, origin or orientation has one key when ``cell="canonical"``): lattice, species and
  fractional coordinates rounded to 6 decimals;
* the potential and its version (``chgnet 0.4.2 model 0.3.0``);
* every setting that changes the result (:class:`hopnet.neb.NebConfig` without ``device``).

A damaged file is removed and recomputed, never used. Default root: ``$HOPNET_CACHE_DIR/neb``,
else ``~/.cache/hopnet/neb``.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
from dataclasses import asdict
from pathlib import Path
from typing import Any

log = logging.getLogger(__name__)

__all__ = ["NebCache", "TableCache", "default_neb_cache_root", "CACHE_VERSION"]

CACHE_VERSION = 1
_IGNORED = ("device",)  # settings that do not change the numbers


def default_neb_cache_root() -> Path:
    base = os.environ.get("HOPNET_CACHE_DIR")
    return (Path(base) if base else Path.home() / ".cache" / "hopnet") / "neb"


class NebCache:
    """NEB results by band + potential + settings (see the module docstring)."""

    def __init__(self, root: str | os.PathLike | None = None) -> None:
        self.root = Path(root) if root is not None else default_neb_cache_root()
        self.hits = 0
        self.misses = 0

    @staticmethod
    def key(path: Any, config: Any, potential_version: str) -> str:
        from hopnet.structures import structure_hash

        settings = {k: v for k, v in asdict(config).items() if k not in _IGNORED}
        text = json.dumps({"band": structure_hash(path.band(), include_site_properties=False),
                           "potential": potential_version, "settings": settings, "version": CACHE_VERSION},
                          sort_keys=True)
        return hashlib.sha256(text.encode()).hexdigest()

    def _file(self, key: str) -> Path:
        return self.root / key[:2] / f"{key}.json"

    def get(self, key: str) -> dict | None:
        """The stored result, or None (absent, or damaged: then removed)."""
        from hopnet.infra.integrity import CorruptFileError, read_sealed

        f = self._file(key)
        if not f.is_file():
            self.misses += 1
            return None
        try:
            record = json.loads(read_sealed(f, what="NEB cache file"))
        except (CorruptFileError, ValueError) as exc:
            log.warning("NEB cache file %s is damaged (%s): removed, the NEB runs again", f, exc)
            f.unlink(missing_ok=True)
            self.misses += 1
            return None
        self.hits += 1
        return record

    def put(self, key: str, record: dict) -> None:
        from hopnet.infra.integrity import write_sealed

        f = self._file(key)
        f.parent.mkdir(parents=True, exist_ok=True)
        write_sealed(f, json.dumps(record, sort_keys=True).encode())


class TableCache(NebCache):
    """A read-only table of results (``{key: result dict}``, e.g. shipped inside a model folder)
    in front of an on-disk :class:`NebCache` (``disk``; None: nothing is written)."""

    def __init__(self, table: dict[str, dict], disk: NebCache | None = None) -> None:
        super().__init__(disk.root if disk is not None else None)
        self.table, self.disk = dict(table), disk

    def get(self, key: str) -> dict | None:
        if key in self.table:
            self.hits += 1
            return self.table[key]
        return self.disk.get(key) if self.disk is not None else None

    def put(self, key: str, record: dict) -> None:
        if self.disk is not None:
            self.disk.put(key, record)
