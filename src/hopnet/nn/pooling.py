"""Readout: per-graph pooling of atom features, optionally over a subset of atoms."""

from __future__ import annotations

import torch
from torch import Tensor, nn

from hopnet.infra.errors import HopnetError


class PoolingError(HopnetError, ValueError):
    """A pooling request is malformed (mask of the wrong shape, a graph with no selected atom)."""


def _select(node: Tensor, batch: Tensor, mask: Tensor | None, num_graphs: int | None):
    if batch.dim() != 1 or batch.shape[0] != node.shape[0]:
        raise PoolingError(f"pooling: batch has shape {tuple(batch.shape)}, expected ({node.shape[0]},)")
    if num_graphs is None:
        num_graphs = int(batch.max()) + 1 if batch.numel() else 0
    if mask is not None:
        if mask.dtype != torch.bool or mask.shape != batch.shape:
            raise PoolingError(f"pooling: mask must be bool of shape ({node.shape[0]},), "
                               f"got {mask.dtype} {tuple(mask.shape)}")
        node, batch = node[mask], batch[mask]
    counts = torch.bincount(batch, minlength=num_graphs)
    if counts.numel() != num_graphs:
        raise PoolingError(f"pooling: batch indices reach {counts.numel() - 1}, beyond num_graphs={num_graphs}")
    if num_graphs and bool((counts == 0).any()):
        empty = int(torch.nonzero(counts == 0)[0])
        raise PoolingError(f"pooling: graph {empty} has no atom to pool over")
    return node, batch, counts, num_graphs


class MeanPooling(nn.Module):
    """Mean of the atom features of each graph: [N, H] -> [B, H]."""

    def forward(self, node: Tensor, batch: Tensor, mask: Tensor | None = None,
                num_graphs: int | None = None) -> Tensor:
        node, batch, counts, b = _select(node, batch, mask, num_graphs)
        total = node.new_zeros(b, node.shape[1]).index_add_(0, batch, node)
        return total / counts.to(node.dtype).unsqueeze(1)


def segment_softmax(logits: Tensor, batch: Tensor, num_graphs: int) -> Tensor:
    """Softmax of ``logits`` [N, K] over the rows of each graph, separately per column."""
    index = batch.unsqueeze(1).expand_as(logits)
    peak = logits.new_full((num_graphs, logits.shape[1]), float("-inf"))
    peak = peak.scatter_reduce(0, index, logits.detach(), "amax", include_self=True)
    w = torch.exp(logits - peak.index_select(0, batch))
    norm = w.new_zeros(num_graphs, logits.shape[1]).index_add_(0, batch, w)
    return w / norm.index_select(0, batch)


class AttentionPooling(nn.Module):
    """Multi-head attention pooling: each head k scores every atom (``gate``), the scores are
    softmax-normalised within each graph, each head takes the weighted sum of the atom
    features, and the ``heads`` sums are concatenated and projected back to ``features``."""

    def __init__(self, features: int, heads: int) -> None:
        super().__init__()
        self.heads = heads
        self.gate = nn.Linear(features, heads)
        self.project = nn.Linear(heads * features, features)

    def forward(self, node: Tensor, batch: Tensor, mask: Tensor | None = None,
                num_graphs: int | None = None) -> Tensor:
        node, batch, _, b = _select(node, batch, mask, num_graphs)
        alpha = segment_softmax(self.gate(node), batch, b)                 # [N, K]
        weighted = alpha.unsqueeze(2) * node.unsqueeze(1)                 # [N, K, H]
        pooled = node.new_zeros(b, self.heads, node.shape[1]).index_add_(0, batch, weighted)
        return self.project(pooled.reshape(b, -1))
