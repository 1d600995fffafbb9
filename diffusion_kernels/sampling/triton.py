"""The sampling draws on the Triton kernel (kernels/sampling.py): words and normals in one pass."""
from __future__ import annotations

import torch

from . import launcher
from .reference import MASK32

SEED_ON_DEVICE = True


def draws(shape: torch.Size, seed, stream: int, device: torch.device,
          scheme: str) -> tuple[torch.Tensor | None, torch.Tensor | None]:
    """(words, normals) as in sampling/reference.py, whose signature this shares (both are drawn)."""
    words, normals = launcher.draws(shape.numel(), seed, stream, device)
    return (words.to(torch.int64) & MASK32).reshape(shape), normals.reshape(shape)
