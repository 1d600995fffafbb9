"""ForwardDiffusion: the teaching notebook's forward-process object, on the fused path."""
from __future__ import annotations

from collections.abc import Iterable
from typing import cast

import torch

from .hints import Timesteps

from .noising.entry import forward_step, q_sample
from .trajectory.entry import forward_trajectory
from .schedules import NoiseSchedule


class ForwardDiffusion:
    """The forward process q(x_t | x_0) of one noise schedule.

    ``q_sample`` jumps straight to x_t with the closed form; ``add_noise``
    does the same and also returns the ε it used (the regression target of an
    ε-prediction model). ``step`` and ``trajectory`` run the process one step
    at a time.
    """

    def __init__(self, schedule: NoiseSchedule | None = None, *, backend: str = "auto"):
        self.schedule = schedule if schedule is not None else NoiseSchedule.linear()
        if not isinstance(self.schedule, NoiseSchedule):
            raise TypeError(f"schedule must be a NoiseSchedule, got {type(self.schedule).__name__}")
        self.backend = backend

    @property
    def T(self) -> int:
        return self.schedule.T

    @property
    def betas(self) -> torch.Tensor:
        return self.schedule.betas

    @property
    def alphas(self) -> torch.Tensor:
        return self.schedule.alphas

    @property
    def alpha_bars(self) -> torch.Tensor:
        return self.schedule.alpha_bars

    def q_sample(self, x_start: torch.Tensor, t: Timesteps, noise: torch.Tensor | None = None, *,
                 seed: int | None = None,
                 generator: torch.Generator | None = None) -> torch.Tensor:
        """x_t ~ q(x_t | x_0) by the closed form."""
        return cast(torch.Tensor, q_sample(x_start, t, self.schedule, noise, seed=seed, generator=generator,
                                           backend=self.backend))

    def add_noise(self, x0: torch.Tensor, t: Timesteps, noise: torch.Tensor | None = None, *, seed: int | None = None,
                  generator: torch.Generator | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """(x_t, ε): the noised sample and the noise that made it."""
        return cast(tuple[torch.Tensor, torch.Tensor], q_sample(x0, t, self.schedule, noise, seed=seed,
                                                                generator=generator, return_noise=True,
                                                                backend=self.backend))

    def step(self, x_prev: torch.Tensor, t: Timesteps, noise: torch.Tensor | None = None, *, seed: int | None = None,
             generator: torch.Generator | None = None) -> torch.Tensor:
        """One step x_t ~ q(x_t | x_{t−1}) (steps 0-indexed like the tables)."""
        return cast(torch.Tensor, forward_step(x_prev, t, self.schedule, noise, seed=seed, generator=generator,
                                               backend=self.backend))

    def trajectory(self, x0: torch.Tensor, t_end: int, *, snapshots: Iterable[int] | None = None,
                   seed: int | None = None, generator: torch.Generator | None = None
                   ) -> torch.Tensor | tuple[torch.Tensor, dict[int, torch.Tensor]]:
        """The steps 0 … t_end in one fused kernel; ``(x_t_end, {step: x_step})`` with ``snapshots``."""
        return forward_trajectory(x0, self.schedule, t_end, snapshots=snapshots, seed=seed, generator=generator,
                                  backend=self.backend)

    def __repr__(self) -> str:
        return f"ForwardDiffusion({self.schedule!r})"
