"""Memory-lean autograd kernels for the edge-gated graph convolution and the ALIGNN embeddings.

Every function computes what the plain autograd formulation computes (``EdgeGatedGraphConv``
with ``implementation="reference"``; the embedding MLPs as Linear -> BatchNorm -> SiLU modules)
but keeps far fewer edge-sized ([E, H]) tensors alive between forward and backward:

* :func:`gated_aggregate` saves only the gate pre-activation ``m`` (which the batch norm needs
  anyway) and a compact copy of the messages ``V h``, and recomputes ``sigmoid(m)`` and the
  gathered messages in the backward pass (up to :data:`WHOLE_ELEMENTS` elements of ``m`` and
  :data:`WHOLE_WIDTH` features it works on whole tensors and keeps ``sigmoid(m)`` instead);
* :func:`batch_norm_silu` (training-mode batch norm -> SiLU -> optional residual add) saves only
  its input and the per-channel statistics and recomputes the normalised values in backward;
* :func:`gaussian_mlp` (Gaussian basis -> Linear -> BN -> SiLU -> Linear -> BN -> SiLU, the
  bond-length and bond-angle embeddings) saves only its scalar input and the batch statistics
  and recomputes everything else in backward (up to :data:`KEEP_EMBEDDING_WIDTH` output
  features it keeps the activations instead: there the recompute costs more than it saves);
* :class:`BondPairStream` lets the line-graph convolutions drop their bond-pair inputs ``t_l``:
  with the residual update ``t_{l+1} = t_l + silu(bn(m_l))`` each ``t_l`` is rebuilt in the
  backward pass as ``t_{l+1} - silu(bn(m_l))`` from the next one (the batch-norm output is
  recomputed there anyway), so only the last ``t`` is kept.

Row-wise work on [E, H] tensors runs in blocks of :data:`CHUNK_ELEMENTS` elements, so the
temporaries of a backward pass are block-sized and only its results are [E, H].

On the line graph E is the number of bond pairs (~20,000 per migration band), so every [E, H]
tensor that is not kept is ~20 MB per band at H = 256.
"""

from __future__ import annotations

import bisect
import math
from collections.abc import Iterator
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor
from torch.autograd.function import once_differentiable

from hopnet.infra.errors import HopnetError

_aten = torch.ops.aten

CHUNK_ELEMENTS = 1 << 20  # elements per block of rows (4 MB in float32)
#: gaussian_mlp keeps its activations (instead of recomputing them in backward) up to this output
#: width: at small widths the recompute costs more time than the memory it saves is worth
KEEP_EMBEDDING_WIDTH = 64
#: gated_aggregate works on whole [E, H] tensors (sigmoid once, kept for backward) up to this many
#: elements (64 MB in float32) and this width: there the row blocks' gathers cost more time than
#: the memory they save is worth (line graph of a 16-structure fe batch at width 32: forward
#: 2.7 -> 1.9 ms, forward + backward 7.7 -> 6.7 ms); the paper width keeps the lean blocks
WHOLE_ELEMENTS = 1 << 24
WHOLE_WIDTH = 64


class BondPairStreamError(HopnetError, RuntimeError):
    """The backward pass asked for bond-pair features the stream no longer holds."""


#: lowest exponent gaussian_basis passes to exp: e times the smallest normal number comes out (at
#: exactly the smallest normal, exp still takes its slow path); float16's would be too large a change
_EXP_FLOOR = {dtype: math.log(torch.finfo(dtype).tiny) + 1.0
              for dtype in (torch.float32, torch.float64, torch.bfloat16)}


def gaussian_basis(d: Tensor, centers: Tensor, gamma: float) -> Tensor:
    """``exp(-gamma (d - centers)^2)`` [M, K] for ``d`` [M] and ``centers`` [K].

    Exponents are raised to at least :data:`_EXP_FLOOR` (results change by less than 3.2e-38 in
    float32): the CPU ``exp`` kernel takes a slow path, 15-40x slower, for results that underflow,
    and most bins of a bond-length basis do (a 5 Å bond is ~300 below a bin at 0 Å)."""
    x = d.unsqueeze(-1) - centers
    floor = _EXP_FLOOR.get(x.dtype)
    if torch.is_grad_enabled() and x.requires_grad:        # autograd: no in-place ops
        x = x.square().mul(-gamma)
        return (x if floor is None else x.clamp(min=floor)).exp()
    x.square_().mul_(-gamma)
    if floor is not None:
        x.clamp_(min=floor)
    return x.exp_()


