"""Memory-lean autograd kernels for the edge-gated graph convolution.

Both functions compute exactly what the plain autograd formulation computes (see
``EdgeGatedGraphConv`` with ``implementation="reference"``) but keep far fewer edge-sized
([E, H]) tensors alive between forward and backward:

* :func:`gated_aggregate` saves only the gate pre-activation ``m`` (which the batch norm needs
  anyway) and recomputes ``sigmoid(m)`` and the gathered messages in the backward pass;
* :func:`batch_norm_silu` (training-mode batch norm -> SiLU -> optional residual add) saves only
  its input and the per-channel statistics and recomputes the normalised values in backward.

The recomputation is kept to few passes over [E, H] memory (the step is bound by memory traffic
on bond-pair-sized tensors): ``vh[src] - out[dst]`` is one ``embedding_bag`` gather-and-sum
instead of two gathers and a subtraction, and the sigmoid / SiLU derivatives use ATen's
single-pass ``sigmoid_backward`` / ``silu_backward`` kernels.

On the line graph E is the number of bond pairs (~20,000 per migration band), so every [E, H]
tensor that is not kept is ~20 MB per band at H = 256.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor
from torch.autograd.function import once_differentiable

_aten = torch.ops.aten


class _GatedAggregate(torch.autograd.Function):
    """out_v = sum_u sigmoid(m_uv) * vh_u / (sum_u sigmoid(m_uv) + eps), per destination v."""

    @staticmethod
    def forward(ctx, m: Tensor, vh: Tensor, src: Tensor, dst: Tensor, eps: float) -> Tensor:  # type: ignore[override]
        n, width = vh.shape[0], m.shape[1]
        sig = torch.sigmoid(m)
        msg = vh.index_select(0, src).mul_(sig)
        num = m.new_zeros(n, width).index_add_(0, dst, msg)
        del msg
        den = m.new_zeros(n, width).index_add_(0, dst, sig)
        del sig
        den.add_(eps)
        out = num.div_(den)
        ctx.save_for_backward(m, vh, src, dst, den, out)
        return out

    @staticmethod
    @once_differentiable
    def backward(ctx, grad: Tensor):  # type: ignore[override]
        m, vh, src, dst, den, out = ctx.saved_tensors
        need_m, need_vh = ctx.needs_input_grad[0], ctx.needs_input_grad[1]
        sig = torch.sigmoid(m)                      # recomputed, [E, H]
        g_dst = (grad / den).index_select(0, dst)   # d loss / d num_v at every edge, [E, H]
        grad_m = None
        if need_m:
            # d loss / d sigma_uv = g_v * (vh_u - out_v)   (numerator and denominator terms);
            # the difference of the two gathered rows is one embedding_bag over [vh; -out]
            n = vh.shape[0]
            table = torch.cat([vh, out.neg()])
            diff = F.embedding_bag(torch.stack([src, dst + n], dim=1), table, mode="sum")
            del table
            diff.mul_(g_dst)
            # * sigma (1 - sigma): one pass, in place (no fourth [E, H] buffer)
            grad_m = _aten.sigmoid_backward.grad_input(diff, sig, grad_input=diff)
            del diff
        grad_vh = None
        if need_vh:
            grad_vh = vh.new_zeros(vh.shape).index_add_(0, src, g_dst.mul_(sig))
        return grad_m, grad_vh, None, None, None


def gated_aggregate(m: Tensor, vh: Tensor, src: Tensor, dst: Tensor, eps: float = 1e-6) -> Tensor:
    """Sigmoid-gated, normalised sum of source messages ``vh[src]`` at each destination node.

    ``m`` [E, H] gate pre-activations, ``vh`` [N, H] messages per source node, ``src``/``dst`` [E]
    long. Returns [N, H]; nodes without incoming edges get 0.
    """
    return _GatedAggregate.apply(m, vh, src, dst, eps)


class _EdgeGate(torch.autograd.Function):
    """m = A h[src] + B h[dst] + e @ C^T + c for the packed node products p = [A h | B h | ...]."""

    @staticmethod
    def forward(ctx, p: Tensor, e: Tensor, weight: Tensor, bias: Tensor | None, src: Tensor,
                dst: Tensor, width: int) -> Tensor:  # type: ignore[override]
        n, k = p.shape[0], p.shape[1] // width
        rows = p.view(n * k, width)                 # row k*i = A h_i, row k*i + 1 = B h_i
        idx = torch.stack([src * k, dst * k + 1], dim=1)
        m = F.embedding_bag(idx, rows, mode="sum")  # A h[src] + B h[dst], one pass
        m.addmm_(e, weight.t())
        if bias is not None:
            m.add_(bias)
        ctx.save_for_backward(e, weight, idx)
        ctx.shape = (n, k, width)
        return m

    @staticmethod
    @once_differentiable
    def backward(ctx, grad: Tensor):  # type: ignore[override]
        e, weight, idx = ctx.saved_tensors
        n, k, width = ctx.shape
        grad_p = grad_e = grad_w = grad_b = None
        if ctx.needs_input_grad[0]:
            rows = grad.new_zeros(n * k, width)
            rows.index_add_(0, idx[:, 0], grad).index_add_(0, idx[:, 1], grad)
            grad_p = rows.view(n, k * width)
        if ctx.needs_input_grad[1]:
            grad_e = grad.mm(weight)
        if ctx.needs_input_grad[2]:
            grad_w = grad.t().mm(e)
        if ctx.needs_input_grad[3]:
            grad_b = grad.sum(0)
        return grad_p, grad_e, grad_w, grad_b, None, None, None


def edge_gate(p: Tensor, e: Tensor, linear: torch.nn.Linear, src: Tensor, dst: Tensor) -> Tensor:
    """Gate pre-activations ``m_uv = A h_u + B h_v + C e_uv`` [E, H] of the edge-gated convolution.

    ``p`` [N, k H] (contiguous) holds ``A h`` in columns ``0:H`` and ``B h`` in ``H:2H`` (the rest
    is ignored); ``linear`` is ``C`` (H -> H). The two gathers and their sum are one
    ``embedding_bag`` pass and ``C e`` is accumulated into it, so no other [E, H] tensor is made.
    """
    width = linear.out_features
    if not p.is_contiguous() or p.shape[1] % width:
        raise ValueError(f"edge_gate needs a contiguous [N, k*{width}] p, got {tuple(p.shape)}")
    weight, bias = linear.weight, linear.bias
    if e.dtype != p.dtype or weight.dtype != p.dtype:  # autocast: p comes from a bf16 matmul
        e, weight = e.to(p.dtype), weight.to(p.dtype)
        bias = None if bias is None else bias.to(p.dtype)
    return _EdgeGate.apply(p, e, weight, bias, src, dst, width)


class _BatchNormSiLU(torch.autograd.Function):
    """y = silu(batch_norm_train(x)) (+ residual), saving only x and the batch statistics."""

    @staticmethod
    def forward(ctx, x, residual, weight, bias, running_mean, running_var, momentum, eps):  # type: ignore[override]
        y, mean, invstd = _aten.native_batch_norm(
            x, weight, bias, running_mean, running_var, True, momentum, eps
        )
        torch.nn.functional.silu(y, inplace=True)
        if residual is not None:
            y.add_(residual)
        ctx.save_for_backward(x, weight, bias, mean, invstd)
        ctx.eps = eps
        ctx.has_residual = residual is not None
        return y

    @staticmethod
    @once_differentiable
    def backward(ctx, grad: Tensor):  # type: ignore[override]
        x, weight, bias, mean, invstd = ctx.saved_tensors
        scale = invstd * weight
        shift = bias - mean * scale
        y = torch.addcmul(shift, x, scale).to(x.dtype)  # batch-norm output, recomputed (x's dtype
        #                                                 as in forward, e.g. bf16 under autocast)
        y = _aten.silu_backward(grad, y)            # grad * silu'(y), one pass
        mask = [ctx.needs_input_grad[0], ctx.needs_input_grad[2], ctx.needs_input_grad[3]]
        gx, gw, gb = _aten.native_batch_norm_backward(
            y, x, weight, None, None, mean, invstd, True, ctx.eps, mask
        )
        g_res = grad if ctx.has_residual and ctx.needs_input_grad[1] else None
        return gx, g_res, gw, gb, None, None, None, None


def batch_norm_silu(
    x: Tensor,
    residual: Tensor | None,
    bn: torch.nn.BatchNorm1d,
    update_stats: bool = True,
) -> Tensor:
    """``residual + silu(bn(x))`` with ``bn`` in training mode, as one low-memory autograd node.

    ``update_stats=False`` normalises with the batch statistics without touching the running
    statistics (used when a checkpointed layer is recomputed in the backward pass).
    """
    update = update_stats and bn.track_running_stats
    if update and bn.num_batches_tracked is not None:
        bn.num_batches_tracked.add_(1)
    momentum = bn.momentum
    if momentum is None:  # cumulative moving average, as nn.BatchNorm1d
        momentum = 1.0 / float(bn.num_batches_tracked) if update else 0.0
    return _BatchNormSiLU.apply(
        x, residual, bn.weight, bn.bias,
        bn.running_mean if update else None, bn.running_var if update else None,
        momentum, bn.eps,
    )
