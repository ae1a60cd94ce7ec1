"""Finding, reading and validating data-set files.

Source order for a registered name: an explicit ``path``; ``<data_dir>/<relpath>`` where
``data_dir`` defaults to ``$HOPNET_DATA_DIR``; the user cache (``$HOPNET_CACHE_DIR`` or
``~/.cache/hopnet/datasets``); a checksum-verified download into that cache, rebuilt from the
public originals by the set's recipe (:mod:`hopnet.datasets.recipes`). A mirror named by
``base_url`` or ``$HOPNET_DATA_URL`` may serve the data-dir layout (``<base>/<relpath>``) or the
upstream one (``<base>/<owner>/<repo>/main/<path>``). ``HOPNET_OFFLINE=1`` (or ``download=False``)
forbids the download.
"""

from __future__ import annotations

import csv
import gzip
import hashlib
import json
import logging
import math
import os
import zlib
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from hopnet.datasets.core import Dataset, Entry
from hopnet.datasets.download import (
    GZIP_MAGIC,
    DownloadFailed,
    cache_candidates,
    default_cache_dir,
)
from hopnet.datasets.recipes import FetchReport, fetch_dataset, present_copy
from hopnet.datasets.registry import REGISTRY, DatasetInfo, get_info
from hopnet.infra.errors import DataError
from hopnet.infra.runtime import env_flag

log = logging.getLogger(__name__)

#: number of ion images at the start of a band (atoms 0..4), as in the published data set
N_BAND_IMAGES = 5
SPLITS = (None, "all", "train", "test")


@dataclass(frozen=True)
class Located:
    """Where a data file was found: ``source`` is "path", "HOPNET_DATA_DIR", "cache" or "download"."""

    path: Path
    source: str


def data_dir_from_env(data_dir: str | os.PathLike | None = None) -> Path | None:
    """``data_dir`` if given, else ``$HOPNET_DATA_DIR``, else None."""
    if data_dir is not None:
        return Path(data_dir).expanduser()
    env = os.environ.get("HOPNET_DATA_DIR")
    return Path(env).expanduser() if env else None


def locate(
    name: str,
    *,
    data_dir: str | os.PathLike | None = None,
    cache_dir: str | os.PathLike | None = None,
) -> Located | None:
    """Find a local copy of registered data set ``name`` (data dir, then cache); never downloads."""
    info = get_info(name)
    ddir = data_dir_from_env(data_dir)
    if ddir is not None:
        for p in cache_candidates(ddir, info.relpath):
            if p.is_file():
                return Located(p, "HOPNET_DATA_DIR")
    cdir = Path(cache_dir).expanduser() if cache_dir is not None else default_cache_dir()
    for p in cache_candidates(cdir, info.relpath):
        if p.is_file():
            return Located(p, "cache")
    return None


def _looks_like_path(s: str) -> bool:
    return s.endswith((".json", ".json.gz")) or os.sep in s or Path(s).is_file()


def _fetch(info: DatasetInfo, cache_dir: Path, base_url: str | None) -> Located:
    fetch_dataset(info, cache_dir, base_url=base_url, strict=False)
    return Located(next(p for p in cache_candidates(cache_dir, info.relpath) if p.is_file()), "download")


def fetch(
    name: str,
    *,
    to: str | os.PathLike | None = None,
    data_dir: str | os.PathLike | None = None,
    base_url: str | None = None,
    force: bool = False,
    progress: bool = True,
) -> FetchReport:
    """Download, rebuild and verify registered data set ``name`` (what ``hopnet datasets fetch`` does).

    The files go to ``to`` (default: the user cache, where :func:`load` looks); files there that
    match their pins are kept. Without ``to`` and ``force``, a set whose file in the data dir
    (``data_dir`` or ``$HOPNET_DATA_DIR``) matches its pin is reported as present and nothing is
    fetched. ``base_url``: a mirror (default ``$HOPNET_DATA_URL``).
    """
    info = get_info(name)
    ddir = data_dir_from_env(data_dir)
    if to is None and not force and ddir is not None:
        copies = [present_copy(r, ddir) for r in info.recipes()]
        if copies[0] is not None:
            return FetchReport(info.name, present=[p for p in copies if p], present_in="HOPNET_DATA_DIR")
    dest = Path(to).expanduser() if to is not None else default_cache_dir()
    return fetch_dataset(info, dest, base_url=base_url, force=force, progress=progress)


