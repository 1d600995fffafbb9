"""The diffusion loss on the compiled CPU loop (cpu_noise's loss passes), through the same autograd
Function as the kernels; the reference's formula over the loop's ε where the loop does not apply."""
from __future__ import annotations

import torch

from .. import cpu_noise, objectives
from ..noising import cpu as noising_cpu
from ..noising.handle import NoiseHandle
from . import function
from .reference import formula

# The loss passes on the compiled loop, with loss/launcher.py's forward and backward signatures.
PASSES = (cpu_noise.loss_forward, cpu_noise.loss_backward)
_LOOP_DTYPES = (torch.float32, torch.bfloat16, torch.float16)


def loss(prediction: torch.Tensor, handle: NoiseHandle, target: objectives.Objective, x0: torch.Tensor | None,
         weights: torch.Tensor | None, reduction: str) -> torch.Tensor:
    """The backends' common signature (loss/triton.py, reference.py)."""
    # The loop draws ε at its memory positions (a shard's global ones take the formula), from an int seed;
    # float64 keeps the reference's precision.
    if (handle.block is not None or isinstance(handle.seed, torch.Tensor) or prediction.dtype not in _LOOP_DTYPES
            or x0 is not None and x0.dtype not in _LOOP_DTYPES):
        return formula(prediction, handle, target, x0, weights, reduction,
                       noising_cpu.drawer(handle.block, handle.device, handle.seed))
    # Contiguous float32, as the loop reads them (a conversion autograd follows back).
    if prediction.dtype is not torch.float32 or not prediction.is_contiguous():
        prediction = prediction.to(torch.float32).contiguous()
    if x0 is not None:
        x0 = x0.to(torch.float32).contiguous()
    return function.apply(prediction, handle, target, x0, weights, reduction, PASSES)
