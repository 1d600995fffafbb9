"""The argument and result types of the public calls, for editors and type checkers (the package ships
``py.typed``). Each alias says what the calls accept; the docstrings say what the values mean."""
from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Literal, TypeAlias, Union

import torch

if TYPE_CHECKING:
    from .runner import NoiseHandle
    from .schedules import NoiseSchedule
    from .seeding import DeviceSeed

# An int, or an integer tensor of shape () or a leading prefix of x0's shape (one entry per row).
Timesteps: TypeAlias = "int | torch.Tensor"
# A NoiseSchedule or a 1-D ᾱ tensor (an alphas_cumprod buffer, a learned schedule).
Schedule: TypeAlias = "NoiseSchedule | torch.Tensor"
# A float, or a floating tensor of shape () or a leading prefix of x0's shape.
Sigma: TypeAlias = "float | torch.Tensor"
# An int in [0, 2**64), a DeviceSeed, or None (drawn from the generator).
Seed: TypeAlias = "int | DeviceSeed | None"
ReturnNoise: TypeAlias = Union[bool, Literal["seed"]]
Device: TypeAlias = Union[str, torch.device, int]
# A sampler's shape: one size, or a sequence of sizes (a torch.Size, a list, a 1-D integer tensor).
Shape: TypeAlias = Union[int, Sequence[int], torch.Tensor]
# x_t, or x_t with ε (a tensor or its NoiseHandle) and v, in that order, as asked.
Noised: TypeAlias = "torch.Tensor | tuple[torch.Tensor | NoiseHandle, ...]"