def _how_to(info: DatasetInfo) -> str:
    return (f"set HOPNET_DATA_DIR to a folder holding {info.relpath} (e.g. ../shared/data), give the "
            "file itself (--data FILE on the command line, path= in Python), or unset HOPNET_OFFLINE "
            "to download it into the cache")


def resolve(
    name_or_path: str | os.PathLike,
    *,
    path: str | os.PathLike | None = None,
    data_dir: str | os.PathLike | None = None,
    cache_dir: str | os.PathLike | None = None,
    base_url: str | None = None,
    download: bool | None = None,
) -> tuple[str, DatasetInfo | None, Located]:
    """(name, registry record or None, location) of what :func:`load` will read."""
    name = os.fspath(name_or_path)
    if path is not None:
        info = REGISTRY.get(name)
        p = Path(path).expanduser()
        if not p.is_file():
            raise DataError(f"data file not found: {p}")
        return name, info, Located(p, "path")
    if name not in REGISTRY:
        if _looks_like_path(name):
            p = Path(name).expanduser()
            if not p.is_file():
                raise DataError(f"data file not found: {p}")
            stem = p.name.removesuffix(".gz").removesuffix(".json")
            return stem, None, Located(p, "path")
        get_info(name)  # raises the "unknown data set" error
    info = REGISTRY[name]
    found = locate(name, data_dir=data_dir, cache_dir=cache_dir)
    if found is not None:
        return name, info, found
    allow = (not env_flag("HOPNET_OFFLINE")) if download is None else download
    if not allow:
        raise DataError(f"data set {name!r} not found: {_how_to(info)}")
    cdir = Path(cache_dir).expanduser() if cache_dir is not None else default_cache_dir()
    try:
        return name, info, _fetch(info, cdir, base_url)
    except DownloadFailed as exc:
        raise DataError(
            f"data set {name!r} not found locally and {exc}; set HOPNET_DATA_DIR to a folder "
            f"holding {info.relpath} or pass path= (CLI: --path)"
        ) from None


# --- reading -------------------------------------------------------------------------------------

def read_json_list(path: Path) -> tuple[list, str]:
    """The JSON list in ``path`` (plain or gzipped) and the sha256 of its decompressed text."""
    try:
        raw = path.read_bytes()
    except OSError as exc:
        raise DataError(f"cannot read {path}: {exc.strerror or exc}") from None
    if raw[:2] == GZIP_MAGIC:
        try:
            raw = gzip.decompress(raw)
        except (OSError, EOFError, zlib.error) as exc:
            raise DataError(f"{path}: corrupt gzip file ({exc})") from None
    sha = hashlib.sha256(raw).hexdigest()
    try:
        data = json.loads(raw)
    except ValueError as exc:  # bad JSON or encoding, an integer of more digits than Python converts
        raise DataError(f"{path}: malformed JSON ({exc})") from None
    except RecursionError:
        raise DataError(f"{path}: malformed JSON (nested too deeply)") from None
    if not isinstance(data, list):
        raise DataError(f"{path}: expected a JSON list of entries, got {type(data).__name__}")
    return data, sha


def _check_atoms(atoms: Any, eid: str, path: Path) -> int:
    """Validate a JARVIS Atoms dict; returns its number of atoms."""
    where = f"{path.name}: entry {eid}"
    if not isinstance(atoms, dict):
        raise DataError(f"{where} has no 'atoms' dict")
    missing = [k for k in ("lattice_mat", "coords", "elements") if k not in atoms]
    if missing:
        raise DataError(f"{where}: atoms lacks {', '.join(missing)}")
    try:
        lat = np.asarray(atoms["lattice_mat"], dtype=float)
        xyz = np.asarray(atoms["coords"], dtype=float)
    except (TypeError, ValueError):
        raise DataError(f"{where}: lattice_mat/coords are not numeric arrays") from None
    if lat.shape != (3, 3) or not np.isfinite(lat).all():
        raise DataError(f"{where}: lattice_mat must be a finite 3x3 matrix (Å), got shape {lat.shape}")
    if xyz.ndim != 2 or xyz.shape[1] != 3 or len(xyz) == 0 or not np.isfinite(xyz).all():
        raise DataError(f"{where}: coords must be a finite Nx3 array, got shape {xyz.shape}")
    el = atoms["elements"]
    if not isinstance(el, list) or len(el) != len(xyz) or not all(isinstance(s, str) for s in el):
        raise DataError(f"{where}: elements must be a list of {len(xyz)} symbols")
    return len(xyz)


