"""Data sets: registry (name -> file, origin, pinned sha256), loaders, splits, scenario labels.

``hopnet.datasets.load(name)`` returns a :class:`Dataset` of :class:`Entry` records whose ``atoms``
are the raw JARVIS dicts; ``hopnet.datasets.fetch(name)`` downloads a set, rebuilding it from the
pinned public originals. Nothing is read or downloaded at import time.
"""

from hopnet.datasets.core import Dataset, Entry
from hopnet.datasets.loader import Located, fetch, load, locate
from hopnet.datasets.registry import REGISTRY, DatasetInfo, get_info, list_datasets

__all__ = [
    "REGISTRY",
    "Dataset",
    "DatasetInfo",
    "Entry",
    "Located",
    "fetch",
    "get_info",
    "list_datasets",
    "load",
    "locate",
]