def _chunks(rows: int, width: int) -> Iterator[slice]:
    """Row blocks of at most ``CHUNK_ELEMENTS`` elements covering ``range(rows)``."""
    step = max(1, CHUNK_ELEMENTS // max(1, width))
    for start in range(0, rows, step):
        yield slice(start, min(rows, start + step))


class BondPairStream:
    """Bond-pair features ``t_l`` of the line-graph convolutions, handed back in the backward pass.

    In the forward pass every kernel that will need ``t_l`` in its backward pass registers with
    :meth:`expect`; the input of the last line-graph convolution is stored (:meth:`put`), and the
    batch-norm node of convolution ``l`` rebuilds ``t_l = t_{l+1} - silu(bn(m_l))`` and stores it
    for the others (:meth:`take`). A slot is dropped when its last reader has taken it, so one
    graph can be back-propagated once (``retain_graph=True`` twice raises
    :class:`BondPairStreamError`).
    """

    def __init__(self) -> None:
        self._readers: dict[int, int] = {}
        self._left: dict[int, int] = {}
        self._slots: dict[int, tuple[Tensor, bool]] = {}

    def expect(self, index: int) -> None:
        """Register one future reader of ``t_index``."""
        self._readers[index] = self._readers.get(index, 0) + 1

    def expects(self, index: int) -> bool:
        """Whether any kernel will read ``t_index``."""
        return self._readers.get(index, 0) > 0

    def put(self, index: int, t: Tensor, owned: bool) -> None:
        """Store ``t_index`` for its readers (nothing is kept when nobody reads it); ``owned``:
        the stream made the tensor, so its last reader may overwrite it."""
        if self.expects(index):
            self._slots[index] = (t, owned)
            self._left[index] = self._readers[index]

    def take(self, index: int) -> tuple[Tensor, bool]:
        """``(t_index, writable)``: writable when this is the last reader of a tensor the stream made."""
        if index not in self._slots:
            raise BondPairStreamError(
                f"bond-pair features of line-graph layer {index} are gone: a low-memory encoder "
                "graph can be back-propagated only once (use checkpointing=False with retain_graph)")
        t, owned = self._slots[index]
        self._left[index] -= 1
        last = self._left[index] == 0
        if last:
            del self._slots[index]
        return t, owned and last


def stable_order(index: Tensor, n: int) -> Tensor:
    """``torch.argsort(index, stable=True)`` for an index [M] with values in ``0..n-1``, faster:
    numpy's radix sort of 16-bit keys on CPU when ``n <= 65536`` (4x at 50,000 rows), else a
    sort of 32-bit keys (1.7x)."""
    if index.device.type == "cpu" and n <= 1 << 16:
        return torch.from_numpy(np.argsort(index.numpy().astype(np.uint16), kind="stable"))
    return torch.argsort(index.int() if n < 1 << 31 else index, stable=True)


class Segments:
    """Rows of an [M, H] tensor grouped by ``index`` [M] (values in ``0..n-1``).

    :meth:`sum` is ``zeros(n, H).index_add_(0, index, x)`` (same summation order) as one
    gather-and-sum over the rows in index order (``embedding_bag`` with offsets): for an index
    that is not sorted, such as the destinations of the bond pairs, 3-4x faster than the scatter.
    Build it once per graph batch; every layer uses it. A sorted index (the sources of hopnet's
    graphs) is not sorted again (``sorted``), and its :meth:`blocks` are row slices.
    """

    def __init__(self, index: Tensor, n: int) -> None:
        self.index, self.n = index, int(n)
        self.sorted = index.shape[0] < 2 or bool((index[1:] >= index[:-1]).all())
        if self.sorted:
            self.order = torch.arange(index.shape[0], device=index.device)
        else:
            self.order = stable_order(index, self.n)
        counts = torch.bincount(index, minlength=self.n)
        self.offsets = counts.cumsum(0).sub_(counts)
        self._blocks: dict[int, list[tuple[slice, Tensor | slice, Tensor]]] = {}

    def sum(self, x: Tensor) -> Tensor:
        """[n, H]: row ``v`` is the sum of the rows ``r`` of ``x`` [M, H] with ``index[r] == v``."""
        if x.shape[0] == 0 or self.n == 0:
            return x.new_zeros(self.n, x.shape[1])
        return F.embedding_bag(self.order, x, self.offsets, mode="sum")

    def blocks(self, width: int) -> Iterator[tuple[slice, Tensor | slice, Tensor]]:
        """``(destinations, rows, offsets)`` per block of consecutive destinations holding about
        ``CHUNK_ELEMENTS // width`` rows: the rows of those destinations in sorted order (indices
        into ``x``, a slice when the index is sorted) and each destination's first position among
        them. Summing ``x[rows]`` per destination (:func:`_sorted_sum`) is :meth:`sum` block by
        block, in the same order."""
        step = max(1, CHUNK_ELEMENTS // max(1, width))
        if step not in self._blocks:       # the same for every layer of this batch
            starts = self.offsets.tolist() + [self.index.shape[0]]
            found, d0 = [], 0
            while d0 < self.n:
                r0 = starts[d0]
                d1 = bisect.bisect_left(starts, r0 + step, lo=d0 + 1, hi=self.n)    # >= d0 + 1
                rows = slice(r0, starts[d1]) if self.sorted else self.order[r0:starts[d1]]
                found.append((slice(d0, d1), rows, self.offsets[d0:d1] - r0))
                d0 = d1
            self._blocks[step] = found
        return iter(self._blocks[step])


def _take(x: Tensor, rows: Tensor | slice) -> Tensor:
    """``x[rows]``: a view for a slice, a gather for an index."""
    return x[rows] if isinstance(rows, slice) else x.index_select(0, rows)


_ARANGE: dict[torch.device, Tensor] = {}


def _arange(n: int, device: torch.device) -> Tensor:
    """``torch.arange(n)`` on ``device``, a slice of one kept per device (the row numbers of
    every block sum of every layer; making them was ~50 small ops per training step)."""
    rows = _ARANGE.get(device)
    if rows is None or rows.shape[0] < n:
        rows = _ARANGE[device] = torch.arange(max(n, 1 << 16), device=device)
    return rows[:n]


def _sorted_sum(x: Tensor, offsets: Tensor) -> Tensor:
    """[len(offsets), H]: sums of the consecutive row groups of ``x`` starting at ``offsets``."""
    if x.shape[0] == 0:
        return x.new_zeros(offsets.shape[0], x.shape[1])
    return F.embedding_bag(_arange(x.shape[0], x.device), x, offsets, mode="sum")


def _segment_sum(segments: Segments | None, index: Tensor, n: int, x: Tensor) -> Tensor:
    return segments.sum(x) if segments is not None else x.new_zeros(n, x.shape[1]).index_add_(0, index, x)


class _GatedAggregate(torch.autograd.Function):
    """out_v = sum_u sigmoid(m_uv) * vh_u / (sum_u sigmoid(m_uv) + eps), per destination v."""

    @staticmethod
    def forward(ctx, m: Tensor, vh: Tensor, src: Tensor, dst: Tensor, eps: float,  # type: ignore[override]
                dst_segments: Segments | None, src_segments: Segments | None) -> Tensor:
        n, width = vh.shape[0], m.shape[1]
        vh = vh.contiguous()   # a column block of the node products: keep [N, H], not all of them
        kept = None            # sigmoid(m) when worked out whole, kept for backward
        if dst_segments is None:
            num = m.new_zeros(n, width)
            den = m.new_zeros(n, width)
            for r in _chunks(m.shape[0], width):
                sig = torch.sigmoid(m[r])
                den.index_add_(0, dst[r], sig)
                num.index_add_(0, dst[r], vh.index_select(0, src[r]).mul_(sig))
        elif m.numel() <= WHOLE_ELEMENTS and width <= WHOLE_WIDTH:   # whole; sorted-order sums
            kept = torch.sigmoid(m)
            den = dst_segments.sum(kept)
            num = dst_segments.sum(vh.index_select(0, src).mul_(kept))
        else:                  # blocks of whole destinations, rows gathered in sorted order
            num = m.new_empty(n, width)
            den = m.new_empty(n, width)
            for dsts, rows, local in dst_segments.blocks(width):
                # a gathered copy is made sigmoid in place; a slice is a view of m
                sig = torch.sigmoid(m[rows]) if isinstance(rows, slice) else m.index_select(0, rows).sigmoid_()
                den[dsts] = _sorted_sum(sig, local)
                num[dsts] = _sorted_sum(sig.mul_(vh.index_select(0, _take(src, rows))), local)
                del sig
        den.add_(eps)
        out = num.div_(den)
        ctx.save_for_backward(m if kept is None else kept, vh, src, dst, den, out)
        ctx.saved_sigmoid = kept is not None
        ctx.src_segments = src_segments if src_segments is not None and src_segments.sorted else None
        return out

    @staticmethod
    @once_differentiable
    def backward(ctx, grad: Tensor):  # type: ignore[override]
        m, vh, src, dst, den, out = ctx.saved_tensors
        need_m, need_vh = ctx.needs_input_grad[0], ctx.needs_input_grad[1]
        g_num = grad / den                          # d loss / d num_v, [N, H]
        grad_m = torch.empty_like(m) if need_m else None
        grad_vh = torch.zeros_like(vh) if need_vh else None   # (sources without edges stay 0)
        if need_m:
            # d loss / d sigma_uv = g_v * (vh_u - out_v)   (numerator and denominator terms);
            # the difference of the two gathered rows is one embedding_bag over [vh; -out]
            table = torch.cat([vh, out.neg()])
            pairs = torch.stack([src, dst + vh.shape[0]], dim=1)
        by_src = ctx.src_segments
        if by_src is None:                          # row blocks, scattered into grad_vh
            blocks: Iterator = ((None, r, None) for r in _chunks(m.shape[0], m.shape[1]))
        else:                                       # blocks of whole sources: sums, no scatter
            blocks = by_src.blocks(m.shape[1])
        for srcs, r, local in blocks:
            sig = m[r] if ctx.saved_sigmoid else torch.sigmoid(m[r])   # kept, or recomputed per block
            g_dst = g_num.index_select(0, dst[r])
            if need_m:
                diff = F.embedding_bag(pairs[r], table, mode="sum").mul_(g_dst)
                # * sigma (1 - sigma), one pass, straight into the result
                _aten.sigmoid_backward.grad_input(diff, sig, grad_input=grad_m[r])
                del diff
            if need_vh:
                if srcs is None:
                    grad_vh.index_add_(0, src[r], g_dst.mul_(sig))
                else:
                    grad_vh[srcs] = _sorted_sum(g_dst.mul_(sig), local)
        return grad_m, grad_vh, None, None, None, None, None


def gated_aggregate(m: Tensor, vh: Tensor, src: Tensor, dst: Tensor, eps: float = 1e-6,
                    dst_segments: Segments | None = None, src_segments: Segments | None = None) -> Tensor:
    """Sigmoid-gated, normalised sum of source messages ``vh[src]`` at each destination node.

    ``m`` [E, H] gate pre-activations, ``vh`` [N, H] messages per source node, ``src``/``dst`` [E]
    long; ``dst_segments``/``src_segments``: :class:`Segments` of ``dst``/``src`` (faster sums; a
    sorted ``src`` makes the backward pass sum by source instead of scattering). Returns [N, H];
    nodes without incoming edges get 0.
    """
    return _GatedAggregate.apply(m, vh, src, dst, eps, dst_segments, src_segments)


class _EdgeGate(torch.autograd.Function):
    """m = A h[src] + B h[dst] + e @ C^T + c for the packed node products p = [A h | B h | ...]."""

    @staticmethod
    def forward(ctx, p: Tensor, e: Tensor, weight: Tensor, bias: Tensor | None, edges: Any, width: int,
                stream: BondPairStream | None, index: int) -> Tensor:  # type: ignore[override]
        src, dst = edges.source, edges.target
        e_segments = edges.rows if isinstance(edges.rows, Segments) else None
        e_index = e_segments.index if e_segments is not None else edges.rows
        n, k = p.shape[0], p.shape[1] // width
        rows = p.view(n * k, width)                 # row k*i = A h_i, row k*i + 1 = B h_i
        ctx.compact = e_index is not None
        if e_index is None:
            idx = torch.stack([src * k, dst * k + 1], dim=1)
            m = F.embedding_bag(idx, rows, mode="sum")  # A h[src] + B h[dst], one pass
            m.addmm_(e, weight.t())
            if bias is not None:
                m.add_(bias)
        else:                                       # e [U, H] distinct rows, edge r has e[e_index[r]]
            ce = torch.addmm(bias, e, weight.t()) if bias is not None else e.mm(weight.t())
            idx = torch.stack([src * k, dst * k + 1, e_index + n * k], dim=1)
            m = F.embedding_bag(idx, torch.cat([rows, ce]), mode="sum")  # + (C e + c)[e_index]
            del ce
            stream = None                           # e is small: kept as it is
        ctx.stream, ctx.index = None, index
        if stream is None or not ctx.needs_input_grad[2]:
            ctx.save_for_backward(e if ctx.needs_input_grad[2] else None, weight, idx)
        else:                                       # e comes back from the stream in backward
            stream.expect(index)
            ctx.stream = stream
            ctx.save_for_backward(None, weight, idx)
        ctx.shape = (n, k, width)
        ctx.e_rows = e.shape[0]
        ctx.dst_segments, ctx.e_segments, ctx.src_segments = edges.dst, e_segments, edges.src
        return m

    @staticmethod
    @once_differentiable
    def backward(ctx, grad: Tensor):  # type: ignore[override]
        e, weight, idx = ctx.saved_tensors
        n, k, width = ctx.shape
        grad_p = grad_e = grad_w = grad_b = None
        if ctx.needs_input_grad[0]:
            rows = grad.new_zeros(n * k, width)
            if ctx.src_segments is None:
                rows.index_add_(0, idx[:, 0], grad)
            else:
                rows.view(n, k, width)[:, 0] = ctx.src_segments.sum(grad)
            if ctx.dst_segments is None:
                rows.index_add_(0, idx[:, 1], grad)
            else:
                rows.view(n, k, width)[:, 1] = ctx.dst_segments.sum(grad)
            grad_p = rows.view(n, k * width)
        if ctx.compact and any(ctx.needs_input_grad[1:4]):
            # C e + c was gathered by e_index: its gradients are sums over the edges sharing a row
            grad = _segment_sum(ctx.e_segments, idx[:, 2] - n * k, ctx.e_rows, grad)
        if ctx.needs_input_grad[2]:
            if ctx.stream is not None:
                e, _ = ctx.stream.take(ctx.index)
            grad_w = grad.t().mm(e)
            del e
        if ctx.needs_input_grad[1]:
            grad_e = grad.mm(weight)
        if ctx.needs_input_grad[3]:
            grad_b = grad.sum(0)
        return grad_p, grad_e, grad_w, grad_b, None, None, None, None


def edge_gate(p: Tensor, e: Tensor, linear: torch.nn.Linear, edges: Any, stream: BondPairStream | None = None,
              index: int = 0) -> Tensor:
    """Gate pre-activations ``m_uv = A h_u + B h_v + C e_uv`` [E, H] of the edge-gated convolution.

    ``p`` [N, k H] (contiguous) holds ``A h`` in columns ``0:H`` and ``B h`` in ``H:2H`` (the rest
    is ignored); ``linear`` is ``C`` (H -> H); ``edges`` the graph's :class:`hopnet.nn.plan.Edges`
    (``source``/``target`` [E]; ``dst``/``src`` :class:`Segments` make the backward sums faster;
    ``rows``: ``e`` [U, H] holds distinct rows and edge ``r`` has ``e[rows[r]]``, so ``C e`` and
    its gradients are computed on the U rows only). The two gathers and their sum are one
    ``embedding_bag`` pass and ``C e`` is accumulated into it, so no other [E, H] tensor is made.
    With a ``stream``, ``e`` is not kept for the backward pass but taken from slot ``index``.
    """
    width = linear.out_features
    if not p.is_contiguous() or p.shape[1] % width:
        raise ValueError(f"edge_gate needs a contiguous [N, k*{width}] p, got {tuple(p.shape)}")
    weight, bias = linear.weight, linear.bias
    if e.dtype != p.dtype or weight.dtype != p.dtype:  # autocast: p comes from a bf16 matmul
        e, weight = e.to(p.dtype), weight.to(p.dtype)
        bias = None if bias is None else bias.to(p.dtype)
        stream = None                                  # e is a cast copy: keep it
    return _EdgeGate.apply(p, e, weight, bias, edges, width, stream, index)


def _bn_silu_backward(
    grad: Tensor, x: Tensor, weight: Tensor, bias: Tensor, mean: Tensor, invstd: Tensor,
    need_x: bool, t_next: Tensor | None = None, t_out: Tensor | None = None,
    counts: Tensor | None = None, total: float | None = None,
) -> tuple[Tensor | None, Tensor, Tensor]:
    """Gradients of ``silu(batch_norm_train(x))`` (``gx``, ``g_weight``, ``g_bias``), in row blocks.

    The normalised values are recomputed per block; ``gx`` is the only [E, H] tensor made. With
    ``t_next``/``t_out`` each block also writes ``t_out = t_next - silu(bn(x))`` (the residual
    input rebuilt from the output; ``t_out`` may be ``t_next``).

    With ``counts`` [U] (see :func:`weighted_batch_norm`), row ``u`` of ``x`` stands for
    ``counts[u]`` identical rows of a batch of ``total`` rows, ``grad`` holds the gradient summed
    over those rows, and so does the returned ``gx``.
    """
    acc = torch.float64 if x.dtype == torch.float64 else torch.float32
    scale = (invstd * weight).to(acc)
    shift = (bias - mean * invstd * weight).to(acc)
    mean_a, invstd_a = mean.to(acc), invstd.to(acc)
    sum_g = torch.zeros(x.shape[1], dtype=acc, device=x.device)
    sum_gx = torch.zeros_like(sum_g)
    gy = torch.empty_like(x)                        # d loss / d bn(x), then d loss / d x in place
    for r in _chunks(x.shape[0], x.shape[1]):
        y = torch.addcmul(shift, x[r], scale).to(x.dtype)   # x's dtype, as in forward
        _aten.silu_backward.grad_input(grad[r], y, grad_input=gy[r])
        if t_out is not None:
            torch.sub(t_next[r], F.silu(y, inplace=True), out=t_out[r])
        del y
        g = gy[r].to(acc)
        xhat = (x[r].to(acc) - mean_a).mul_(invstd_a)
        sum_g += g.sum(0)
        sum_gx += xhat.mul_(g).sum(0)
    gx = None
    if need_x:
        n = x.shape[0] if counts is None else total
        mean_g, mean_gx = sum_g / n, sum_gx / n
        for r in _chunks(x.shape[0], x.shape[1]):
            xhat = (x[r].to(acc) - mean_a).mul_(invstd_a * mean_gx)
            block = gy[r]
            if counts is None:
                g = block.to(acc).sub_(mean_g).sub_(xhat).mul_(scale)   # in place when acc == dtype
            else:   # summed over the counts[u] rows of u
                g = block.to(acc).sub_(xhat.add_(mean_g).mul_(counts[r, None].to(acc))).mul_(scale)
            if g.data_ptr() != block.data_ptr():
                block.copy_(g)
        gx = gy
    return gx, sum_gx.to(weight.dtype), sum_g.to(weight.dtype)


class _BatchNormSiLU(torch.autograd.Function):
    """y = silu(batch_norm_train(x)) (+ residual), saving only x and the batch statistics."""

    @staticmethod
    def forward(ctx, x, residual, weight, bias, running_mean, running_var, momentum, eps,  # type: ignore[override]
                stream: BondPairStream | None, index: int):
        y, mean, invstd = _aten.native_batch_norm(
            x, weight, bias, running_mean, running_var, True, momentum, eps
        )
        torch.nn.functional.silu(y, inplace=True)
        if residual is not None:
            y.add_(residual)
        ctx.save_for_backward(x, weight, bias, mean, invstd)
        ctx.has_residual = residual is not None
        ctx.stream, ctx.index = None, index
        if stream is not None and residual is not None and stream.expects(index):
            if any(ctx.needs_input_grad):   # rebuild the residual input from y in backward
                stream.expect(index + 1)
                ctx.stream = stream
            else:                           # no backward node: hand the input over as it is
                stream.put(index, residual, owned=False)
        return y

    @staticmethod
    @once_differentiable
    def backward(ctx, grad: Tensor):  # type: ignore[override]
        x, weight, bias, mean, invstd = ctx.saved_tensors
        t_next = t_out = None
        if ctx.stream is not None:
            t_next, writable = ctx.stream.take(ctx.index + 1)
            t_out = t_next if writable else torch.empty_like(t_next)
        gx, gw, gb = _bn_silu_backward(grad, x, weight, bias, mean, invstd,
                                       ctx.needs_input_grad[0], t_next, t_out)
        if t_out is not None:
            del t_next
            ctx.stream.put(ctx.index, t_out, owned=True)
        g_res = grad if ctx.has_residual and ctx.needs_input_grad[1] else None
        gw = gw if ctx.needs_input_grad[2] else None
        gb = gb if ctx.needs_input_grad[3] else None
        return gx, g_res, gw, gb, None, None, None, None, None, None


def _stats_args(bn: torch.nn.BatchNorm1d, update_stats: bool) -> tuple[Tensor | None, Tensor | None, float]:
    """Running statistics to update (None when not) and the momentum, as ``nn.BatchNorm1d``
    in training mode; counts the batch in ``num_batches_tracked`` when updating."""
    update = update_stats and bn.track_running_stats
    if update and bn.num_batches_tracked is not None:
        bn.num_batches_tracked.add_(1)
    momentum = bn.momentum
    if momentum is None:  # cumulative moving average, as nn.BatchNorm1d
        momentum = 1.0 / float(bn.num_batches_tracked) if update else 0.0
    return (bn.running_mean if update else None), (bn.running_var if update else None), momentum


def batch_norm_silu(
    x: Tensor,
    residual: Tensor | None,
    bn: torch.nn.BatchNorm1d,
    update_stats: bool = True,
    stream: BondPairStream | None = None,
    index: int = 0,
) -> Tensor:
    """``residual + silu(bn(x))`` with ``bn`` in training mode, as one low-memory autograd node.

    ``update_stats=False`` normalises with the batch statistics without touching the running
    statistics (used when a checkpointed layer is recomputed in the backward pass). With a
    ``stream``, the residual input is rebuilt in the backward pass from the output and stored in
    slot ``index`` for the kernels that need it (see :class:`BondPairStream`).
    """
    running_mean, running_var, momentum = _stats_args(bn, update_stats)
    if residual is not None and residual.dtype != x.dtype:
        stream = None
    return _BatchNormSiLU.apply(
        x, residual, bn.weight, bn.bias, running_mean, running_var, momentum, bn.eps, stream, index,
    )


def weighted_batch_norm(x: Tensor, weight: Tensor, bias: Tensor, running_mean: Tensor | None,
                        running_var: Tensor | None, momentum: float, eps: float, counts: Tensor,
                        total: float) -> tuple[Tensor, Tensor, Tensor]:
    """Training-mode batch norm of a batch in which row ``u`` of ``x`` [U, H] occurs ``counts[u]``
    times (``total`` rows in all): ``(y, mean, invstd)`` as ``aten.native_batch_norm`` gives for
    the expanded batch, including the running-statistics update (unbiased variance)."""
    w = counts.to(x.dtype)
    mean = (w @ x).div_(total)
    centred = x - mean
    var = (w @ centred.square()).div_(total)
    invstd = (var + eps).rsqrt_()
    with torch.no_grad():
        if running_mean is not None:
            running_mean.mul_(1 - momentum).add_(mean.to(running_mean.dtype), alpha=momentum)
        if running_var is not None:
            unbiased = var * (total / (total - 1)) if total > 1 else var
            running_var.mul_(1 - momentum).add_(unbiased.to(running_var.dtype), alpha=momentum)
    y = centred.mul_(invstd * weight).add_(bias)
    return y, mean, invstd


def _batch_norm_train(x: Tensor, weight: Tensor, bias: Tensor, stats: tuple, counts: Tensor | None,
                      total: float | None) -> tuple[Tensor, Tensor, Tensor]:
    """``aten.native_batch_norm`` in training mode, or :func:`weighted_batch_norm` with counts."""
    if counts is None:
        return _aten.native_batch_norm(x, weight, bias, *stats)
    running_mean, running_var, _, momentum, eps = stats
    return weighted_batch_norm(x, weight, bias, running_mean, running_var, momentum, eps, counts, total)


class _GaussianMLP(torch.autograd.Function):
    """silu(bn2(W2 silu(bn1(W1 rbf(d) + b1)) + b2)), saving only d and the batch statistics."""

    @staticmethod
    def forward(ctx, d, w1, b1, g1, beta1, w2, b2, g2, beta2, centers, gamma, bn1, bn2, keep,  # type: ignore[override]
                counts, total):
        rbf = gaussian_basis(d, centers, gamma)
        x1 = torch.addmm(b1, rbf, w1.t())
        y1, mean1, invstd1 = _batch_norm_train(x1, g1, beta1, bn1, counts, total)
        F.silu(y1, inplace=True)
        x2 = torch.addmm(b2, y1, w2.t())
        out, mean2, invstd2 = _batch_norm_train(x2, g2, beta2, bn2, counts, total)
        F.silu(out, inplace=True)
        kept = (rbf, x1, y1, x2) if keep else ()
        ctx.save_for_backward(d, w1, b1, g1, beta1, w2, b2, g2, beta2, centers,
                              mean1, invstd1, mean2, invstd2, counts, *kept)
        ctx.gamma, ctx.total = gamma, total
        return out

    @staticmethod
    @once_differentiable
    def backward(ctx, grad: Tensor):  # type: ignore[override]
        d, w1, b1, g1, beta1, w2, b2, g2, beta2, centers, mean1, invstd1, mean2, invstd2, counts, *kept = \
            ctx.saved_tensors
        weighting = dict(counts=counts, total=ctx.total)
        need = ctx.needs_input_grad
        gamma = ctx.gamma
        if kept:                                                          # small widths: saved
            rbf, x1, y1, x2 = kept
            del kept
        else:                                                             # recomputed, [M, K] ...
            rbf = gaussian_basis(d, centers, gamma)
            x1 = torch.addmm(b1, rbf, w1.t())
            y1 = F.silu(torch.addcmul(beta1 - mean1 * invstd1 * g1, x1, invstd1 * g1))
            x2 = torch.addmm(b2, y1, w2.t())
        gx2, gg2, gbeta2 = _bn_silu_backward(grad, x2, g2, beta2, mean2, invstd2, True, **weighting)
        del x2
        gw2 = gx2.t().mm(y1) if need[5] else None
        gb2 = gx2.sum(0) if need[6] else None
        gy1 = gx2.mm(w2)
        del gx2, y1
        gx1, gg1, gbeta1 = _bn_silu_backward(gy1, x1, g1, beta1, mean1, invstd1, True, **weighting)
        del gy1, x1
        gw1 = gx1.t().mm(rbf) if need[1] else None
        gb1 = gx1.sum(0) if need[2] else None
        gd = None
        if need[0]:   # d rbf_k / d d = -2 gamma (d - mu_k) rbf_k
            gd = (gx1.mm(w1).mul_(rbf).mul_(d.unsqueeze(-1) - centers)).sum(1).mul_(-2.0 * gamma)
        return (gd, gw1, gb1, gg1 if need[3] else None, gbeta1 if need[4] else None, gw2, gb2,
                gg2 if need[7] else None, gbeta2 if need[8] else None, None, None, None, None, None,
                None, None)


def gaussian_mlp(d: Tensor, centers: Tensor, gamma: float, mlp1, mlp2, update_stats: bool = True,
                 counts: Tensor | None = None) -> Tensor:
    """``mlp2(mlp1(exp(-gamma (d - centers)^2)))`` for two training-mode ``MLPLayer`` s (Linear ->
    BatchNorm -> SiLU), as one autograd node that keeps only ``d`` [M] for the backward pass.

    ``d`` [M] bond lengths (Å) or bond-angle cosines; returns [M, H]. The RBF features and
    both layers' activations are recomputed in backward (two small matmuls: [M, K] x [K, H1] and
    [M, H1] x [H1, H]). No autocast support: callers use the module path under autocast.

    ``counts`` [M] (optional): ``d[u]`` stands for ``counts[u]`` rows of the batch (distinct
    values with their multiplicities, e.g. the distinct bond angles): the batch-norm statistics
    are those of the expanded batch, and the gradient arriving at row ``u`` must be the sum over
    its rows. The result is row ``u`` of each of those rows.
    """
    stats = []
    for mlp in (mlp1, mlp2):
        running_mean, running_var, momentum = _stats_args(mlp.bn, update_stats)
        stats.append((running_mean, running_var, True, momentum, mlp.bn.eps))
    l1, l2 = mlp1.linear, mlp2.linear
    # output width; distinct values are few: keep their activations
    keep = l2.weight.shape[0] <= KEEP_EMBEDDING_WIDTH or counts is not None
    total = None if counts is None else float(counts.sum())
    return _GaussianMLP.apply(d, l1.weight, l1.bias, mlp1.bn.weight, mlp1.bn.bias, l2.weight, l2.bias,
                              mlp2.bn.weight, mlp2.bn.bias, centers.to(d.dtype), float(gamma),
                              tuple(stats[0]), tuple(stats[1]), keep, counts, total)
