"""The diffusion loss on the kernels (or the compiled CPU loop) as a torch.autograd.Function: one pass
forward (per-row sums of squares), one pass backward, ε regenerated in both; and the reduction every
path shares."""
from __future__ import annotations

import torch

from .. import sharding
from . import launcher


def reduce(sums: torch.Tensor, row_len: int, weights, reduction: str, rows_shape) -> torch.Tensor:
    """The loss from per-row sums of squared residuals: per sample w·(sum / row_len) ("none"),
    their mean over the rows ("mean", the plain MSE when unweighted), or Σ w·sum ("sum")."""
    if reduction == "sum":
        return (sums if weights is None else sums * weights).sum()
    per_row = sums / max(row_len, 1)
    if weights is not None:
        per_row = per_row * weights
    if reduction == "none":
        return per_row.reshape(rows_shape)
    return per_row.sum() / max(sums.numel(), 1)


def _row_factor(upstream: torch.Tensor, rows: int, row_len: int, reduction: str, times: float = 1.0) -> torch.Tensor:
    """``times`` · d loss / d (w_r·sum_r) per row, float32 (rows,), from the upstream gradient, on the device
    (one operation: the reduction's divisor and ``times`` are folded into one Python number)."""
    divisor = {"mean": max(rows, 1) * max(row_len, 1), "none": max(row_len, 1)}.get(reduction, 1)
    g = upstream.to(torch.float32).reshape(-1) * (times / divisor)
    return g.expand(rows) if g.numel() == 1 else g


def kernel_passes():
    """The forward and backward passes (per-row sums of squares; scale·residual) on the Triton kernels,
    looked up per call; loss/cpu.py's PASSES are the same on the compiled CPU loop."""
    return launcher.forward, launcher.backward


def apply(prediction, handle, spec, x0, weights, reduction: str, passes=None) -> torch.Tensor:
    """DiffusionLoss.apply for a call's NoiseHandle and objective (objectives.Objective), on ``passes``
    (default: the Triton kernels')."""
    seed_tensor = handle.seed if isinstance(handle.seed, torch.Tensor) else None
    rows = max(handle.rows_shape.numel(), 1)
    runs = None if handle.block is None else sharding.units_of(handle.block, len(handle.rows_shape))
    return DiffusionLoss.apply(prediction, x0, weights, spec.eps_scale, spec.x0_scale, seed_tensor, handle.seed,
                               spec.has_eps, rows, handle.stream, handle.offset_strength, reduction,
                               handle.rows_shape, passes, runs)


class DiffusionLoss(torch.autograd.Function):
    """Gradients to the prediction (the kernel, 2·w·factor·residual), to x0 where the target reads it
    (−cx times that, a second pass) and to a weighting tensor (factor·sum per row)."""

    @staticmethod
    def forward(ctx, prediction, x0, weights, eps_scale, x0_scale, seed_tensor, seed, has_eps, rows, stream,
                offset_strength, reduction, rows_shape, passes=None, runs=None):
        seed = seed_tensor if seed_tensor is not None else seed
        target = launcher.Target(has_eps, eps_scale, x0 if x0_scale is not None else None, x0_scale)
        forward_pass, ctx.backward_pass = passes or kernel_passes()
        # A shard of a global tensor (sharding.Units): the kernel passes take its runs as their rows.
        ctx.runs = {} if runs is None else {"runs": runs}
        sums = forward_pass(prediction, rows, seed, stream, offset_strength, target, **ctx.runs)
        row_len = prediction.numel() // rows
        ctx.save_for_backward(prediction, x0, weights, eps_scale, x0_scale, seed_tensor, sums)
        ctx.args = (seed, has_eps, rows, stream, offset_strength, reduction, row_len)
        w = None if weights is None else weights.detach().to(torch.float32).reshape(rows)
        return reduce(sums, row_len, w, reduction, rows_shape)

    @staticmethod
    def backward(ctx, upstream):
        prediction, x0, weights, eps_scale, x0_scale, seed_tensor, sums = ctx.saved_tensors
        seed, has_eps, rows, stream, offset_strength, reduction, row_len = ctx.args
        seed = seed_tensor if seed_tensor is not None else seed
        scale = _row_factor(upstream, rows, row_len, reduction, 2.0)
        if weights is not None:
            scale = scale * weights.detach().to(torch.float32).reshape(rows)
        target = launcher.Target(has_eps, eps_scale, x0 if x0_scale is not None else None, x0_scale)
        grad_pred = grad_x0 = grad_w = None
        if ctx.needs_input_grad[0]:
            grad_pred = ctx.backward_pass(prediction, scale, rows, seed, stream, offset_strength, target, **ctx.runs)
        if ctx.needs_input_grad[1] and x0_scale is not None:
            grad_x0 = ctx.backward_pass(prediction, -scale * x0_scale, rows, seed, stream, offset_strength,
                                        target, **ctx.runs).to(x0.dtype)
        if ctx.needs_input_grad[2]:
            grad_w = (_row_factor(upstream, rows, row_len, reduction) * sums).reshape(weights.shape).to(weights.dtype)
        return grad_pred, grad_x0, grad_w, None, None, None, None, None, None, None, None, None, None, None, None
