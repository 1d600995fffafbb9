"""The sampling draws on the compiled CPU loop (cpu_noise): the same words and normals as the reference."""
from __future__ import annotations

import torch

from .. import cpu_noise
from . import reference
from ..reference import SAMPLING_STEP

SEED_ON_DEVICE = False


def draws(shape: torch.Size, seed, stream: int, device: torch.device,
          scheme: str) -> tuple[torch.Tensor | None, torch.Tensor | None]:
    """(words, normals) as in sampling/reference.py, whose signature this shares."""
    if isinstance(seed, torch.Tensor):  # a seed the loop cannot read (under torch.compile)
        return reference.draws(shape, seed, stream, device, scheme)
    if scheme == "logit_normal":
        return None, cpu_noise.philox_normal(seed, shape, stream=stream, step=SAMPLING_STEP).to(device)
    n = shape.numel()
    words = cpu_noise.philox_words(seed, 0, (n + 3) // 4, stream=stream, step=SAMPLING_STEP)
    return torch.from_numpy(words.astype("int64")).reshape(-1)[:n].reshape(shape).to(device), None