def _check_symbols(elements: list[str], eid: str, path: Path) -> None:
    from pymatgen.core import Element

    unknown = sorted(sym for sym in set(elements) if not Element.is_valid_symbol(sym))
    if unknown:
        raise DataError(f"{path.name}: entry {eid} has an unknown element {unknown[0]!r}")


def _check_target(t: Any, eid: str, path: Path) -> float:
    if isinstance(t, bool) or not isinstance(t, (int, float)):
        raise DataError(f"{path.name}: entry {eid} has a non-numeric target {t!r}")
    try:
        value = float(t)
    except OverflowError:  # a JSON integer beyond the float range
        raise DataError(
            f"{path.name}: entry {eid} has a target out of the float range ({t.bit_length()}-bit integer)"
        ) from None
    if not math.isfinite(value):
        raise DataError(f"{path.name}: entry {eid} has a non-finite target {t!r}")
    return value


def _number_or_text(v: str) -> Any:
    v = v.strip()
    if v == "":
        return None
    try:
        return float(v)
    except ValueError:
        return v


def read_metadata_csv(path: Path) -> dict[str, dict[str, Any]]:
    """Rows of the migration metadata table keyed by ``sys_name`` (numbers as float, blanks None)."""
    try:
        with open(path, newline="") as fh:
            rows = list(csv.DictReader(fh))
    except (OSError, csv.Error, UnicodeDecodeError) as exc:
        raise DataError(f"{path}: unreadable metadata table ({exc})") from None
    out: dict[str, dict[str, Any]] = {}
    for r in rows:
        key = (r.get("sys_name") or "").strip()
        if key:
            out[key] = {k: _number_or_text(v or "") for k, v in r.items() if k and k != "sys_name"}
    return out


def host_compound(elements: list[str]) -> str:
    """The compound a band belongs to: mobile ion + reduced formula of the host framework.

    The framework is the host (atoms 5..) without the mobile-ion species, so the key does not
    depend on the supercell or on the vacancy / interstitial the hop creates: the literature
    computes one compound in cells of different sizes (``Li17(CoO2)18`` and ``Li8(CoO2)9`` are
    both ``Li:CoO2``), and the pristine formula of a band is not recoverable from its host.
    Polymorphs and differently lithiated members of one framework share a key, which errs on the
    side of keeping related paths on one side of a split.
    """
    from pymatgen.core import Composition

    ion = elements[0]
    counts = Counter(e for e in elements[N_BAND_IMAGES:] if e != ion)
    if not counts:  # the host is the ion's own lattice
        return f"{ion}:{ion}"
    return f"{ion}:{Composition(dict(counts)).reduced_formula}"


def _detect_format(records: list) -> str:
    first = records[0] if records else {}
    return "band" if isinstance(first, dict) and "sys_name" in first else "property"


