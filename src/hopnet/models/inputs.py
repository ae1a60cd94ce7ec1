"""Input pipeline of the barrier models: migration paths -> per-variant graphs -> size-capped
PyG batches.

For each path the variant's structures are made (:class:`~hopnet.paths.MigrationPath`
``band()``, ``initial()``, ``final()``), their periodic graphs are built or read from a
:class:`~hopnet.graphs.GraphCache` (keyed by the structure, so band, initial and final are cached
separately), and then, in memory, the graphs get

* ``path_dist`` [N] (Å): each atom's distance to the straight initial -> final segment, minimised
  over periodic images (used by path pooling and cropping);
* ``delta_len`` [E] (Å, Model 2 only): change of each bond's length when the ion moves to its
  final site (see :mod:`hopnet.models.barrier`);
* ``y`` [1] (eV; NaN when unknown) and ``desc`` [1, D] (hybrid models only, raw descriptors);
* the crop (``crop_radius``): the subgraph induced by the atoms within the radius.

:func:`collate` joins samples into one ``Batch`` ordered slot-major: for Model 1 the B initial
graphs come first, then the B final graphs. :class:`SizeCappedBatchSampler` closes a batch when
it reaches ``batch_size`` paths *or* when the next path would push the atom count or the
line-graph edge count over its cap (a path bigger than a cap goes alone), so big cells never
blow the memory.
"""

from __future__ import annotations

import copy
import itertools
import logging
import math
from typing import TYPE_CHECKING, Any, Iterator, Sequence

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset as TorchDataset
from torch_geometric.data import Batch

from hopnet.infra.errors import DataError, HopnetError
from hopnet.graphs import AlignnGraph, GraphCache, build_graph
from hopnet.paths import MigrationPath, as_path

if TYPE_CHECKING:  # annotations only: the barrier family imports this pipeline
    from hopnet.models.barrier import BarrierModelConfig

log = logging.getLogger(__name__)

#: Per-atom and per-bond fields of the graphs this module makes (sliced by the crop).
NODE_FIELDS = frozenset({"x", "z", "pos", "is_mobile", "path_dist"})
EDGE_FIELDS = frozenset({"edge_vec", "edge_len", "delta_len"})
_SHIFTS = np.array(list(itertools.product((-1, 0, 1), repeat=3)), dtype=float)  # [27, 3]


def segment_distances(lattice: np.ndarray, frac: np.ndarray, start_frac: np.ndarray,
                      hop_frac: np.ndarray) -> np.ndarray:
    """Distance (Å) of every point ``frac`` [N, 3] to the segment from ``start_frac`` along
    ``hop_frac`` (fractional), minimised over the periodic images of the point.

    The point is first wrapped to the minimum image relative to the segment's midpoint, then its
    27 neighbouring translations are tried (exact for any segment and radius that fit inside the
    cell's 3x3x3 neighbourhood)."""
    lattice = np.asarray(lattice, dtype=float)
    mid = np.asarray(start_frac, float) + 0.5 * np.asarray(hop_frac, float)
    d = np.asarray(frac, float) - mid
    d -= np.round(d)
    rel = (d[:, None, :] + _SHIFTS[None, :, :]) @ lattice           # [N, 27, 3] from the midpoint
    hop = np.asarray(hop_frac, float) @ lattice
    hh = float(hop @ hop)
    # from the segment start: rel + hop / 2; project onto the segment, clamp to [0, 1]
    from_start = rel + 0.5 * hop
    t = np.clip((from_start @ hop) / hh, 0.0, 1.0) if hh > 0 else np.zeros(from_start.shape[:2])
    off = from_start - t[..., None] * hop
    return np.sqrt((off * off).sum(-1)).min(axis=1)


def induced_subgraph(graph: AlignnGraph, keep: torch.Tensor) -> AlignnGraph:
    """The subgraph on the atoms where ``keep`` [N] bool is true: bonds between kept atoms, bond
    pairs between kept bonds, everything re-indexed; node and bond fields are sliced."""
    keep = keep.to(torch.bool)
    node_id = torch.cumsum(keep.long(), 0) - 1
    ekeep = keep[graph.edge_index[0]] & keep[graph.edge_index[1]]
    edge_id = torch.cumsum(ekeep.long(), 0) - 1
    lg = graph.lg_edge_index
    lkeep = ekeep[lg[0]] & ekeep[lg[1]] if lg.numel() else torch.zeros(0, dtype=torch.bool)
    out = {}
    for key, value in graph.items():
        if not torch.is_tensor(value):
            out[key] = value
        elif key == "edge_index":
            out[key] = node_id[value[:, ekeep]]
        elif key == "lg_edge_index":
            out[key] = edge_id[value[:, lkeep]]
        elif key in ("lg_cos", "lg_angle_index"):
            out[key] = value[lkeep]             # lg_angle is kept whole (unused angles count 0)
        elif key in NODE_FIELDS:
            out[key] = value[keep]
        elif key in EDGE_FIELDS:
            out[key] = value[ekeep]
        else:
            out[key] = value
    return AlignnGraph(**out)


