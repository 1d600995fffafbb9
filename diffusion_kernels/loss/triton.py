"""The diffusion loss on the Triton kernels (kernels/loss.py, through loss/launcher.py)."""
from __future__ import annotations

import torch

from .. import objectives
from ..noising.handle import NoiseHandle
from . import function


def loss(prediction: torch.Tensor, handle: NoiseHandle, target: objectives.Objective, x0: torch.Tensor | None,
         weights: torch.Tensor | None, reduction: str) -> torch.Tensor:
    """The backends' common signature (loss/cpu.py, reference.py)."""
    return function.apply(prediction, handle, target, x0, weights, reduction)
