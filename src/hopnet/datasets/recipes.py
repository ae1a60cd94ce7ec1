"""Rebuilding registered files from their pinned upstream sources (see :mod:`hopnet.datasets.registry`).

:func:`fetch_dataset` makes every file of one data set (its own file, then companions such as the
migration metadata table) in a destination folder. For each file:

1. a verified copy already there is kept (unless ``force``);
2. with a mirror base URL, ``<base>/<relpath>`` is tried first: a mirror of the data-dir layout
   serving the finished file (checked against the file's pin);
3. otherwise (or when that answers 404) each source is downloaded from
   ``<base>/<owner>/<repo>/main/<path>`` (base: the mirror, or ``https://raw.githubusercontent.com``)
   into ``<dest>/.fetch/<name>/``, resumably and checked against its own pin; the sources are
   combined by the recipe's build and the result is checked against the file's pin before it is
   written atomically. The staging folder is removed once the set is complete, and kept (with
   its ``.part`` files) when a fetch fails, so that the next one resumes.

Builds: ``copy`` (one source, as published), ``merge-by-jid`` (union by ``jid`` of property
files, entries reduced to ``jid, target, atoms``, sorted by ``str(jid)``, ``json.dumps`` with
default separators, no trailing newline) and ``metadata-csv`` (the migration metadata table from
the published xlsx).
"""

from __future__ import annotations

import csv
import hashlib
import io
import json
import logging
import os
import shutil
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from hopnet.datasets.download import (
    DownloadFailed,
    NotFound,
    cache_candidates,
    content_sha256,
    fetch_file,
    format_size,
    is_gzip,
)
from hopnet.datasets.registry import BRANCH, UPSTREAM, DatasetInfo, Recipe
from hopnet.datasets.xlsx import read_sheet
from hopnet.infra.errors import DataError
from hopnet.infra.provenance import atomic_write_bytes

log = logging.getLogger(__name__)

#: the sheet of TABULATION-GIT-HUB.xlsx that holds the metadata, and the CSV column names
META_SHEET = "COMPLETE-TABUATION"
META_COLUMNS = ("class", "composition", "xc", "crystal_system", "space_group", "path_info", "sys_name",
                "em_ev", "mace_relax_ev", "mace_norelax_ev")
#: cell texts read as missing values, as in the pandas conversion that made the shared table
_NA_TEXT = {"", "#N/A", "#N/A N/A", "#NA", "-1.#IND", "-1.#QNAN", "-NaN", "-nan", "1.#IND", "1.#QNAN",
            "<NA>", "N/A", "NA", "NULL", "NaN", "None", "n/a", "nan", "null"}


# --- builds ----------------------------------------------------------------------------------------

def _json_list(blob: bytes, name: str) -> list:
    try:
        data = json.loads(blob)
    except ValueError as exc:
        raise DataError(f"{name}: malformed JSON ({exc})") from None
    if not isinstance(data, list):
        raise DataError(f"{name}: expected a JSON list of entries, got {type(data).__name__}")
    return data


def build_copy(blobs: list[bytes], names: list[str]) -> bytes:
    """The single source, as published."""
    return blobs[0]


def build_merge_by_jid(blobs: list[bytes], names: list[str]) -> bytes:
    """Union by ``jid`` of JSON lists of property entries (the first copy of a jid is kept; the
    published files agree on duplicates), each reduced to ``jid, target, atoms`` in that order,
    sorted by ``str(jid)``, serialised by ``json.dumps`` with its defaults, no trailing newline."""
    merged: dict[Any, dict] = {}
    for blob, name in zip(blobs, names):
        for i, e in enumerate(_json_list(blob, name)):
            if not isinstance(e, dict) or not {"jid", "target", "atoms"} <= e.keys():
                raise DataError(f"{name}: entry #{i} lacks jid, target or atoms")
            merged.setdefault(e["jid"], {"jid": e["jid"], "target": e["target"], "atoms": e["atoms"]})
    return json.dumps(sorted(merged.values(), key=lambda e: str(e["jid"]))).encode()


def _csv_cell(v: Any) -> str:
    if v is None or (isinstance(v, str) and v in _NA_TEXT):
        return ""
    return repr(v) if isinstance(v, float) else str(v)


