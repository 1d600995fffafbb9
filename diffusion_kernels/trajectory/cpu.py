"""The forward process step by step with the compiled CPU loop's noise (the reference's steps over it)."""
from __future__ import annotations

import torch

from .. import sharding
from ..noising import cpu as noising_cpu
from ..schedules import NoiseSchedule
from . import reference

SEED_ON_DEVICE = False


def trajectory(x0: torch.Tensor, schedule: NoiseSchedule, t_end: int, *, seed, stream: int, steps: list[int],
               block: sharding.Block | None) -> tuple[torch.Tensor, dict[int, torch.Tensor]]:
    """(x_t_end, {step: x_step}): the backends' common signature (trajectory/triton.py, reference.py)."""
    return reference.trajectory(x0, schedule, t_end, seed=seed, stream=stream, steps=steps, block=block,
                                draw=noising_cpu.drawer(block, x0.device, seed))
