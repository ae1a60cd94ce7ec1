"""The Parquet table of a screen: one row per structure, ion and hop (:data:`COLUMNS`), written
as structures finish and consolidated into one file.

* Each :meth:`ParquetTable.add` writes the finished structures' rows as one part file in a
  hidden folder next to the target (``.<name>.parts/part-<n>.parquet``: temporary file, fsync,
  rename), so a killed run loses nothing it reported as done; every :data:`COMPACT_AT` parts are
  merged into one.
* :meth:`ParquetTable.consolidate` (at the end, on Ctrl-C, and when a resumed run finds a killed
  run's parts) writes the final
  file atomically from the previous final file and the parts, one set of rows per structure id
  (the first written), rows in input order (then ion, hop), and removes the parts.
* :attr:`ParquetTable.done` are the ids already in the final file or the parts.

A structure without results is one row: ``status`` ``failed`` (``cause``, ``error``) or
``skipped`` (``error`` says why), hop columns null. Barriers in eV, lengths in Å.
"""

from __future__ import annotations

import math
import os
import shutil
from pathlib import Path
from typing import Any, Iterable

from hopnet.infra.provenance import atomic_write_with

__all__ = ["COLUMNS", "ParquetTable", "outcome_rows", "schema", "write_parquet_atomic"]

COMPACT_AT = 256

#: column -> (pyarrow type name, meaning)
COLUMNS: dict[str, tuple[str, str]] = {
    "id": ("string", "structure id (jid, database row, or file path)"),
    "formula": ("string", "reduced formula of the input structure"),
    "ion": ("string", "migrating ion"),
    "n_atoms": ("int32", "atoms in the input cell"),
    "status": ("string", "ok, failed or skipped"),
    "cause": ("string", "failure class (StructureError, PathError, timeout, worker died, ...)"),
    "error": ("string", "failure message or reason for skipping"),
    "hop": ("int32", "index of the symmetry-distinct hop"),
    "from_site": ("int32", "start site (index in the input structure)"),
    "to_site": ("int32", "end site"),
    "image": ("list<int32>", "cell translation of the end site"),
    "length_a": ("float64", "hop length (Å)"),
    "multiplicity": ("int32", "equivalent hops per input cell"),
    "barrier_ev": ("float64", "predicted migration barrier E_m (eV)"),
    "std_ev": ("float64", "its uncertainty σ (eV)"),
    "class": ("string", "conductor class of the hop (good/poor at the threshold)"),
    "hop_error": ("string", "why this hop has no barrier"),
    "band_atoms": ("int32", "atoms in the band cell"),
    "refined": ("bool", "barrier from the --refine model"),
    "percolation_1d_ev": ("float64", "lowest barrier connecting an infinite 1-D network (null: none)"),
    "percolation_2d_ev": ("float64", "same, 2-D"),
    "percolation_3d_ev": ("float64", "same, 3-D"),
    "dimensionality": ("int32", "dimensionality of the whole hop network"),
    "dimensionality_at_threshold": ("int32", "dimensionality of the hops below the threshold"),
    "insertion": ("string", "null (ion present), user or interstitial"),
    "model": ("string", "model that predicted the barriers"),
    "threshold_ev": ("float64", "conductor threshold (eV)"),
    "elapsed_s": ("float64", "wall time of the whole structure (s)"),
    "worker": ("string", "host:pid of the worker"),
    "worker_peak_rss_mb": ("float64", "the worker's peak resident memory so far (MB)"),
}


def schema() -> Any:
    """The pyarrow schema of :data:`COLUMNS`."""
    import pyarrow as pa

    types = {"string": pa.string(), "int32": pa.int32(), "float64": pa.float64(), "bool": pa.bool_(),
             "list<int32>": pa.list_(pa.int32())}
    return pa.schema([(name, types[t]) for name, (t, _) in COLUMNS.items()])


def _num(x: Any) -> float | None:
    return float(x) if x is not None and math.isfinite(x) else None


def outcome_rows(o: Any) -> list[dict]:
    """The rows of one :class:`hopnet.screen_runner.Outcome`."""
    base = {"id": o.id, "formula": o.formula or None, "n_atoms": o.n_atoms or None, "elapsed_s": o.seconds,
            "worker": o.worker, "worker_peak_rss_mb": o.peak_rss_mb}
    rows = []
    for r in o.results:
        res = {**base, "formula": r.formula, "ion": r.ion, "n_atoms": r.n_atoms, "status": "ok",
               "percolation_1d_ev": _num(r.percolation[1].barrier), "percolation_2d_ev": _num(r.percolation[2].barrier),
               "percolation_3d_ev": _num(r.percolation[3].barrier), "dimensionality": r.dimensionality,
               "dimensionality_at_threshold": r.dimensionality_at_threshold, "insertion": r.insertion,
               "model": r.model, "threshold_ev": r.threshold}
        rows += [{**res, "hop": h.index, "from_site": h.start, "to_site": h.end, "image": [int(x) for x in h.image],
                  "length_a": h.length, "multiplicity": h.multiplicity, "barrier_ev": _num(h.barrier),
                  "std_ev": _num(h.std), "class": h.conductor_class or None, "hop_error": h.error,
                  "band_atoms": h.band_atoms, "refined": h.refined} for h in r.hops]
    rows += [{**base, "ion": ion or None, "status": "failed", "cause": cause, "error": msg}
             for ion, cause, msg in o.failures]
    if o.skipped is not None:
        rows.append({**base, "status": "skipped", "error": o.skipped})
    return rows


