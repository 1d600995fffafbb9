"""The sampling draws in plain PyTorch: the stream's words (``reference.philox4x32``) or normals
(``reference.philox_normal``) at the sampling step word."""
from __future__ import annotations

import torch

from .. import reference
from ..reference import SAMPLING_STEP

SEED_ON_DEVICE = False
MASK32 = 0xFFFFFFFF


def draws(shape: torch.Size, seed, stream: int, device: torch.device,
          scheme: str) -> tuple[torch.Tensor | None, torch.Tensor | None]:
    """(words as int64 in [0, 2**32), normals float32), ``shape`` each, where ``scheme`` reads them (the
    other None): the backends' common signature (sampling/triton.py, cpu.py)."""
    if scheme == "logit_normal":
        return None, reference.philox_normal(seed, shape, stream=stream, step=SAMPLING_STEP, device=device)
    n = shape.numel()
    q = torch.arange((n + 3) // 4, dtype=torch.int64, device=device)
    key = seed.reshape(()) if isinstance(seed, torch.Tensor) else seed
    lanes = torch.stack(reference.philox4x32(q & MASK32, q >> 32, torch.full_like(q, stream),
                                             torch.full_like(q, SAMPLING_STEP), key & MASK32, key >> 32), dim=1)
    return lanes.reshape(-1)[:n].reshape(shape).to(device), None
