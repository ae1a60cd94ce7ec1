"""Structure sources for screening many structures: each structure becomes an :class:`Entry`
with a stable id.

* structure files (CIF, POSCAR, ...), folders of them and glob patterns: id = the path as given;
* lists of structures, ``.json`` / ``.json.gz`` (a JSON list) and ``.jsonl`` / ``.jsonl.gz`` (one
  entry a line), in the JARVIS or Materials-Project layout: an entry is a structure dict (JARVIS
  ``Atoms`` dict or pymatgen ``Structure.as_dict()``) or a record holding one under ``atoms`` or
  ``structure``; id = its ``jid`` / ``material_id`` / ``id`` / ``task_id``, else
  ``<file name>#<position>``;
* ASE databases (``.db``): one entry a row; id = the row's ``jid`` / ``material_id`` key, else
  ``<file name>:<row id>``.

An id already taken by an earlier entry is prefixed with its file's name (``bg.json.gz:100023``;
if that is taken too, the entry's place: ``bg.json.gz#17``, ``x.db:17``), so ids are unique and the same for the same inputs. A
``.json`` file that holds one structure dict (not a list) is a structure file. Entries read
their structure only when asked (:meth:`Entry.load`): a worker process or a Ray task does the
parsing, not the parent.
"""

from __future__ import annotations

import glob
import gzip
import json
import os
import tempfile
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any, Iterator

from hopnet.infra.errors import HopnetError

__all__ = ["Entry", "open_inputs", "is_structure_file", "STRUCTURE_SUFFIXES", "LIST_SUFFIXES"]

STRUCTURE_SUFFIXES = {".cif", ".mcif", ".vasp", ".poscar", ".xyz", ".extxyz", ".cssr", ".res", ".xsf", ".cell"}
STRUCTURE_PREFIXES = ("POSCAR", "CONTCAR")
LIST_SUFFIXES = (".json", ".json.gz", ".jsonl", ".jsonl.gz")
ID_KEYS = ("jid", "material_id", "id", "task_id")
STRUCTURE_KEYS = ("atoms", "structure")


@dataclass(frozen=True)
class Entry:
    """One structure to screen. ``kind``/``ref``: ``"file"`` (a path), ``"dict"`` (a structure
    dict), ``"ase-db"`` ((database path, row id)) or ``"bytes"`` ((file name, file content): a
    file shipped to a machine that does not see it)."""

    id: str
    kind: str
    ref: Any

    def load(self) -> Any:
        """What :func:`hopnet.screening.screen` takes: the path of a file, the structure dict, or a
        pymatgen ``Structure`` for a database row or shipped file."""
        if self.kind in ("file", "dict"):
            return self.ref
        from hopnet.structures import from_ase, read_structure

        if self.kind == "ase-db":
            return from_ase(_ase_row(*self.ref))
        name, data = self.ref
        with tempfile.TemporaryDirectory(prefix="hopnet-entry-") as tmp:
            path = Path(tmp) / Path(name).name
            path.write_bytes(data)
            return read_structure(path)

    def portable(self) -> "Entry":
        """The entry with its structure inside, for a process on another machine: a file's
        bytes, a database row as a JARVIS dict."""
        if self.kind == "file" and Path(self.ref).is_file():
            return Entry(self.id, "bytes", (Path(self.ref).name, Path(self.ref).read_bytes()))
        if self.kind == "ase-db":
            from hopnet.structures import to_jarvis

            return Entry(self.id, "dict", to_jarvis(self.load()))
        return self


@lru_cache(maxsize=8)
def _ase_db(path: str) -> Any:
    import ase.db

    return ase.db.connect(path)


def _ase_row(path: str, row_id: int) -> Any:
    return _ase_db(path).get(id=int(row_id)).toatoms()


def is_structure_file(f: Path) -> bool:
    """A structure file by its name (what a folder is searched for)."""
    return not f.name.startswith(".") and (f.suffix.lower() in STRUCTURE_SUFFIXES
                                           or f.name.startswith(STRUCTURE_PREFIXES))


