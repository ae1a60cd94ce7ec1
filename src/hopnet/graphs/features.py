"""Atom features: a 92-column one-hot element embedding (CGCNN-like in kind).

The table lives in ``hopnet/data/element_features.json`` as one bin index per property block
and element; :mod:`hopnet.graphs.make_element_table` generates it from pymatgen's element data
and documents the bins. Elements without data for a property get an all-zero block.
"""

from __future__ import annotations

import json
from functools import lru_cache
from importlib import resources

import numpy as np

from hopnet.infra.errors import StructureError

FEATURE_DIM = 92
_TABLE_FILE = "element_features.json"


@lru_cache(maxsize=1)
def _raw_table() -> dict:
    text = resources.files("hopnet").joinpath("data", _TABLE_FILE).read_text()
    return json.loads(text)


def feature_blocks() -> list[tuple[str, int]]:
    """(name, width) of each block, in column order; widths sum to :data:`FEATURE_DIM`."""
    return [(b["name"], int(b["size"])) for b in _raw_table()["blocks"]]


def table_version() -> str:
    """Short tag of the stored table (format + pymatgen version it came from); goes into cache keys."""
    raw = _raw_table()
    return f"{raw['format']}-{raw['pymatgen_version']}"


@lru_cache(maxsize=1)
def element_table() -> np.ndarray:
    """float32 [Zmax + 1, 92]: row Z is the embedding of element Z (row 0 is all zeros)."""
    raw = _raw_table()
    sizes = np.array([int(b["size"]) for b in raw["blocks"]])
    if sizes.sum() != FEATURE_DIM:
        raise StructureError(f"element table {_TABLE_FILE} has {sizes.sum()} columns, expected {FEATURE_DIM}")
    starts = np.concatenate([[0], np.cumsum(sizes)[:-1]])
    zs = np.array([int(z) for z in raw["elements"]])
    bins = np.array(list(raw["elements"].values()), dtype=np.int64)  # [n_el, n_blocks]
    table = np.zeros((zs.max() + 1, FEATURE_DIM), dtype=np.float32)
    rows, blk = np.nonzero(bins >= 0)
    table[zs[rows], starts[blk] + bins[rows, blk]] = 1.0
    table.setflags(write=False)
    return table


def atom_features(z: np.ndarray) -> np.ndarray:
    """float32 [N, 92] embeddings of atomic numbers ``z`` (int array [N])."""
    z = np.asarray(z, dtype=np.int64)
    table = element_table()
    if z.size and (z.min() < 1 or z.max() >= table.shape[0]):
        bad = z[(z < 1) | (z >= table.shape[0])][0]
        raise StructureError(f"no element features for atomic number {bad} (covered: 1..{table.shape[0] - 1})")
    return table[z]
