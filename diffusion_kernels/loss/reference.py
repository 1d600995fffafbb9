"""The diffusion loss in plain PyTorch over the materialised ε: what the kernels are tested against, and
what transforms and float64 take."""
from __future__ import annotations

from typing import cast

import torch

from .. import objectives, reference
from ..noising import reference as noising_reference
from ..noising.handle import NoiseHandle
from .function import reduce


def formula(prediction: torch.Tensor, handle: NoiseHandle, target: objectives.Objective, x0: torch.Tensor | None,
            weights: torch.Tensor | None, reduction: str, draw) -> torch.Tensor:
    """The loss with ε drawn by ``draw`` (a drawer of the stream's normals, None for the reference's)."""
    rows = max(handle.rows_shape.numel(), 1)
    compute = torch.promote_types(prediction.dtype, torch.float32)
    residual = prediction.to(compute).reshape(rows, -1)
    if target.has_eps:
        eps = reference.drawn_noise(handle.seed, handle.shape, handle.rows_shape, stream=handle.stream,
                                    offset_strength=handle.offset_strength, device=handle.device, draw=draw)
        eps = eps.to(prediction.device, compute).reshape(rows, -1)
        residual = residual - (eps if target.eps_scale is None else target.eps_scale.to(compute)[:, None] * eps)
    if target.x0_scale is not None:  # diffusion_loss has checked that x0 was given
        x0_rows = cast(torch.Tensor, x0).to(compute).reshape(rows, -1)
        residual = residual - target.x0_scale.to(compute)[:, None] * x0_rows
    sums = (residual * residual).sum(1)
    # The loss's dtype is the computation's (float32, float64 for a float64 prediction) on every backend,
    # whatever the weighting tensor's dtype.
    weights = weights if weights is None else weights.to(compute)
    return reduce(sums, prediction.numel() // rows, weights, reduction, handle.rows_shape)


def loss(prediction: torch.Tensor, handle: NoiseHandle, target: objectives.Objective, x0: torch.Tensor | None,
         weights: torch.Tensor | None, reduction: str) -> torch.Tensor:
    """The backends' common signature (loss/triton.py, cpu.py)."""
    return formula(prediction, handle, target, x0, weights, reduction,
                   noising_reference.drawer(handle.block, handle.device))
