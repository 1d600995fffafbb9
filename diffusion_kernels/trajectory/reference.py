"""The forward process step by step in plain PyTorch (``reference.forward_trajectory``)."""
from __future__ import annotations

import torch

from .. import reference, sharding
from ..noising import reference as noising_reference
from ..schedules import NoiseSchedule

SEED_ON_DEVICE = False


def trajectory(x0: torch.Tensor, schedule: NoiseSchedule, t_end: int, *, seed, stream: int, steps: list[int],
               block: sharding.Block | None, draw=None) -> tuple[torch.Tensor, dict[int, torch.Tensor]]:
    """(x_t_end, {step: x_step}): the backends' common signature (trajectory/triton.py, cpu.py); ``draw``
    the normals' drawer (default: the reference's)."""
    draw = draw if draw is not None else noising_reference.drawer(block, x0.device, seed)
    return reference.forward_trajectory(x0, schedule.alphas, t_end, seed=seed, stream=stream, snapshots=steps,
                                        draw=draw)
