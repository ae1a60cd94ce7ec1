"""Building blocks of ALIGNN: Gaussian basis expansion, MLP layer, edge-gated graph convolution,
ALIGNN layer.

Conventions: ``edge_index[0]`` is the source u, ``edge_index[1]`` the destination v; messages
flow u -> v and are summed at v. On the line graph the "nodes" are bonds and the "edges" are bond
pairs (e1 = u->v, e2 = v->w), so the same convolution runs on both graphs.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from hopnet.nn.fused import (BondPairStream, Segments, batch_norm_silu, edge_gate, gated_aggregate,
                             gaussian_basis)
from hopnet.nn.plan import BatchPlan, Edges

AGGREGATION_EPS = 1e-6  # added to the gate sum in the normalised aggregation (as upstream ALIGNN)


class RBFExpansion(nn.Module):
    """Gaussian basis on a scalar: ``exp(-gamma (d - mu_k)^2)`` for ``bins`` evenly spaced
    centres ``mu_k`` on ``[vmin, vmax]``; ``gamma = 1 / spacing`` (as upstream ALIGNN).

    Input [M] (bond lengths in Å, or bond-angle cosines), output [M, bins].
    """

    def __init__(self, vmin: float, vmax: float, bins: int) -> None:
        super().__init__()
        if bins < 2 or not vmax > vmin:
            raise ValueError(f"RBFExpansion needs bins >= 2 and vmax > vmin, got {bins}, [{vmin}, {vmax}]")
        self.vmin, self.vmax, self.bins = float(vmin), float(vmax), int(bins)
        self.register_buffer("centers", torch.linspace(vmin, vmax, bins), persistent=False)
        self.gamma = (bins - 1) / (vmax - vmin)

    def forward(self, d: Tensor) -> Tensor:
        return gaussian_basis(d, self.centers.to(d.dtype), self.gamma)

    def extra_repr(self) -> str:
        return f"vmin={self.vmin}, vmax={self.vmax}, bins={self.bins}, gamma={self.gamma:.4g}"


def _batch_norm(bn: nn.BatchNorm1d, x: Tensor, update_stats: bool) -> Tensor:
    """``bn(x)`` that can skip the running-statistics update (checkpoint recomputation)."""
    if bn.training:
        update = update_stats and bn.track_running_stats
        if update:
            bn.num_batches_tracked.add_(1)
        momentum = bn.momentum if bn.momentum is not None else (
            1.0 / float(bn.num_batches_tracked) if update else 0.0)
        return F.batch_norm(
            x, bn.running_mean if update else None, bn.running_var if update else None,
            bn.weight, bn.bias, True, momentum, bn.eps,
        )
    return F.batch_norm(x, bn.running_mean, bn.running_var, bn.weight, bn.bias, False, 0.0, bn.eps)


def norm_silu(
    bn: nn.BatchNorm1d, x: Tensor, residual: Tensor | None, fused: bool, update_stats: bool = True,
    stream: BondPairStream | None = None, index: int = 0,
) -> Tensor:
    """``residual + silu(bn(x))`` (no residual when ``residual`` is None); ``stream``/``index``
    as :func:`~hopnet.nn.fused.batch_norm_silu` (fused training-mode path only)."""
    if fused and bn.training and x.shape[0] > 0:
        return batch_norm_silu(x, residual, bn, update_stats, stream, index)
    y = F.silu(_batch_norm(bn, x, update_stats))
    return y if residual is None else residual + y


class MLPLayer(nn.Module):
    """Linear -> BatchNorm -> SiLU (upstream ALIGNN's ``MLPLayer``)."""

    def __init__(self, in_features: int, out_features: int, fused: bool = True) -> None:
        super().__init__()
        self.linear = nn.Linear(in_features, out_features)
        self.bn = nn.BatchNorm1d(out_features)
        self.fused = fused

    def forward(self, x: Tensor, update_stats: bool = True) -> Tensor:
        return norm_silu(self.bn, self.linear(x), None, self.fused, update_stats)


class EdgeGatedGraphConv(nn.Module):
    """Residual edge-gated graph convolution (Bresson & Laurent 2017, as used by ALIGNN).

    With ``m_uv = A h_u + B h_v + C e_uv`` and ``s = sigmoid(m)``::

        h_v' = h_v + SiLU(BN(W h_v + sum_u s_uv * V h_u / (sum_u s_uv + eps)))
        e_uv' = e_uv + SiLU(BN(m_uv))

    ``A, B, V, W`` are stored as one ``node_linear`` (rows in that order) so the node side is a
    single matrix product; ``C`` is ``edge_linear``. ``edge_output=False`` skips the edge update
    (and its batch norm) when nobody reads the updated edge features.
    """

    def __init__(self, features: int, edge_output: bool = True, fused: bool = True) -> None:
        super().__init__()
        self.features = features
        self.node_linear = nn.Linear(features, 4 * features)
        self.edge_linear = nn.Linear(features, features)
        self.bn_nodes = nn.BatchNorm1d(features)
        self.bn_edges = nn.BatchNorm1d(features) if edge_output else None
        self.fused = fused

    def forward(self, h: Tensor, e: Tensor, edges: Edges | Tensor, update_stats: bool = True,
                stream: BondPairStream | None = None, index: int = 0) -> tuple[Tensor, Tensor | None]:
        """``h`` [N, H] node features, ``e`` [E, H] edge features (or [U, H] distinct rows with
        ``edges.rows``), ``edges`` the graph's :class:`~hopnet.nn.plan.Edges` (a bare [2, E]
        ``edge_index`` works too). Returns the updated ``(h, e)``, ``e`` full [E, H] (None when
        ``edge_output=False``).

        ``stream`` (fused implementation, training mode): ``e`` is the ``index``-th bond-pair
        feature tensor of a :class:`~hopnet.nn.fused.BondPairStream`; it is not kept for the
        backward pass but rebuilt there from the updated edge features."""
        if not isinstance(edges, Edges):
            edges = Edges(edges, h.shape[0])
        if self.fused:
            return self._forward_fused(h, e, edges.grouped(), update_stats, stream, index)
        if edges.rows is not None:
            e = e.index_select(0, edges.rows.index if isinstance(edges.rows, Segments) else edges.rows)
        return self._forward_reference(h, e, edges.index, update_stats)

    def _forward_fused(self, h: Tensor, e: Tensor, edges: Edges, update_stats: bool,
                       stream: BondPairStream | None, index: int):
        f = self.features
        if not (self.bn_edges is not None and self.bn_edges.training and edges.index.shape[1] > 0):
            stream_edges = None                                   # no fused edge update to rebuild from
        else:
            stream_edges = stream
        if edges.rows is not None:
            stream = None                                         # compact e: small, kept as it is
        p = self.node_linear(h)                                   # [N, 4H] = [A h | B h | V h | W h]
        m = edge_gate(p, e, self.edge_linear, edges, stream, index)   # A h[src] + B h[dst] + C e
        if stream is not None and stream_edges is None:
            stream.put(index, e, owned=False)                     # the end of the stream: kept as is
        # one split, not two column slices: each slice's backward makes a zero-filled [N, 4H]
        vh, w = p.split(f, dim=1)[2:]
        x = w + gated_aggregate(m, vh, edges.source, edges.target, AGGREGATION_EPS, edges.dst, edges.src)
        del p, vh, w                                              # nothing keeps [N, 4H] alive
        h_new = norm_silu(self.bn_nodes, x, h, True, update_stats)
        e_new = None
        if self.bn_edges is not None:
            rows = edges.rows
            residual = e if rows is None else e.index_select(0, rows.index if isinstance(rows, Segments) else rows)
            e_new = norm_silu(self.bn_edges, m, residual, True, update_stats, stream_edges, index)
        return h_new, e_new

    def _forward_reference(self, h: Tensor, e: Tensor, edge_index: Tensor, update_stats: bool):
        """Plain autograd, one Linear per gate as upstream ALIGNN (the baseline for tests and
        benchmarks)."""
        f = self.features
        w, b = self.node_linear.weight, self.node_linear.bias
        src, dst = edge_index[0], edge_index[1]
        src_gate = F.linear(h, w[:f], b[:f])
        dst_gate = F.linear(h, w[f:2 * f], b[f:2 * f])
        message = F.linear(h, w[2 * f:3 * f], b[2 * f:3 * f])
        self_update = F.linear(h, w[3 * f:], b[3 * f:])
        m = src_gate[src] + dst_gate[dst] + self.edge_linear(e)
        sigma = torch.sigmoid(m)
        num = torch.zeros_like(h).index_add(0, dst, message[src] * sigma)
        den = torch.zeros_like(h).index_add(0, dst, sigma)
        x = self_update + num / (den + AGGREGATION_EPS)
        h_new = h + F.silu(_batch_norm(self.bn_nodes, x, update_stats))
        e_new = None
        if self.bn_edges is not None:
            e_new = e + F.silu(_batch_norm(self.bn_edges, m, update_stats))
        return h_new, e_new


class AlignnLayer(nn.Module):
    """One ALIGNN layer: an edge-gated convolution on the line graph (nodes = bonds with
    features ``e``, edges = bond pairs with features ``t``) updating ``(e, t)``, then one on the
    crystal graph with the updated ``e`` updating ``(h, e)``.

    ``triplet_output=False`` (the last layer) skips the bond-pair update nobody reads.
    """

    def __init__(self, features: int, triplet_output: bool = True, fused: bool = True) -> None:
        super().__init__()
        self.line_conv = EdgeGatedGraphConv(features, edge_output=triplet_output, fused=fused)
        self.graph_conv = EdgeGatedGraphConv(features, edge_output=True, fused=fused)

    def forward(self, h: Tensor, e: Tensor, t: Tensor, plan: BatchPlan, update_stats: bool = True,
                index: int = 0) -> tuple[Tensor, Tensor, Tensor | None]:
        """(e, t) <- line-graph convolution over ``plan.pairs``; (h, e) <- crystal-graph
        convolution over ``plan.bonds``. ``index``: this layer's slot of ``plan.stream``."""
        e, t_new = self.line_conv(e, t, plan.pairs, update_stats, plan.stream, index)
        h, e_new = self.graph_conv(h, e, plan.bonds, update_stats)
        assert e_new is not None
        return h, e_new, t_new
