"""The per-batch plan the ALIGNN layers read: the edges of the crystal graph and of the line graph,
with the index structures their sums need, built once per batch instead of once per layer.

The layers' ``forward`` then takes features and the plan, and reads like its equation; how the
sums are organised (:class:`~hopnet.nn.fused.Segments`) and whether bond-pair features are kept
or rebuilt in backward (:class:`~hopnet.nn.fused.BondPairStream`) is the plan's business.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

from torch import Tensor

from hopnet.nn.fused import BondPairStream, Segments


@dataclass(frozen=True)
class Edges:
    """The edges u -> v of one graph: ``index`` [2, E] (row 0 the sources u, row 1 the
    destinations v) over ``n_nodes`` nodes. ``dst``/``src``: the same rows grouped by
    destination / source for the fused sums (None: the reference path, or built on first use by
    :meth:`grouped`). ``rows``: the edge features hold distinct rows [U, H] and edge r has row
    ``rows[r]`` (a [E] long tensor, or its :class:`Segments` for faster gradient sums; the
    bond-angle embedding in the first line-graph convolution)."""

    index: Tensor
    n_nodes: int
    dst: Segments | None = None
    src: Segments | None = None
    rows: Segments | Tensor | None = None

    @property
    def source(self) -> Tensor:
        return self.index[0]

    @property
    def target(self) -> Tensor:
        return self.index[1]

    def grouped(self) -> "Edges":
        """These edges with ``dst`` and ``src`` built (a no-op when they are)."""
        if self.dst is not None and self.src is not None:
            return self
        return replace(self, dst=Segments(self.index[1], self.n_nodes), src=Segments(self.index[0], self.n_nodes))

    def one_row_per_edge(self) -> "Edges":
        """These edges once every edge has its own feature row (after the first update)."""
        return self if self.rows is None else replace(self, rows=None)


@dataclass(frozen=True)
class BatchPlan:
    """One batch as the layers see it: ``bonds`` (crystal graph: atoms joined by bonds),
    ``pairs`` (line graph: bonds joined by bond pairs; None without ALIGNN layers) and the
    ``stream`` that hands bond-pair features from one layer's forward to its backward (fused
    training only; None: features are kept by autograd)."""

    bonds: Edges
    pairs: Edges | None = None
    stream: BondPairStream | None = None

    def after_first_layer(self) -> "BatchPlan":
        return self if self.pairs is None or self.pairs.rows is None else replace(self, pairs=self.pairs.one_row_per_edge())
