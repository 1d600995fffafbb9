"""Launcher of the per-sample draws (kernels/sampling.py): one program per BLOCK_QUADS quads."""
from __future__ import annotations

import torch

from .. import seeding
from ..seeding import seed_args, seed_parts
from ..launch.registry import device_guard
from ..launch.tiling import launch_options, math_mode


def draws(n: int, seed, stream: int, device) -> tuple[torch.Tensor, torch.Tensor]:
    """(words as int32, normals as float32), n of each, on ``device``."""
    from ..kernels import sampling as module

    words = torch.empty(max(n, 1), dtype=torch.int32, device=device)
    normals = torch.empty(max(n, 1), dtype=torch.float32, device=device)
    seed_tensor, lo, hi = seed_parts(seed)
    s_lo, s_hi, s_ptr, from_ptr = seed_args(seed_tensor, lo, hi, words)
    block = module.BLOCK_QUADS
    grid = (max(1, (n + 4 * block - 1) // (4 * block)),)
    with device_guard(words):
        module.sampling_draws_kernel[grid](words, normals, n, s_lo, s_hi, s_ptr, seeding.as_int32(stream),
                                           SEED_FROM_PTR=from_ptr, BLOCK=block, MATH=math_mode(device),
                                           **launch_options(module, device))
    return words[:n], normals[:n]
