"""The forward process on the Triton kernel (kernels/trajectory.py): the sample stays in registers
across the steps."""
from __future__ import annotations

import torch

from .. import sharding
from ..schedules import NoiseSchedule
from . import launcher

SEED_ON_DEVICE = True


def trajectory(x0: torch.Tensor, schedule: NoiseSchedule, t_end: int, *, seed, stream: int, steps: list[int],
               block: sharding.Block | None) -> tuple[torch.Tensor, dict[int, torch.Tensor]]:
    """(x_t_end, {step: x_step}): the backends' common signature (trajectory/cpu.py, reference.py)."""
    sqrt_alpha, sqrt_beta = schedule.step_tables(x0.device)
    runs = sharding.units_of(block, 0) if block is not None else None
    x_end, stacked = launcher.forward_trajectory(x0, sqrt_alpha, sqrt_beta, t_end, seed=seed, stream=stream,
                                                 snapshot_steps=steps, runs=runs)
    return x_end, {s: stacked[k] for k, s in enumerate(steps)}
