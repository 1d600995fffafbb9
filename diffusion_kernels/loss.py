"""noise_mse: the ε-prediction loss with ε regenerated from its seed, never stored."""
from __future__ import annotations

import torch

from . import backend as backends
from . import checks, cpu_noise, cpu_path, launch, reference
from .runner import NoiseHandle


class NoiseMSE(torch.autograd.Function):
    """Σ or mean of (prediction − ε)², ε regenerated in the kernel; the backward regenerates it again."""

    @staticmethod
    def forward(ctx, prediction, seed, rows, stream, offset_strength, mean):
        total = launch.noise_mse_forward(prediction, rows, seed, stream, offset_strength)
        scale = 1.0 / max(prediction.numel(), 1) if mean else 1.0
        ctx.save_for_backward(prediction, seed if isinstance(seed, torch.Tensor) else None)
        ctx.seed = None if isinstance(seed, torch.Tensor) else seed
        ctx.rows, ctx.stream, ctx.offset_strength, ctx.scale = rows, stream, offset_strength, scale
        return total * scale

    @staticmethod
    def backward(ctx, upstream):
        prediction, seed_tensor = ctx.saved_tensors
        seed = seed_tensor if seed_tensor is not None else ctx.seed
        grad = launch.noise_mse_backward(prediction, upstream, ctx.scale, ctx.rows, seed, ctx.stream,
                                         ctx.offset_strength)
        return grad, None, None, None, None, None


def noise_mse(prediction: torch.Tensor, noised: NoiseHandle, *, reduction: str = "mean",
              backend: str = "auto") -> torch.Tensor:
    """MSE between ``prediction`` and the ε behind ``noised``, without ever storing ε.

    ``noised`` is the :class:`NoiseHandle` that ``q_sample(..., return_noise="seed")``
    returned. Equals ``F.mse_loss(prediction, ε, reduction=reduction)`` ("mean"
    or "sum"); forward and backward are each one fused pass over ``prediction``.
    The loss is float32.
    """
    checks.check_x0(prediction, "prediction")
    if not isinstance(noised, NoiseHandle):
        raise TypeError("noised must be the NoiseHandle from q_sample(..., return_noise='seed'), "
                        f"got {type(noised).__name__}")
    if prediction.shape != noised.shape:
        raise ValueError(f"prediction has shape {tuple(prediction.shape)} but the noise had shape "
                         f"{tuple(noised.shape)}")
    if reduction not in ("mean", "sum"):
        raise ValueError(f"reduction must be 'mean' or 'sum', got {reduction!r}")
    chosen = backends.select(backend, prediction)
    if chosen == "cpu":
        fused = cpu_path.noise_mse(prediction, noised, reduction == "mean")
        if fused is not None:
            return fused
    if chosen in ("reference", "cpu"):
        if chosen == "cpu" and not isinstance(noised.seed, torch.Tensor):
            eps = reference.drawn_noise(noised.seed, noised.shape, noised.rows_shape, stream=noised.stream,
                                        offset_strength=noised.offset_strength, draw=cpu_noise.philox_normal)
        else:
            eps = noised.materialize(torch.float32).to(prediction.device)
        diff = prediction.to(torch.promote_types(prediction.dtype, torch.float32)) - eps
        loss = (diff * diff).sum()
        return (loss / max(prediction.numel(), 1) if reduction == "mean" else loss).float()
    rows = max(noised.rows_shape.numel(), 1)
    return NoiseMSE.apply(prediction, noised.seed, rows, noised.stream, noised.offset_strength, reduction == "mean")