def _structures(path: MigrationPath, config: BarrierModelConfig) -> list[tuple[Any, int]]:
    """(structure, n_mobile) of each graph slot of the variant."""
    if config.variant == "initial-final":
        return [(path.initial(), 1), (path.final(), 1)]
    if config.variant == "initial-delta":
        return [(path.initial(), 1)]
    return [(path.band(), path.n_images)]


def path_graphs(path: MigrationPath, config: BarrierModelConfig, cache: GraphCache | None = None
                ) -> list[AlignnGraph]:
    """The variant's input graphs of one path, with ``path_dist`` (and ``delta_len``) attached and
    the crop applied. ``y``/``desc`` are not set here."""
    graphs = []
    for structure, n_mobile in _structures(path, config):
        g = (cache.get_or_build(structure, config.graph, n_mobile) if cache is not None
             else build_graph(structure, config.graph, n_mobile))
        dist = segment_distances(structure.lattice.matrix, structure.frac_coords,
                                 path.initial_frac, path.hop_vector_frac)
        g.path_dist = torch.from_numpy(dist.astype(np.float32))
        if config.variant == "initial-delta":
            disp = torch.zeros(g.num_nodes, 3)
            disp[0] = torch.as_tensor(path.hop_vector, dtype=torch.float32)  # the ion is atom 0
            src, dst = g.edge_index
            moved = g.edge_vec + disp[dst] - disp[src]
            g.delta_len = moved.norm(dim=1) - g.edge_vec.norm(dim=1)
        if config.crop_radius is not None:
            keep = g.is_mobile | (g.path_dist <= config.crop_radius)
            g = induced_subgraph(g, keep)
        graphs.append(g)
    return graphs


class GraphSet(TorchDataset):
    """Graphs built once, one list of graphs per item (two for Model 1, else one), with the item
    ``ids``, per-item arrays named in ``ROWS`` (sliced by :meth:`subset`) and the sizes the
    size-capped batch sampler reads (``n_atoms``, ``n_line_edges`` per item)."""

    ROWS: tuple[str, ...] = ("targets",)
    ids: list[str]
    samples: list[list[AlignnGraph]]

    def _count(self) -> None:
        self.n_atoms = np.array([sum(g.num_nodes for g in s) for s in self.samples], dtype=np.int64)
        self.n_line_edges = np.array([sum(int(g.lg_edge_index.shape[1]) for g in s) for s in self.samples],
                                     dtype=np.int64)

    def subset(self, indices: Sequence[int] | np.ndarray) -> "GraphSet":
        """A view on the items at ``indices`` (graphs shared, not copied)."""
        idx = np.asarray(indices, dtype=np.int64)
        out = copy.copy(self)
        out.ids = [self.ids[i] for i in idx]
        out.samples = [self.samples[i] for i in idx]
        for name in self.ROWS:
            rows = getattr(self, name)
            setattr(out, name, None if rows is None else rows[idx])
        out.n_atoms, out.n_line_edges = self.n_atoms[idx], self.n_line_edges[idx]
        return out

    def __len__(self) -> int:
        return len(self.samples)


def build_graphs(ids: Sequence[str], make: Any, what: str, every: int = 100) -> list:
    """``make(i)`` for each item, an error naming the item's id, progress in the log."""
    out = []
    for i, key in enumerate(ids):
        try:
            out.append(make(i))
        except HopnetError as exc:
            raise type(exc)(f"{key}: {exc}") from None
        if (i + 1) % every == 0:
            log.info("graphs of %d/%d %s built", i + 1, len(ids), what)
    return out


class BarrierGraphs(GraphSet):
    """Migration paths (or ``Entry``/band items) turned into the variant's graphs, built once.

    ``targets``: barriers in eV (NaN where unknown), or None. ``cache``: a ``GraphCache``, a
    directory, or None (no disk cache). ``self.descriptors`` [n, D] raw path descriptors (hybrid
    models only)."""

    ROWS = ("targets", "descriptors")

    def __init__(self, items: Sequence[Any], config: BarrierModelConfig,
                 targets: Sequence[float] | None = None, cache: GraphCache | str | None = None) -> None:
        self.config = config
        if cache is not None and not isinstance(cache, GraphCache):
            cache = GraphCache(cache)
        items = list(items)
        n = len(items)
        y = np.full(n, np.nan) if targets is None else np.asarray(list(targets), dtype=float)
        if y.shape != (n,):
            raise DataError(f"{y.size} targets for {n} paths")
        self.targets = y
        self.ids = [str(getattr(it, "id", i)) for i, it in enumerate(items)]
        paths = [as_path(it, config.n_images) for it in items]
        self.samples = build_graphs(self.ids, lambda i: path_graphs(paths[i], config, cache), "paths")
        self.descriptors: np.ndarray | None = None
        if config.hybrid:
            from hopnet.descriptors import band_descriptors

            self.descriptors = np.stack([band_descriptors(p.band(), p.n_images) for p in paths]) \
                if paths else np.zeros((0, 0))
        self._count()

    @property
    def n_descriptors(self) -> int:
        return 0 if self.descriptors is None else int(self.descriptors.shape[1])

    def __getitem__(self, i: int) -> list[AlignnGraph]:
        out = []
        for g in self.samples[i]:
            g = g.clone()
            g.y = torch.tensor([self.targets[i]], dtype=torch.float32)
            if self.descriptors is not None:
                g.desc = torch.from_numpy(self.descriptors[i:i + 1].astype(np.float32))
            out.append(g)
        return out