def build_metadata_csv(blobs: list[bytes], names: list[str]) -> bytes:
    """The migration metadata table: the rows of sheet :data:`META_SHEET` of the xlsx (second
    source) whose ``sys_name`` is in the training JSON (first source), in sheet order, columns
    renamed to :data:`META_COLUMNS` by position; numbers as Python floats, missing cells blank."""
    train, table = blobs
    keep = {e.get("sys_name") for e in _json_list(train, names[0]) if isinstance(e, dict)}
    try:
        rows = read_sheet(table, META_SHEET)
    except DataError as exc:
        raise DataError(f"{names[1]}: {exc}") from None
    header = [h for h in (rows[0] if rows else []) if h is not None]
    if len(header) != len(META_COLUMNS):
        raise DataError(f"{names[1]}: sheet {META_SHEET} has {len(header)} columns ({header}), "
                        f"expected {len(META_COLUMNS)} ({', '.join(META_COLUMNS)})")
    key = META_COLUMNS.index("sys_name")
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(META_COLUMNS)
    for row in rows[1:]:
        row = (row + [None] * len(META_COLUMNS))[:len(META_COLUMNS)]
        if row[key] in keep:
            writer.writerow([_csv_cell(v) for v in row])
    return out.getvalue().encode()


BUILDERS: dict[str, Callable[[list[bytes], list[str]], bytes]] = {
    "copy": build_copy,
    "merge-by-jid": build_merge_by_jid,
    "metadata-csv": build_metadata_csv,
}


# --- fetching -------------------------------------------------------------------------------------

@dataclass
class FetchReport:
    """What :func:`fetch_dataset` did for one set: files ``written`` and verified copies found
    ``present`` (``present_in``: where, when not the destination); ``origins`` the base URLs the
    downloads came from, ``fetched`` the files downloaded for them (including those resumed or
    finished by an earlier, interrupted run)."""

    name: str
    written: list[Path] = field(default_factory=list)
    present: list[Path] = field(default_factory=list)
    origins: list[str] = field(default_factory=list)
    present_in: str = ""
    #: size of each file downloaded, by URL
    fetched: dict[str, int] = field(default_factory=dict)

    @property
    def n_files(self) -> int:
        return len(self.fetched)

    @property
    def n_bytes(self) -> int:
        return sum(self.fetched.values())

    def add(self, url: str, size: int, origin: str) -> None:
        """Record a downloaded file and the base URL it came from."""
        self.fetched[url] = size
        if origin not in self.origins:
            self.origins.append(origin)

    def line(self) -> str:
        """One line for people: what was fetched, from where, how big, where it went."""
        def files(ps: list[Path]) -> str:
            return ", ".join(f"{p} ({format_size(p.stat().st_size)})" for p in ps)

        parts = []
        if self.written:
            s = "" if self.n_files == 1 else "s"
            parts.append(f"fetched {self.n_files} file{s} ({format_size(self.n_bytes)}) from "
                         f"{', '.join(self.origins)}; wrote {files(self.written)}")
        if self.present:
            where = f" in {self.present_in}" if self.present_in else ""
            parts.append(f"present{where}: {files(self.present)}")
        return f"{self.name}: {'; '.join(parts)}; sha256 verified"

    def as_dict(self) -> dict[str, Any]:
        return {"name": self.name, "written": [str(p) for p in self.written],
                "present": [str(p) for p in self.present], "origins": self.origins,
                "files_fetched": self.n_files, "bytes_fetched": self.n_bytes}


def present_copy(recipe: Recipe, folder: Path) -> Path | None:
    """A copy of ``recipe``'s file in ``folder`` (gzipped or not) that matches its pin, if any."""
    for p in cache_candidates(folder, recipe.relpath):
        if p.is_file() and content_sha256(p) == recipe.sha256:
            return p
    return None


def _plain(path: Path) -> Path:
    return path.with_suffix("") if path.suffix == ".gz" else path


def _settle(final: Path, dest: Path, recipe: Recipe) -> Path:
    """Remove the other-suffix copy of a file just written (only one copy may be found)."""
    for p in cache_candidates(dest, recipe.relpath):
        if p != final:
            p.unlink(missing_ok=True)
    return final


