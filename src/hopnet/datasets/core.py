"""``Entry`` and ``Dataset``: the in-memory form of a data set.

Entries keep the raw JARVIS ``atoms`` dict untouched; converting it to a structure is done by
:func:`hopnet.structures.to_structure` where it is needed.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any, overload

import numpy as np

from hopnet.infra.errors import DataError


@dataclass(frozen=True)
class Entry:
    """One data point.

    ``id``: ``sys_name`` for migration paths, ``str(jid)`` otherwise. ``target``: E_m in eV for
    migration barriers, the (scaled) property value otherwise. ``atoms``: JARVIS Atoms dict
    (lattice in Å). ``meta``: everything else the file / metadata table gives (class, formula,
    ion, compound, xc, ...).
    """

    id: str
    target: float
    atoms: dict
    meta: dict = field(default_factory=dict)


class EntrySequence(Sequence[Entry]):
    """The sequence protocol of a collection of :class:`Entry` held in ``self._entries``
    (slicing goes through the subclass's ``subset``)."""

    _entries: tuple[Entry, ...]

    def __len__(self) -> int:
        return len(self._entries)

    @overload
    def __getitem__(self, i: int) -> Entry: ...
    @overload
    def __getitem__(self, i: slice) -> Any: ...

    def __getitem__(self, i: int | slice) -> Any:
        if isinstance(i, slice):
            return self.subset(range(len(self))[i])  # type: ignore[attr-defined]
        return self._entries[i]

    def __iter__(self) -> Iterator[Entry]:
        return iter(self._entries)

    @property
    def ids(self) -> list[str]:
        return [e.id for e in self._entries]


class Dataset(EntrySequence):
    """An ordered, immutable collection of :class:`Entry`.

    ``sha256`` identifies the content for provenance: for a data set read from a file it is the
    sha256 of the decompressed JSON (the value pinned in the registry); for a subset it is the
    sha256 of the parent's hash followed by the selected ids, so equal selections hash equally.
    """

    def __init__(
        self,
        name: str,
        entries: Iterable[Entry],
        sha256: str,
        *,
        task: str = "property-regression",
        units: str = "",
        source: str = "",
        file: str = "",
    ) -> None:
        self.name = name
        self._entries: tuple[Entry, ...] = tuple(entries)
        self.sha256 = sha256
        self.task = task
        self.units = units
        self.source = source  # "path" | "HOPNET_DATA_DIR" | "cache" | "download" | ""
        self.file = file
        self.split = "all"  # set by load() for "train"/"test" subsets

    def __repr__(self) -> str:
        return f"Dataset({self.name!r}, n={len(self)}, sha256={self.sha256[:12]}...)"

    # --- views ---------------------------------------------------------------------------------
    @property
    def targets(self) -> np.ndarray:
        """Targets as a float64 array (eV for migration barriers)."""
        return np.fromiter((e.target for e in self._entries), dtype=np.float64, count=len(self))

    def subset(self, indices: Iterable[int] | np.ndarray) -> "Dataset":
        """A new data set holding the entries at ``indices`` (in that order)."""
        idx = np.asarray(list(indices) if not isinstance(indices, np.ndarray) else indices)
        if idx.size and (idx.dtype.kind not in "iu"):
            raise DataError(f"subset indices must be integers, got dtype {idx.dtype}")
        idx = idx.astype(np.int64, copy=False).ravel()
        n = len(self)
        if idx.size and (idx.min() < -n or idx.max() >= n):
            raise DataError(f"subset index out of range for data set {self.name!r} of {n} entries")
        chosen = [self._entries[int(i)] for i in idx]
        h = hashlib.sha256(self.sha256.encode())
        for e in chosen:
            h.update(b"\n" + e.id.encode())
        out = Dataset(self.name, chosen, h.hexdigest(), task=self.task, units=self.units,
                      source=self.source, file=self.file)
        out.split = "subset"
        return out

    def provenance(self) -> dict[str, Any]:
        """What a result file should record about the data it used."""
        return {"name": self.name, "n_entries": len(self), "sha256": self.sha256,
                "source": self.source, "file": self.file, "split": self.split}