def collate(samples: Sequence[Sequence[AlignnGraph]]) -> Batch:
    """One PyG ``Batch``, slot-major (all first graphs, then all second graphs for Model 1)."""
    slots = len(samples[0])
    return Batch.from_data_list([s[k] for k in range(slots) for s in samples])


class _EpochHolder:
    """What Lightning calls ``set_epoch`` on (it looks at ``batch_sampler.sampler``)."""

    def __init__(self) -> None:
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = int(epoch)


class SizeCappedBatchSampler:
    """Batches of at most ``batch_size`` paths, ``max_atoms`` atoms and ``max_line_edges``
    line-graph edges (None = no cap). Shuffled per epoch from ``seed`` + epoch when ``shuffle``.

    The shuffle key is ``epoch_fn()`` when set (:func:`hopnet.training.train.train` sets it to
    the trainer's global step, exact after a resume too), else what ``set_epoch`` last stored.

    Distributed runs: ``shard_fn()`` (when set) returns ``(world_size, rank)``; the epoch's
    batches are then padded (by repeating the first ones) to a multiple of the world size and
    each process takes every world-size-th batch, so all processes run the same number of steps."""

    def __init__(self, n_atoms: Sequence[int], n_line_edges: Sequence[int], batch_size: int,
                 max_atoms: int | None = None, max_line_edges: int | None = None,
                 shuffle: bool = False, seed: int = 0) -> None:
        if batch_size < 1:
            raise HopnetError(f"batch_size must be >= 1, got {batch_size}")
        self.n_atoms = np.asarray(n_atoms, dtype=np.int64)
        self.n_line_edges = np.asarray(n_line_edges, dtype=np.int64)
        self.batch_size = int(batch_size)
        self.max_atoms = max_atoms
        self.max_line_edges = max_line_edges
        self.shuffle = shuffle
        self.seed = int(seed)
        self.sampler = _EpochHolder()
        self.epoch_fn: Any = None
        self.shard_fn: Any = None

    def set_epoch(self, epoch: int) -> None:
        self.sampler.set_epoch(epoch)

    def batches(self) -> list[list[int]]:
        n = len(self.n_atoms)
        epoch = int(self.epoch_fn()) if self.epoch_fn is not None else self.sampler.epoch
        order = (np.random.default_rng([self.seed, epoch]).permutation(n)
                 if self.shuffle else np.arange(n))
        cap_a = self.max_atoms if self.max_atoms else math.inf
        cap_l = self.max_line_edges if self.max_line_edges else math.inf
        out: list[list[int]] = []
        cur: list[int] = []
        atoms = lines = 0
        for i in order.tolist():
            a, l = int(self.n_atoms[i]), int(self.n_line_edges[i])
            if cur and (len(cur) >= self.batch_size or atoms + a > cap_a or lines + l > cap_l):
                out.append(cur)
                cur, atoms, lines = [], 0, 0
            cur.append(i)
            atoms += a
            lines += l
        if cur:
            out.append(cur)
        world, rank = self.shard_fn() if self.shard_fn is not None else (1, 0)
        if world > 1 and out:
            out = out + [out[i % len(out)] for i in range((-len(out)) % world)]
            out = out[rank::world]
        return out

    def __iter__(self) -> Iterator[list[int]]:
        return iter(self.batches())

    def __len__(self) -> int:
        return len(self.batches())


def make_loader(data: BarrierGraphs, batch_size: int, shuffle: bool = False, seed: int = 0,
                max_atoms: int | None = None, max_line_edges: int | None = None,
                num_workers: int = 0) -> DataLoader:
    """A ``DataLoader`` over ``data`` with :class:`SizeCappedBatchSampler` and :func:`collate`."""
    sampler = SizeCappedBatchSampler(data.n_atoms, data.n_line_edges, batch_size, max_atoms,
                                     max_line_edges, shuffle=shuffle, seed=seed)
    return DataLoader(data, batch_sampler=sampler, collate_fn=collate, num_workers=num_workers,
                      persistent_workers=num_workers > 0)
