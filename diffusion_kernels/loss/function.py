"""The diffusion loss on the kernels (or the compiled CPU loop) as a torch.autograd.Function: one pass
forward (per-row sums of squares), one pass backward, ε regenerated in both; and the reduction every
path shares."""
from __future__ import annotations

from typing import NamedTuple

import numpy as np
import torch

from .. import sharding
from . import launcher


# Up to this many host row sums, the mean is taken in Python rather than by tensor operations.
_HOST_ROWS = 256


def reduce(sums: torch.Tensor, row_len: int, weights, reduction: str, rows_shape) -> torch.Tensor:
    """The loss from per-row sums of squared residuals: per sample w·(sum / row_len) ("none"),
    their mean over the rows ("mean", the plain MSE when unweighted), or Σ w·sum ("sum")."""
    if (weights is None and reduction == "mean" and sums.dtype is torch.float32 and sums.is_cpu
            and sums.numel() <= _HOST_ROWS and not sums.requires_grad and not torch.compiler.is_compiling()):
        # A few host float32 sums (the CPU loop's): their mean in Python's float64, rounded once to float32,
        # costs a fraction of the tensor operations on a small batch (and rounds less).
        return torch.full((), sum(sums.tolist()) / (max(row_len, 1) * max(sums.numel(), 1)), dtype=torch.float32)
    if reduction == "sum":
        return (sums if weights is None else sums * weights).sum()
    per_row = sums / max(row_len, 1)
    if weights is not None:
        per_row = per_row * weights
    if reduction == "none":
        return per_row.reshape(rows_shape)
    return per_row.sum() / max(sums.numel(), 1)


def _row_factor(upstream: torch.Tensor, rows: int, row_len: int, reduction: str,
                times: float = 1.0) -> torch.Tensor | float:
    """``times`` · d loss / d (w_r·sum_r) per row, float32 (rows,), from the upstream gradient, on the device
    (one operation: the reduction's divisor and ``times`` are folded into one Python number); from one host
    number, that one float32 value as a Python float, which the passes take for every row."""
    divisor = max(rows, 1) * max(row_len, 1) if reduction == "mean" else max(row_len, 1) if reduction == "none" else 1
    if upstream.numel() == 1 and upstream.is_cpu and not torch.compiler.is_compiling():
        # The product in float32, as the tensor's would be.
        return float(np.float32(upstream.item()) * np.float32(times / divisor))
    g = upstream.to(torch.float32).reshape(-1) * (times / divisor)
    return g.expand(rows) if g.numel() == 1 else g


def kernel_passes():
    """The forward and backward passes (per-row sums of squares; scale·residual) on the Triton kernels,
    looked up per call; loss/cpu.py's PASSES are the same on the compiled CPU loop."""
    return launcher.forward, launcher.backward


class Call(NamedTuple):
    """What a loss call passes its Function besides the tensors autograd follows (one argument: the
    Function's apply costs host time per argument)."""
    seed: object  # int, or the 1-element device tensor
    has_eps: bool
    rows: int
    stream: int
    offset_strength: float
    reduction: str
    rows_shape: torch.Size
    passes: tuple  # (forward pass, backward pass): the kernels' or the CPU loop's
    runs: dict  # {} or {"runs": sharding.Units} for a shard of a global tensor


def apply(prediction, handle, spec, x0, weights, reduction: str, passes=None) -> torch.Tensor:
    """DiffusionLoss.apply for a call's NoiseHandle and objective (objectives.Objective), on ``passes``
    (default: the Triton kernels')."""
    seed_tensor = handle.seed if isinstance(handle.seed, torch.Tensor) else None
    rows = max(handle.rows_shape.numel(), 1)
    # A shard of a global tensor (sharding.Units): the kernel passes take its runs as their rows.
    runs = {} if handle.block is None else {"runs": sharding.units_of(handle.block, len(handle.rows_shape))}
    call = Call(handle.seed, spec.has_eps, rows, handle.stream, handle.offset_strength, reduction, handle.rows_shape,
                passes or kernel_passes(), runs)
    return DiffusionLoss.apply(prediction, x0, weights, spec.eps_scale, spec.x0_scale, seed_tensor, call)


class DiffusionLoss(torch.autograd.Function):
    """Gradients to the prediction (the kernel, 2·w·factor·residual), to x0 where the target reads it
    (−cx times that, a second pass) and to a weighting tensor (factor·sum per row)."""

    @staticmethod
    def forward(ctx, prediction, x0, weights, eps_scale, x0_scale, seed_tensor, call: Call):
        target = launcher.Target(call.has_eps, eps_scale, x0 if x0_scale is not None else None, x0_scale)
        rows = call.rows
        sums = call.passes[0](prediction, rows, call.seed, call.stream, call.offset_strength, target, **call.runs)
        row_len = prediction.numel() // rows
        ctx.save_for_backward(prediction, x0, weights, eps_scale, x0_scale, seed_tensor, sums)
        ctx.call, ctx.row_len = call, row_len
        w = None if weights is None else weights.detach().to(torch.float32).reshape(rows)
        return reduce(sums, row_len, w, call.reduction, call.rows_shape)

    @staticmethod
    def backward(ctx, upstream):
        prediction, x0, weights, eps_scale, x0_scale, seed_tensor, sums = ctx.saved_tensors
        call, row_len = ctx.call, ctx.row_len
        rows, backward_pass = call.rows, call.passes[1]
        seed = seed_tensor if seed_tensor is not None else call.seed
        scale = _row_factor(upstream, rows, row_len, call.reduction, 2.0)
        if weights is not None:
            scale = scale * weights.detach().to(torch.float32).reshape(rows)
        target = launcher.Target(call.has_eps, eps_scale, x0 if x0_scale is not None else None, x0_scale)
        grad_pred = grad_x0 = grad_w = None
        needs = ctx.needs_input_grad
        if needs[0]:
            grad_pred = backward_pass(prediction, scale, rows, seed, call.stream, call.offset_strength, target,
                                      **call.runs)
        if needs[1] and x0_scale is not None:
            grad_x0 = backward_pass(prediction, -scale * x0_scale, rows, seed, call.stream, call.offset_strength,
                                    target, **call.runs).to(x0.dtype)
        if needs[2]:
            grad_w = (_row_factor(upstream, rows, row_len, call.reduction) * sums).reshape(weights.shape).to(
                weights.dtype)
        return grad_pred, grad_x0, grad_w, None, None, None, None