def _paths(item: str) -> list[Path]:
    """The files an input names: itself, the structure files of a folder, or glob matches."""
    p = Path(item)
    if p.is_dir():
        found = sorted(f for f in p.iterdir() if f.is_file() and is_structure_file(f))
        if not found:
            raise HopnetError(f"no structure files (CIF, POSCAR, ...) in folder {p}")
        return found
    if not p.exists() and glob.has_magic(item):
        found = sorted(Path(f) for f in glob.glob(item) if Path(f).is_file())
        if not found:
            raise HopnetError(f"no file matches {item!r}")
        return found
    return [p]  # a missing file is kept: it fails later, as one bad structure


def _records(path: Path) -> list[Any] | None:
    """The entries of a JSON/JSONL structure list; None when the file holds one structure."""
    opener = gzip.open if path.name.lower().endswith(".gz") else open
    try:
        with opener(path, "rt") as fh:
            if ".jsonl" in path.name.lower():
                return [json.loads(line) for line in fh if line.strip()]
            data = json.load(fh)
    except (OSError, ValueError, EOFError) as exc:
        raise HopnetError(f"{path}: not a readable JSON structure list ({str(exc).splitlines()[0]})") from None
    if isinstance(data, list):
        return data
    if isinstance(data, dict):
        return None
    raise HopnetError(f"{path}: a structure list must be a JSON list of entries, got {type(data).__name__}")


def _list_entries(path: Path) -> Iterator[tuple[str, Entry]]:
    """(fallback-prefix, entry) for each record of a structure list."""
    records = _records(path)
    if records is None:
        yield "", Entry(str(path), "file", str(path))
        return
    for k, rec in enumerate(records):
        sid = next((rec[key] for key in ID_KEYS if isinstance(rec, dict) and rec.get(key) not in (None, "")), None)
        struct = next((rec[key] for key in STRUCTURE_KEYS if isinstance(rec, dict) and key in rec), rec)
        yield f"{path.name}#{k}", Entry(str(sid) if sid is not None else f"{path.name}#{k}", "dict", struct)


def _db_entries(path: Path) -> Iterator[tuple[str, Entry]]:
    """(fallback-prefix, entry) for each row of an ASE database."""
    if not path.is_file():
        raise HopnetError(f"ASE database {path}: no such file")
    try:
        rows = list(_ase_db(str(path.resolve())).select(include_data=False))
    except Exception as exc:  # sqlite or ASE: not a database
        raise HopnetError(f"{path}: not an ASE database ({exc})") from None
    for row in rows:
        kv = row.key_value_pairs
        sid = next((kv[key] for key in ID_KEYS[:2] if kv.get(key) not in (None, "")), None)
        own = f"{path.name}:{row.id}"
        yield own, Entry(str(sid) if sid is not None else own, "ase-db", (str(path.resolve()), int(row.id)))


def _entries_of(path: Path) -> Iterator[tuple[str, Entry]]:
    name = path.name.lower()
    if name.endswith(".db"):
        return _db_entries(path)
    if name.endswith(LIST_SUFFIXES) and path.is_file():
        return _list_entries(path)
    return iter([("", Entry(str(path), "file", str(path)))])


def open_inputs(items: list[str | os.PathLike], limit: int | None = None) -> list[Entry]:
    """The entries of files, folders, globs, structure lists and ASE databases, in order, ids
    unique (see the module docstring); the first ``limit`` of them when given. The same file
    named twice counts once."""
    out: list[Entry] = []
    ids: set[str] = set()
    seen_files: set[str] = set()
    for item in items:
        for path in _paths(str(item)):
            if str(path) in seen_files:
                continue
            seen_files.add(str(path))
            for fallback, e in _entries_of(path):
                if limit is not None and len(out) >= limit:
                    return out
                eid = e.id
                if eid in ids:
                    eid = f"{path.name}:{e.id}"
                    eid = fallback if eid in ids and fallback else eid
                if eid in ids:
                    raise HopnetError(f"{path}: structure id {e.id!r} is not unique")
                ids.add(eid)
                out.append(Entry(eid, e.kind, e.ref))
    return out
