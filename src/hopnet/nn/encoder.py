"""The ALIGNN encoder: batch of crystal graphs -> atom, bond and pooled features."""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Any

import torch
from torch import Tensor, nn
from torch.utils.checkpoint import checkpoint

from hopnet.infra.errors import HopnetError
from hopnet.nn.config import EncoderConfig
from hopnet.nn.fused import BondPairStream, Segments, gaussian_mlp
from hopnet.nn.layers import AlignnLayer, EdgeGatedGraphConv, MLPLayer, RBFExpansion
from hopnet.nn.plan import BatchPlan, Edges
from hopnet.nn.pooling import AttentionPooling, MeanPooling


class GraphInputError(HopnetError, ValueError):
    """A graph batch lacks a field the encoder needs or has a field of the wrong shape."""


@dataclass
class EncoderOutput:
    """``node`` [N, H] atom features, ``edge`` [E, H] bond features, ``pooled`` [B, H]."""

    node: Tensor
    edge: Tensor
    pooled: Tensor


class _Embedding(nn.Module):
    """Scalar -> Gaussian basis -> MLPLayer -> MLPLayer (bond lengths or angle cosines)."""

    def __init__(self, vmin: float, vmax: float, bins: int, embedding: int, hidden: int, fused: bool):
        super().__init__()
        self.rbf = RBFExpansion(vmin, vmax, bins)
        self.mlp1 = MLPLayer(bins, embedding, fused)
        self.mlp2 = MLPLayer(embedding, hidden, fused)
        self.fused = fused

    def forward(self, d: Tensor, update_stats: bool = True) -> Tensor:
        if self._fused_training(d):
            # one autograd node that keeps only d [M] (the bond-pair-sized activations are not saved)
            return gaussian_mlp(d, self.rbf.centers, self.rbf.gamma, self.mlp1, self.mlp2, update_stats)
        return self.mlp2(self.mlp1(self.rbf(d), update_stats), update_stats)

    def _fused_training(self, d: Tensor) -> bool:
        return (self.fused and self.training and self.mlp1.bn.training and self.mlp2.bn.training
                and d.shape[0] > 0 and not torch.is_autocast_enabled(d.device.type))

    def distinct(self, values: Tensor, index: Tensor, update_stats: bool = True) -> Tensor | None:
        """The embedding of distinct ``values`` [U] of a batch whose row ``r`` holds
        ``values[index[r]]``: row ``u`` of the result is what :meth:`forward` gives each row of
        value ``u`` (batch-norm statistics of the whole batch in training mode). None where that
        needs the expanded batch (a training-mode batch norm outside the fused path)."""
        if self._fused_training(values):
            counts = torch.bincount(index, minlength=values.shape[0]).to(values.dtype)
            return gaussian_mlp(values, self.rbf.centers, self.rbf.gamma, self.mlp1, self.mlp2, update_stats,
                                counts=counts)
        if self.mlp1.bn.training or self.mlp2.bn.training:
            return None
        return self.mlp2(self.mlp1(self.rbf(values)))           # row-wise: exact on distinct values