def write_parquet_atomic(table: Any, path: Path) -> None:
    """Write a Parquet file so that readers see the old or the whole new file."""
    import pyarrow.parquet as pq

    atomic_write_with(path, lambda fh: pq.write_table(table, fh))


class ParquetTable:
    """The Parquet output of a screen (see the module docstring). Without ``resume`` an existing
    target and its parts are removed first."""

    def __init__(self, path: str | os.PathLike, resume: bool, order: list[str] | None = None) -> None:
        import pyarrow  # noqa: F401 - fail before any work when missing

        self.path = Path(path)
        self.parts = self.path.with_name(f".{self.path.name}.parts")
        if not resume:
            shutil.rmtree(self.parts, ignore_errors=True)
            self.path.unlink(missing_ok=True)
        elif self.parts.is_dir():  # a killed run's parts: into the final file first
            for stale in self.parts.glob(".*.tmp"):
                stale.unlink(missing_ok=True)
            self.consolidate(order)
        self.done: set[str] = set(_read(self.path, ["id"]).column("id").to_pylist()) if self.path.is_file() else set()
        self._seq = 0

    def _part_files(self) -> list[Path]:
        if not self.parts.is_dir():
            return []
        return sorted(self.parts.glob("part-*.parquet"), key=lambda p: int(p.stem.split("-")[1]))

    def _files(self) -> list[Path]:
        return ([self.path] if self.path.is_file() else []) + self._part_files()

    def add(self, outcomes: Iterable[Any]) -> None:
        """Write the rows of the outcomes not yet in the table as one part."""
        import pyarrow as pa

        new = [o for o in outcomes if o.id not in self.done]
        if not new:
            return
        rows = [r for o in new for r in outcome_rows(o)]
        self.parts.mkdir(parents=True, exist_ok=True)
        write_parquet_atomic(pa.Table.from_pylist(rows, schema=schema()), self.parts / f"part-{self._seq}.parquet")
        self._seq += 1
        self.done |= {o.id for o in new}
        if len(self._part_files()) >= COMPACT_AT:
            self._compact()

    def _compact(self) -> None:
        """Merge the parts into one (written before the small ones are removed: a kill in between
        leaves duplicates that reading drops)."""
        parts = self._part_files()
        write_parquet_atomic(_merged(parts), self.parts / f"part-{self._seq}.parquet")
        self._seq += 1
        for p in parts:
            p.unlink()

    def consolidate(self, order: list[str] | None = None) -> int:
        """Write the final file (rows of each id once, in ``order`` of ids, then ion and hop)
        atomically and remove the parts; returns the number of rows."""
        import pyarrow as pa

        table = _merged(self._files())
        pos = {i: k for k, i in enumerate(order or [])}
        extra = sorted(set(table.column("id").to_pylist()) - set(pos))
        pos.update({i: len(pos) + k for k, i in enumerate(extra)})
        keyed = table.append_column("_order", pa.array([pos[i] for i in table.column("id").to_pylist()], pa.int64()))
        keyed = keyed.sort_by([("_order", "ascending"), ("ion", "ascending"), ("hop", "ascending")])
        write_parquet_atomic(keyed.drop_columns(["_order"]), self.path)
        shutil.rmtree(self.parts, ignore_errors=True)
        return table.num_rows


def _read(path: Path, columns: list[str] | None = None) -> Any:
    import pyarrow.parquet as pq

    return pq.read_table(path, columns=columns, schema=None if columns else schema())


def _merged(files: list[Path]) -> Any:
    """The rows of ``files``, each id's rows from the first file that has it."""
    import pyarrow as pa
    import pyarrow.compute as pc

    seen: set[str] = set()
    tables = []
    for f in files:
        t = _read(f)
        if seen:
            t = t.filter(pc.invert(pc.is_in(t.column("id"), value_set=pa.array(sorted(seen), pa.string()))))
        seen |= set(t.column("id").to_pylist())
        tables.append(t)
    return pa.concat_tables(tables) if tables else schema().empty_table()