def build_entries(records: list, fmt: str, path: Path, metadata: dict[str, dict] | None = None) -> list[Entry]:
    """Validate raw records and turn them into entries (``fmt`` is "band" or "property")."""
    entries: list[Entry] = []
    seen: set[str] = set()
    for i, rec in enumerate(records):
        if not isinstance(rec, dict):
            raise DataError(f"{path.name}: entry #{i} is not a JSON object")
        if fmt == "band":
            sys_name = rec.get("sys_name")
            if not isinstance(sys_name, str) or not sys_name:
                raise DataError(f"{path.name}: entry #{i} has no sys_name")
            eid = sys_name
        else:
            if rec.get("jid") is None:
                raise DataError(f"{path.name}: entry #{i} has no jid")
            eid = str(rec["jid"])
        if not eid.isprintable():  # ids end up in messages, reports and CSV files
            raise DataError(f"{path.name}: entry #{i} has an id with line breaks or control characters: {eid!r}")
        if eid in seen:
            raise DataError(f"{path.name}: duplicate entry id {eid}")
        seen.add(eid)
        n = _check_atoms(rec.get("atoms"), eid, path)
        target = _check_target(rec.get("target"), eid, path)
        meta = {k: v for k, v in rec.items() if k not in ("atoms", "target", "sys_name")}
        if fmt == "band":
            el = rec["atoms"]["elements"]
            if n <= N_BAND_IMAGES or len(set(el[:N_BAND_IMAGES])) != 1:
                raise DataError(
                    f"{path.name}: entry {eid} is not a band (atoms 0-{N_BAND_IMAGES - 1} must be "
                    f"the same mobile ion, followed by the host)"
                )
            _check_symbols(el, eid, path)  # the compound key parses them
            extra = (metadata or {}).get(eid, {})
            meta = {**extra, **meta}
            if "class" in extra and "class" in rec and extra["class"] != rec["class"]:
                meta["metadata_class"] = extra["class"]
            meta["ion"] = el[0]
            meta["compound"] = host_compound(el)
            meta.setdefault("class", None)
        entries.append(Entry(id=eid, target=target, atoms=rec["atoms"], meta=meta))
    return entries


def read_dataset(path: Path, *, name: str, fmt: str | None = None, info: DatasetInfo | None = None,
                 source: str = "path") -> Dataset:
    """Read and validate one file into a :class:`Dataset` (no split applied)."""
    records, sha = read_json_list(path)
    if not records:
        raise DataError(f"{path}: the data set is empty")
    fmt = fmt or _detect_format(records)
    metadata = None
    if fmt == "band":
        extras = info.extras if info is not None else ("metadata_train.csv",)
        for rel in extras:
            side = path.parent / Path(rel).name
            if side.is_file():
                metadata = read_metadata_csv(side)
                log.debug("merged metadata from %s", side)
    entries = build_entries(records, fmt, path, metadata)
    task = info.task if info else ("migration-barrier" if fmt == "band" else "property-regression")
    units = info.units if info else ("E_m in eV" if fmt == "band" else "")
    return Dataset(name, entries, sha, task=task, units=units, source=source, file=str(path))


def load(
    name_or_path: str | os.PathLike,
    split: str | None = None,
    *,
    path: str | os.PathLike | None = None,
    seed: int = 0,
    data_dir: str | os.PathLike | None = None,
    cache_dir: str | os.PathLike | None = None,
    base_url: str | None = None,
    download: bool | None = None,
) -> Dataset:
    """Load a registered data set (or a .json/.json.gz file of that format) as a :class:`Dataset`.

    ``split``: None/"all" = every entry; "train"/"test" = the published class-stratified split
    for migration barriers (:func:`hopnet.datasets.splits.published_split`), a seeded random
    90/10 split otherwise. ``base_url`` (or ``$HOPNET_DATA_URL``) names a mirror to download from
    (data-dir or upstream layout, see the module docstring); ``download`` (default: allowed
    unless ``$HOPNET_OFFLINE``) permits fetching into the cache.
    """
    if split not in SPLITS:
        raise DataError(f"unknown split {split!r}; use one of all, train, test")
    name, info, where = resolve(name_or_path, path=path, data_dir=data_dir, cache_dir=cache_dir,
                                base_url=base_url, download=download)
    ds = read_dataset(where.path, name=name, fmt=info.format if info else None, info=info,
                      source=where.source)
    if info is not None and info.sha256 and ds.sha256 != info.sha256 and where.source != "path":
        if where.source == "cache":
            raise DataError(f"cached copy {where.path} does not match the pinned sha256; delete it and retry")
        if where.source == "HOPNET_DATA_DIR":
            log.warning("%s differs from the pinned sha256 of %r (using it anyway)", where.path, name)
    if split in (None, "all"):
        return ds
    from hopnet.datasets.splits import default_split

    train, test = default_split(ds, seed=seed)
    out = ds.subset(train if split == "train" else test)
    out.split = split
    return out
