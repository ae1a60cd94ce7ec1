"""The cumulative multi-property data set of multi-property pre-training (MPT).

The seven pre-training sets (``fe bg gv ph dc pz ebg``, see ``/work/shared/data/README.md``) share
many structures: the same crystal can carry a formation energy, a band gap and a shear modulus.
:func:`merge_properties` turns them into one table with one row per distinct structure:

* ``targets`` [N, P] float64 (the scaled property values; NaN where absent),
* ``mask`` [N, P] bool, the presence mask δ (True where row i has property p).

**Which structures are "the same".** The ``jid`` of these files is a per-file running index
(``0, 1, 10, ...``), not an identity shared between files, so rows are matched by a canonical
structure key only (:func:`structure_key`): lattice matrix (Å) and the sorted list of
(species, fractional coordinates wrapped into [0, 1)), rounded to ``decimals`` (default 4:
1e-4 Å for the lattice, about 1e-3 Å for positions). Site order and periodic images therefore do
not matter; a different (e.g. non-reduced or rotated) cell of the same crystal is a different
key (conservative: never merges two distinct structures by accident).

A structure listed twice *within one file* gets the mean of its values (counted in the stats as
``within_file_duplicates``).
"""

from __future__ import annotations

import hashlib
import logging
from collections import Counter
from collections.abc import Mapping, Sequence
from itertools import combinations
from typing import Any

import numpy as np

from hopnet.datasets.core import Entry, EntrySequence
from hopnet.infra.errors import DataError

log = logging.getLogger(__name__)

#: The seven pre-training properties, in the published order.
PROPERTIES: tuple[str, ...] = ("fe", "bg", "gv", "ph", "dc", "pz", "ebg")


def structure_key(atoms: dict, decimals: int = 4) -> str:
    """Canonical sha256 key of a JARVIS Atoms dict: lattice (Å) + sorted (species, wrapped
    fractional coordinates), rounded to ``decimals``; independent of site order and of which
    periodic image a site is written at."""
    lat = np.asarray(atoms["lattice_mat"], dtype=float).reshape(3, 3)
    xyz = np.asarray(atoms["coords"], dtype=float).reshape(-1, 3)
    frac = np.linalg.solve(lat.T, xyz.T).T if atoms.get("cartesian") else xyz
    frac = np.round(frac - np.floor(frac), decimals) % 1.0 + 0.0
    species = np.asarray(atoms["elements"], dtype=str)
    order = np.lexsort((frac[:, 2], frac[:, 1], frac[:, 0], species))
    h = hashlib.sha256(b"hopnet.multiprop/1\n")
    h.update((np.round(lat, decimals) + 0.0).astype("<f8").tobytes())
    h.update(("\n".join(species[order].tolist()) + "\n").encode())
    h.update(np.ascontiguousarray(frac[order], dtype="<f8").tobytes())
    return h.hexdigest()


class MultiPropertyDataset(EntrySequence):
    """Rows of (structure, target vector, presence mask). ``self[i]`` is an :class:`Entry` whose
    ``target`` is NaN and whose ``meta`` holds ``targets`` {property: value} and ``sources``
    {property: id in that property's file}; the arrays ``targets`` / ``mask`` are the tensors
    training uses. ``stats`` describes the merge (see :func:`merge_properties`)."""

    def __init__(self, properties: Sequence[str], entries: Sequence[Entry], targets: np.ndarray,
                 mask: np.ndarray, sha256: str, stats: dict | None = None, name: str = "multiprop") -> None:
        self.properties = tuple(properties)
        self._entries = tuple(entries)
        self.targets = np.asarray(targets, dtype=np.float64).reshape(len(self._entries), len(self.properties))
        self.mask = np.asarray(mask, dtype=bool).reshape(self.targets.shape)
        if np.any(self.mask & ~np.isfinite(self.targets)):
            raise DataError("a present target is not finite")
        self.sha256 = sha256
        self.stats = dict(stats or {})
        self.name = name

    def __repr__(self) -> str:
        return f"MultiPropertyDataset({list(self.properties)}, n={len(self)})"

    def subset(self, indices: Sequence[int] | np.ndarray) -> "MultiPropertyDataset":
        idx = np.asarray(indices, dtype=np.int64).ravel()
        h = hashlib.sha256(self.sha256.encode())
        for i in idx.tolist():
            h.update(b"\n" + self._entries[i].id.encode())
        return MultiPropertyDataset(self.properties, [self._entries[i] for i in idx.tolist()],
                                    self.targets[idx], self.mask[idx], h.hexdigest(), name=self.name)

    def provenance(self) -> dict[str, Any]:
        return {"name": self.name, "properties": list(self.properties), "n_rows": len(self),
                "sha256": self.sha256, "stats": self.stats}

    @classmethod
    def single(cls, dataset: Sequence[Entry], prop: str) -> "MultiPropertyDataset":
        """One data set of scalar targets as a one-property table (no merging)."""
        entries = list(dataset)
        y = np.array([e.target for e in entries], dtype=float)
        bad = np.flatnonzero(~np.isfinite(y))
        if bad.size:
            raise DataError(f"entry {entries[int(bad[0])].id!r} has a non-finite target")
        rows = [Entry(id=e.id, target=float("nan"), atoms=e.atoms,
                      meta={**e.meta, "targets": {prop: float(t)}, "sources": {prop: e.id}})
                for e, t in zip(entries, y)]
        sha = getattr(dataset, "sha256", None) or hashlib.sha256(
            "\n".join(e.id for e in entries).encode()).hexdigest()
        return cls([prop], rows, y[:, None], np.ones((len(rows), 1), bool), sha,
                   stats={"rows": len(rows), "per_property": {prop: len(rows)}}, name=prop)