class AlignnEncoder(nn.Module):
    """ALIGNN (Choudhary & DeCost 2021) on a PyG batch of ``AlignnGraph``.

    Uses the batch fields ``x`` [N, F], ``edge_index`` [2, E] (src -> dst), ``edge_len`` [E] (Å;
    the norm of ``edge_vec`` when absent), ``lg_edge_index`` [2, T] (bond pairs, e1 -> e2),
    ``lg_cos`` [T] and ``batch`` [N].
    """

    def __init__(self, config: EncoderConfig | None = None) -> None:
        super().__init__()
        self.config = config = config if config is not None else EncoderConfig()
        fused = config.implementation == "fused"
        hidden = config.hidden_features
        self.atom_embedding = MLPLayer(config.atom_input_features, hidden, fused)
        self.edge_embedding = _Embedding(0.0, config.rbf_cutoff, config.edge_input_features,
                                         config.embedding_features, hidden, fused)
        self.angle_embedding = None
        if config.alignn_layers > 0:
            self.angle_embedding = _Embedding(-1.0, 1.0, config.triplet_input_features,
                                              config.embedding_features, hidden, fused)
        n = config.alignn_layers
        self.alignn_layers = nn.ModuleList(
            AlignnLayer(hidden, triplet_output=i < n - 1, fused=fused) for i in range(n)
        )
        self.gcn_layers = nn.ModuleList(
            EdgeGatedGraphConv(hidden, edge_output=True, fused=fused) for _ in range(config.gcn_layers)
        )
        if config.pooling == "mean":
            self.pooling: nn.Module = MeanPooling()
        else:
            self.pooling = AttentionPooling(hidden, config.attention_heads)

    # ------------------------------------------------------------------ inputs
    def _inputs(self, batch: Any) -> tuple[Tensor, Tensor, Tensor, Tensor | None, Tensor | None, Tensor, int]:
        x = getattr(batch, "x", None)
        edge_index = getattr(batch, "edge_index", None)
        if x is None or edge_index is None:
            raise GraphInputError("graph batch needs fields x and edge_index")
        if x.dim() != 2 or x.shape[1] != self.config.atom_input_features:
            raise GraphInputError(f"graph x has shape {tuple(x.shape)}, the encoder expects "
                                  f"[N, {self.config.atom_input_features}] atom features")
        edge_len = getattr(batch, "edge_len", None)
        if edge_len is None:
            edge_vec = getattr(batch, "edge_vec", None)
            if edge_vec is None:
                raise GraphInputError("graph batch needs edge_len or edge_vec")
            edge_len = edge_vec.norm(dim=-1)
        if edge_len.shape != (edge_index.shape[1],):
            raise GraphInputError(f"edge_len has shape {tuple(edge_len.shape)}, expected ({edge_index.shape[1]},)")
        lg_edge_index = lg_cos = None
        if self.config.alignn_layers > 0:
            lg_edge_index = getattr(batch, "lg_edge_index", None)
            lg_cos = getattr(batch, "lg_cos", None)
            if lg_edge_index is None or lg_cos is None:
                raise GraphInputError("graph batch needs lg_edge_index and lg_cos for ALIGNN layers")
            if lg_cos.shape != (lg_edge_index.shape[1],):
                raise GraphInputError(f"lg_cos has shape {tuple(lg_cos.shape)}, "
                                      f"expected ({lg_edge_index.shape[1]},)")
            angle_index = getattr(batch, "lg_angle_index", None)
            if angle_index is not None:
                angles = getattr(batch, "lg_angle", None)
                if (angles is None or angles.dim() != 1 or angle_index.shape != lg_cos.shape
                        or (angle_index.numel() and int(angle_index.max()) >= angles.shape[0])):
                    raise GraphInputError("lg_angle_index must index lg_angle once per bond pair "
                                          f"(shapes {tuple(angle_index.shape)} and "
                                          f"{None if angles is None else tuple(angles.shape)})")
        index = getattr(batch, "batch", None)
        if index is None:
            index = torch.zeros(x.shape[0], dtype=torch.long, device=x.device)
        num_graphs = getattr(batch, "num_graphs", None)
        if not isinstance(num_graphs, int):
            num_graphs = int(index.max()) + 1 if index.numel() else 0
        return x, edge_index, edge_len, lg_edge_index, lg_cos, index, num_graphs

    # ----------------------------------------------------------------- forward
    def forward(self, batch: Any, edge_extra: Tensor | None = None,
                pool_mask: Tensor | None = None) -> EncoderOutput:
        """Encode a batch. ``edge_extra`` [E, H] is added to the bond embedding (extra per-bond
        information, e.g. Model 2's bond-length change along the hop); ``pool_mask`` [N] bool
        restricts the pooled vector to a subset of atoms."""
        x, edge_index, edge_len, lg_edge_index, lg_cos, index, num_graphs = self._inputs(batch)
        dtype = self.atom_embedding.linear.weight.dtype
        h = self.atom_embedding(x.to(dtype))
        ckpt = self.config.checkpointing and self.training and torch.is_grad_enabled()
        autocast = torch.is_autocast_enabled(x.device.type)
        fused = self.config.implementation == "fused"
        on_distinct = fused and not ckpt and not autocast     # embeddings once per distinct value
        e = None
        if on_distinct and edge_len.shape[0] > 0 and not edge_len.requires_grad:
            e = self._distinct_bonds(edge_len.to(dtype))
        if e is None:
            e = self.edge_embedding(edge_len.to(dtype))
        if edge_extra is not None:
            e = e + edge_extra.to(dtype)
        t = t_index = None
        if self.angle_embedding is not None:
            if on_distinct and lg_cos.shape[0] > 0:
                t, t_index = self._distinct_angles(batch, lg_cos.to(dtype))
            if t is None:
                t = self._maybe_checkpoint(ckpt, self.angle_embedding, lg_cos.to(dtype))
        stream = None
        if fused and not ckpt and self.training and torch.is_grad_enabled() and not autocast:
            stream = BondPairStream()   # the bond-pair features are rebuilt in backward, not kept
        plan = BatchPlan(Edges(edge_index, x.shape[0]),
                         Edges(lg_edge_index, edge_index.shape[1]) if self.alignn_layers else None, stream)
        if fused and not ckpt:          # end points grouped once for the sums of every layer
            pairs = plan.pairs.grouped() if plan.pairs is not None else None
            if pairs is not None and t_index is not None:
                pairs = replace(pairs, rows=Segments(t_index, t.shape[0]))
            plan = replace(plan, bonds=plan.bonds.grouped(), pairs=pairs)
        for i, layer in enumerate(self.alignn_layers):
            if ckpt:                    # no stream, no distinct rows: recomputed in backward
                h, e, t = self._maybe_checkpoint(ckpt, layer, h, e, t, plan)
            else:
                h, e, t = layer(h, e, t, plan, index=i)
                plan = plan.after_first_layer()   # from here on every bond pair has its own features
        if stream is not None and t is not None:
            stream.put(len(self.alignn_layers), t, owned=False)   # last layer kept its bond-pair update
        del stream
        plan = replace(plan, stream=None)
        for conv in self.gcn_layers:
            h, e = conv(h, e, plan.bonds)
        return EncoderOutput(node=h, edge=e, pooled=self.pool(h, index, mask=pool_mask, num_graphs=num_graphs))

    def _distinct_bonds(self, lengths: Tensor) -> Tensor | None:
        """The bond embedding [E, H] worked out once per distinct bond length (the two directions
        of a bond, and a crystal's symmetry, repeat each length 6-8 times in the data sets) and
        gathered per bond; None where that does not pay (few repeats) or is not possible (see
        :meth:`_Embedding.distinct`)."""
        values, index = torch.unique(lengths, return_inverse=True)
        if 2 * values.shape[0] > lengths.shape[0]:
            return None
        u = self.edge_embedding.distinct(values, index)
        return None if u is None else u.index_select(0, index)

    def _distinct_angles(self, batch: Any, cos: Tensor) -> tuple[Tensor | None, Tensor | None]:
        """``(t, index)``: the angle embedding of each distinct bond angle [U, H] and, per bond
        pair, the row of its angle [T] (``lg_angle``/``lg_angle_index`` of the batch, else
        found here). Everything in the first line-graph layer that depends on the angle alone
        then runs on U rows instead of T (U is 10-20 % of T in crystals). (None, None) when the
        embedding cannot run on distinct values (see :meth:`_Embedding.distinct`)."""
        index = getattr(batch, "lg_angle_index", None)
        if index is not None:
            angles = batch.lg_angle.to(cos.dtype)
        else:
            angles, index = torch.unique(cos, return_inverse=True)
        t = self.angle_embedding.distinct(angles, index)
        return (None, None) if t is None else (t, index)

    @staticmethod
    def _maybe_checkpoint(enabled: bool, module: nn.Module, *args: Any) -> Any:
        if not enabled:
            return module(*args)
        calls = [0]

        def run(*inputs: Any) -> Any:
            # the recomputation in backward must not update the batch-norm running statistics
            first = calls[0] == 0
            calls[0] += 1
            return module(*inputs, update_stats=first)

        return checkpoint(run, *args, use_reentrant=False)

    def pool(self, node: Tensor, batch: Tensor, mask: Tensor | None = None,
             num_graphs: int | None = None) -> Tensor:
        """Pool atom features [N, H] per graph -> [B, H]; ``mask`` [N] bool restricts the pool
        to a subset of atoms (every graph must keep at least one)."""
        return self.pooling(node, batch, mask=mask, num_graphs=num_graphs)

    @property
    def out_features(self) -> int:
        return self.config.hidden_features
