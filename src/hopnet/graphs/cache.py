"""On-disk graph cache keyed by structure hash + graph parameters, and a bulk builder."""

from __future__ import annotations

import hashlib
import logging
import os
from pathlib import Path
from typing import Any, Iterable, Sequence

import numpy as np
import torch

from hopnet.infra.errors import StructureError
from hopnet.graphs.config import GraphConfig
from hopnet.graphs.data import GRAPH_FIELDS, AlignnGraph, as_structure, build_graph

log = logging.getLogger(__name__)


def default_cache_root() -> Path:
    """``$HOPNET_CACHE_DIR/graphs``, else ``~/.cache/hopnet/graphs``."""
    base = os.environ.get("HOPNET_CACHE_DIR")
    return (Path(base) if base else Path.home() / ".cache" / "hopnet") / "graphs"


def structure_hash(structure: Any, decimals: int = 6) -> str:
    """The graph-cache key of a structure: :func:`hopnet.structures.structure_hash` of lattice,
    species and fractional coordinates (site properties left out: graphs do not read them)."""
    from hopnet.structures import structure_hash as _hash

    s = as_structure(structure)
    if not s.is_ordered:
        raise StructureError("structure has partially occupied sites; cannot hash it for the graph cache")
    return _hash(s, decimals=decimals, include_site_properties=False)


class GraphCache:
    """Graphs stored as ``<root>/<aa>/<key>.pt`` (a dict of tensors).

    Files are sealed (:mod:`hopnet.infra.integrity`: sha256 trailer) and written atomically
    (temporary file, fsync, ``os.replace``), so concurrent writers are safe; a file that is
    truncated, altered or otherwise unreadable is rebuilt with a warning, never loaded.
    """

    #: part of every key: bump when the file layout changes (2: sealed files, 3: distinct angles)
    FILE_VERSION = 3

    def __init__(self, root: str | os.PathLike | None = None) -> None:
        self.root = Path(root) if root is not None else default_cache_root()

    def key(self, structure: Any, config: GraphConfig, n_mobile: int = 0) -> str:
        text = f"{structure_hash(structure)}|{config.key()}|mobile={int(n_mobile)}|file={self.FILE_VERSION}"
        return hashlib.sha256(text.encode()).hexdigest()

    def path(self, key: str) -> Path:
        return self.root / key[:2] / f"{key}.pt"

    def get_or_build(self, structure: Any, config: GraphConfig | None = None, n_mobile: int = 0
                     ) -> AlignnGraph:
        """The cached graph of ``structure``, building and storing it if absent or unreadable."""
        config = config or GraphConfig()
        s = as_structure(structure)
        path = self.path(self.key(s, config, n_mobile))
        if path.exists():
            try:
                return self._load(path)
            except Exception as exc:  # any unreadable file is rebuilt
                log.warning("graph cache file %s is unreadable (%s: %s); rebuilding it",
                            path, type(exc).__name__, exc)
        graph = build_graph(s, config, n_mobile)
        self._save(path, graph)
        return graph

    @staticmethod
    def _load(path: Path) -> AlignnGraph:
        from hopnet.infra.integrity import load_torch_sealed

        data = load_torch_sealed(path, "graph cache file")
        if not isinstance(data, dict) or set(data) != set(GRAPH_FIELDS):
            raise ValueError("not a hopnet graph file")
        if any(not isinstance(v, torch.Tensor) for v in data.values()):
            raise ValueError("non-tensor field")
        n, e = data["z"].shape[0], data["edge_index"].shape[1]
        if (data["x"].shape[0] != n or data["edge_index"].shape[0] != 2 or data["edge_vec"].shape[0] != e
                or data["lg_edge_index"].shape[0] != 2
                or data["lg_cos"].shape[0] != data["lg_edge_index"].shape[1]
                or data["lg_angle_index"].shape != data["lg_cos"].shape
                or (data["lg_angle_index"].numel()
                    and not 0 <= int(data["lg_angle_index"].min()) <= int(data["lg_angle_index"].max())
                    < data["lg_angle"].shape[0])):
            raise ValueError("inconsistent field shapes")
        return AlignnGraph(**data)

    @staticmethod
    def _save(path: Path, graph: AlignnGraph) -> None:
        from hopnet.infra.integrity import save_torch_sealed

        try:
            save_torch_sealed({f: getattr(graph, f) for f in GRAPH_FIELDS}, path)
        except OSError as exc:
            log.warning("could not write graph cache file %s (%s); continuing without caching", path, exc)


def build_graphs(
    structures: Iterable[Any],
    config: GraphConfig | None = None,
    cache: GraphCache | str | os.PathLike | None = None,
    n_mobile: int | Sequence[int] = 0,
) -> list[AlignnGraph]:
    """Graphs of many structures; ``n_mobile`` is one number for all or one per structure.

    cache: a :class:`GraphCache`, a cache directory, or None (build without caching).
    """
    config = config or GraphConfig()
    structures = list(structures)
    if isinstance(n_mobile, (int, np.integer)):
        mobiles = [int(n_mobile)] * len(structures)
    else:
        mobiles = [int(m) for m in n_mobile]
        if len(mobiles) != len(structures):
            raise StructureError(f"{len(mobiles)} n_mobile values for {len(structures)} structures")
    if cache is not None and not isinstance(cache, GraphCache):
        cache = GraphCache(cache)
    if cache is None:
        return [build_graph(s, config, m) for s, m in zip(structures, mobiles)]
    return [cache.get_or_build(s, config, m) for s, m in zip(structures, mobiles)]