def _from_mirror(recipe: Recipe, dest: Path, stage: Path, base: str, report: FetchReport,
                 progress: bool) -> Path:
    """The finished file from a mirror of the data-dir layout (gzipped or not, as served)."""
    url = f"{base.rstrip('/')}/{recipe.relpath}"
    staged = stage / Path(recipe.relpath).name
    size = fetch_file(url, staged, recipe.sha256, label=recipe.relpath, digest=content_sha256, progress=progress)
    report.add(url, size, base.rstrip("/"))
    final = dest / recipe.relpath if is_gzip(staged) else _plain(dest / recipe.relpath)
    final.parent.mkdir(parents=True, exist_ok=True)
    os.replace(staged, final)
    return _settle(final, dest, recipe)


def _from_sources(recipe: Recipe, dest: Path, stage: Path, base: str, report: FetchReport,
                  progress: bool) -> Path:
    """Download the recipe's sources into ``stage``, build and verify the file, write it."""
    blobs, names = [], []
    for i, src in enumerate(recipe.sources, 1):
        staged = stage / src.name
        url = src.url(base)
        size = fetch_file(url, staged, src.sha256, label=f"[{i}/{len(recipe.sources)}] {src.name}",
                          progress=progress)
        report.add(url, size, f"{base.rstrip('/')}/{src.repo}/{BRANCH}")
        blobs.append(staged.read_bytes())
        names.append(src.name)
    data = BUILDERS[recipe.build](blobs, names)
    got = hashlib.sha256(data).hexdigest()
    if got != recipe.sha256:
        raise DataError(f"checksum mismatch for {recipe.relpath} built from {len(names)} source files: "
                        f"sha256 {got} != pinned {recipe.sha256}; nothing written")
    final = _plain(dest / recipe.relpath)
    atomic_write_bytes(final, data)
    return _settle(final, dest, recipe)


def _make(recipe: Recipe, dest: Path, stage: Path, base: str | None, report: FetchReport,
          progress: bool) -> Path:
    """One file: from a data-dir mirror when it has it, else built from the recipe's sources."""
    missing = ""
    if base:
        try:
            return _from_mirror(recipe, dest, stage, base, report, progress)
        except NotFound as exc:
            missing = f"{exc}; "
    try:
        return _from_sources(recipe, dest, stage, base or UPSTREAM, report, progress)
    except DownloadFailed as exc:
        raise type(exc)(f"download of {recipe.relpath} failed: {missing}{exc}") from None


def _tidy(stage: Path, done: bool) -> None:
    """Remove the staging folder when the set is done, else only when it holds no file."""
    if done or (stage.is_dir() and not any(p.is_file() for p in stage.rglob("*"))):
        shutil.rmtree(stage, ignore_errors=True)
    if stage.parent.is_dir() and not any(stage.parent.iterdir()):
        stage.parent.rmdir()


def fetch_dataset(info: DatasetInfo, dest: str | os.PathLike, *, base_url: str | None = None,
                  force: bool = False, progress: bool = True, strict: bool = True) -> FetchReport:
    """Make every file of data set ``info`` in folder ``dest`` (see the module docstring).

    ``base_url``: a mirror (default ``$HOPNET_DATA_URL``; unset = the public originals).
    ``force`` rebuilds files that are present. With ``strict=False`` a companion file that
    cannot be made is only logged (the set's own file is always required). Raises
    :class:`DataError` (:class:`DownloadFailed` for network and HTTP errors) with one line.
    """
    dest = Path(dest).expanduser()
    base = base_url or os.environ.get("HOPNET_DATA_URL") or None
    stage = dest / ".fetch" / info.name
    report = FetchReport(info.name)
    done = False
    try:
        for i, recipe in enumerate(info.recipes()):
            found = None if force else present_copy(recipe, dest)
            if found is not None:
                report.present.append(found)
                continue
            try:
                report.written.append(_make(recipe, dest, stage, base, report, progress))
            except DataError as exc:
                if strict or i == 0:
                    raise
                log.warning("%s: companion file not made: %s", info.name, exc)
        done = True
    finally:
        _tidy(stage, done)
    return report