def merge_properties(sources: Mapping[str, Sequence[Entry]], decimals: int = 4) -> MultiPropertyDataset:
    """Merge per-property data sets {property: entries} into one :class:`MultiPropertyDataset`.

    Rows appear in first-seen order (properties in the mapping's order). ``stats``: ``entries``
    (input total), ``rows``, ``per_property`` counts after merging, ``within_file_duplicates``,
    ``rows_by_n_properties`` {k: rows carrying k properties}, ``pair_overlaps`` {"a+b": rows
    carrying both}."""
    props = list(sources)
    if not props or len(set(props)) != len(props):
        raise DataError(f"need distinct property names, got {props}")
    col = {p: j for j, p in enumerate(props)}
    row_of: dict[str, int] = {}
    atoms: list[dict] = []
    first_id: list[str] = []
    sums: list[dict[str, float]] = []
    counts: list[dict[str, int]] = []
    srcs: list[dict[str, str]] = []
    dup = 0
    n_in = 0
    for p in props:
        for e in sources[p]:
            n_in += 1
            t = float(e.target)
            if not np.isfinite(t):
                raise DataError(f"{p}: entry {e.id!r} has a non-finite target")
            k = structure_key(e.atoms, decimals)
            i = row_of.get(k)
            if i is None:
                i = row_of[k] = len(atoms)
                atoms.append(e.atoms)
                first_id.append(f"{p}:{e.id}")
                sums.append({})
                counts.append({})
                srcs.append({})
            if p in sums[i]:
                dup += 1
                srcs[i][p] = f"{srcs[i][p]},{e.id}"
            else:
                srcs[i][p] = str(e.id)
            sums[i][p] = sums[i].get(p, 0.0) + t
            counts[i][p] = counts[i].get(p, 0) + 1
    n = len(atoms)
    y = np.full((n, len(props)), np.nan)
    entries = []
    for i in range(n):
        vals = {p: sums[i][p] / counts[i][p] for p in sums[i]}
        for p, v in vals.items():
            y[i, col[p]] = v
        entries.append(Entry(id=first_id[i], target=float("nan"), atoms=atoms[i],
                             meta={"targets": vals, "sources": srcs[i]}))
    mask = np.isfinite(y)
    by_k = Counter(mask.sum(axis=1).tolist())
    pairs = {f"{a}+{b}": int((mask[:, col[a]] & mask[:, col[b]]).sum()) for a, b in combinations(props, 2)}
    stats = {
        "entries": n_in, "rows": n, "decimals": decimals,
        "per_property": {p: int(mask[:, col[p]].sum()) for p in props},
        "within_file_duplicates": dup,
        "rows_by_n_properties": {int(k): int(v) for k, v in sorted(by_k.items())},
        "pair_overlaps": {k: v for k, v in pairs.items() if v},
    }
    h = hashlib.sha256(f"hopnet.multiprop/1|{decimals}".encode())
    for p in props:
        h.update(f"\n{p}={getattr(sources[p], 'sha256', '') or len(sources[p])}".encode())
    log.info("merged %d entries of %d properties into %d rows", n_in, len(props), n)
    return MultiPropertyDataset(props, entries, y, mask, h.hexdigest(), stats, name="+".join(props))


