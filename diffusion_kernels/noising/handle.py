"""A drawn ε kept as its seed (``return_noise="seed"``), and what a noising call returns."""
from __future__ import annotations

import dataclasses
from typing import TypeAlias

import torch

from .. import reference, sharding
from ..forms import Form
from .reference import drawer


@dataclasses.dataclass(frozen=True)
class NoiseHandle:
    """The ε of a call kept as its seed instead of a tensor (``return_noise="seed"``).

    ``noise_mse`` regenerates ε from it inside its kernel; ``materialize()``
    gives the tensor when one is wanted after all.
    """

    seed: int | torch.Tensor  # int, or a 1-element int64 device tensor
    stream: int
    shape: torch.Size
    rows_shape: torch.Size
    offset_strength: float
    dtype: torch.dtype
    device: torch.device
    # The noising form: its per-row coefficients and objective, for diffusion_loss's targets and weightings.
    form: Form | None = dataclasses.field(default=None, compare=False, repr=False)
    # Where the noised tensor sits in a global one (global_shape=, global_offset=), or None.
    block: sharding.Block | None = None

    @classmethod
    def made(cls, seed: int | torch.Tensor, stream: int, shape: torch.Size, rows_shape: torch.Size,
             dtype: torch.dtype, device: torch.device, form: Form) -> "NoiseHandle":
        """The handle of a plain call (no offset noise, no block), every field already checked: its dict
        filled at once (a frozen dataclass's ``__init__`` sets each field through ``object.__setattr__``,
        which costs a replayed call more than the rest of its handle)."""
        handle = object.__new__(cls)
        handle.__dict__.update(seed=seed, stream=stream, shape=shape, rows_shape=rows_shape, offset_strength=0.0,
                               dtype=dtype, device=device, form=form, block=None)
        return handle

    def materialize(self, dtype: torch.dtype | None = None) -> torch.Tensor:
        """ε as a tensor, in ``dtype`` (default: the noised tensor's dtype)."""
        return reference.drawn_noise(self.seed, self.shape, self.rows_shape, stream=self.stream,
                                     offset_strength=self.offset_strength, device=self.device,
                                     draw=drawer(self.block, self.device)).to(dtype or self.dtype)


# What a noising call returns: x_t, or x_t with ε (a tensor or its NoiseHandle) and v, in that order, as asked.
Noised: TypeAlias = "torch.Tensor | tuple[torch.Tensor | NoiseHandle, ...]"
