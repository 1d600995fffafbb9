"""The argument and result types of the public calls, for editors and type checkers (the package ships
``py.typed``). Each alias says what the calls accept; the docstrings say what the values mean. The aliases
that name one of the package's own types stand beside it: ``Seed`` in seeding.py, ``Schedule`` in
schedules.py, ``Noised`` in noising/handle.py, so this module imports nothing of the package."""
from __future__ import annotations

from collections.abc import Sequence
from typing import Literal, TypeAlias, Union

import torch

# An int, or an integer tensor of shape () or a leading prefix of x0's shape (one entry per row).
Timesteps: TypeAlias = "int | torch.Tensor"
# A float, or a floating tensor of shape () or a leading prefix of x0's shape.
Sigma: TypeAlias = "float | torch.Tensor"
ReturnNoise: TypeAlias = Union[bool, Literal["seed"]]
Device: TypeAlias = Union[str, torch.device, int]
# A sampler's shape: one size, or a sequence of sizes (a torch.Size, a list, a 1-D integer tensor).
Shape: TypeAlias = Union[int, Sequence[int], torch.Tensor]