def select_properties(properties: str | Sequence[str] = "all", exclude: Sequence[str] = ()) -> list[str]:
    """Property list from ``"all"`` / a name / a comma list / a list, minus ``exclude``."""
    if isinstance(properties, str):
        props = list(PROPERTIES) if properties == "all" else [p for p in properties.split(",") if p]
    else:
        props = list(properties)
    unknown = [p for p in [*props, *exclude] if p not in PROPERTIES]
    if unknown:
        raise DataError(f"unknown pre-training propert{'y' if len(unknown) == 1 else 'ies'} "
                        f"{', '.join(unknown)}; known: {', '.join(PROPERTIES)}")
    props = [p for p in props if p not in set(exclude)]
    if not props:
        raise DataError("no property left to pre-train on")
    return props


def cap_entries(dataset: Any, max_size: int | None, seed: int = 0) -> Any:
    """A seeded random sample of at most ``max_size`` entries (order kept); the data set itself
    when it is small enough or ``max_size`` is None."""
    if max_size is None or len(dataset) <= max_size:
        return dataset
    idx = np.sort(np.random.default_rng(seed).permutation(len(dataset))[:max_size])
    return dataset.subset(idx)


def load_multiprop(properties: str | Sequence[str] = "all", exclude: Sequence[str] = (),
                   max_size: int | None = None, seed: int = 0, decimals: int = 4,
                   data_dir: str | None = None) -> MultiPropertyDataset:
    """Load the named pre-training sets (``hopnet.datasets.load``), cap each at ``max_size``
    entries (seeded, before merging), and merge them (:func:`merge_properties`)."""
    from hopnet.datasets.loader import load

    props = select_properties(properties, exclude)
    sources = {p: cap_entries(load(p, data_dir=data_dir), max_size, seed) for p in props}
    return merge_properties(sources, decimals)


def read_structure_csv(path: str | Any) -> Any:
    """A :class:`~hopnet.datasets.Dataset` from a CSV of ``structure file, target`` rows (a
    header row is allowed; relative structure paths are relative to the CSV's folder; any
    format :func:`hopnet.structures.read_structure` reads). Entry ids are the structure paths as
    written."""
    import csv
    from pathlib import Path

    from hopnet.datasets.core import Dataset
    from hopnet.structures import read_structure, to_jarvis

    p = Path(path)
    try:
        text = p.read_text(encoding="utf-8-sig")
    except FileNotFoundError:
        raise DataError(f"CSV file {p} not found") from None
    except UnicodeDecodeError as exc:
        raise DataError(f"{p} is not a text CSV file (byte {exc.start} is not UTF-8)") from None
    except IsADirectoryError:
        raise DataError(f"{p} is a folder, not a CSV file") from None
    rows = [r for r in csv.reader(text.splitlines()) if r and any(c.strip() for c in r)]
    if rows:
        try:
            float(rows[0][1])
        except (IndexError, ValueError):
            rows = rows[1:]  # header
    if not rows:
        raise DataError(f"{p}: no (structure file, target) rows")
    entries = []
    seen: set[str] = set()
    for n, r in enumerate(rows, 1):
        if len(r) < 2:
            raise DataError(f"{p}: row {n} needs two columns (structure file, target)")
        name, value = r[0].strip(), r[1].strip()
        try:
            target = float(value)
        except ValueError:
            raise DataError(f"{p}: row {n}: target {value!r} is not a number") from None
        if not np.isfinite(target):
            raise DataError(f"{p}: row {n}: target is not finite")
        if name in seen:
            raise DataError(f"{p}: structure {name} is listed twice")
        seen.add(name)
        sp = Path(name) if Path(name).is_absolute() else p.parent / name
        entries.append(Entry(id=name, target=target, atoms=to_jarvis(read_structure(sp)), meta={"file": str(sp)}))
    return Dataset(p.stem, entries, hashlib.sha256(text.encode()).hexdigest(), source="path", file=str(p))


def load_finetune_data(spec: str, data_dir: str | None = None) -> Any:
    """Fine-tune data: a registered name, a JSON/JSON.gz list like the shared files, or a CSV of
    (structure file, target) rows."""
    from hopnet.datasets.loader import load

    if str(spec).lower().endswith(".csv"):
        return read_structure_csv(spec)
    return load(spec, data_dir=data_dir)
