"""The step-by-step forward process in one call: ``forward_trajectory``, whose backends
(trajectory/triton.py, cpu.py, reference.py) take the same arguments."""
from __future__ import annotations

from collections.abc import Iterable

import torch

from .. import checks, cpu_noise, dispatch, seeding, sharding
from ..hints import Shape
from ..schedules import NoiseSchedule, Schedule
from ..seeding import Seed

__all__ = ["forward_trajectory"]


def _snapshot_step(step: object) -> int:
    try:
        return checks.check_int(step, "a snapshot step")
    except TypeError:
        raise TypeError(f"snapshot steps must be ints, got {step!r} ({type(step).__name__})") from None


@cpu_noise.fork_safe
def forward_trajectory(x0: torch.Tensor, schedule: Schedule, t_end: int, *, seed: Seed = None,
                       generator: torch.Generator | None = None, snapshots: Iterable[int] | None = None,
                       backend: str = "auto", stream: int | None = None, global_shape: Shape | None = None,
                       global_offset: Shape | None = None
                       ) -> torch.Tensor | tuple[torch.Tensor, dict[int, torch.Tensor]]:
    """x_{t_end} by applying the forward steps 0 … t_end one after another, in one fused kernel.

    The sample stays in registers across the steps and step s draws its own
    noise (the stream's step word is s), so the result is exactly what
    :func:`forward_step` applied t_end + 1 times with those noises gives; in
    distribution it equals ``q_sample(x0, t_end, schedule)``.

    Args:
        snapshots: optional steps at which to also keep the sample; then the
            result is ``(x_t_end, {step: x_step})``.
    Other arguments as in :func:`q_sample`.
    """
    x0 = checks.check_x0(x0)
    block = sharding.block_of(x0.shape, global_shape, global_offset)
    if not isinstance(schedule, NoiseSchedule):
        schedule = NoiseSchedule.from_alpha_bars(checks.alpha_bars_of(schedule))
    t_end = checks.check_int(t_end, "t_end")
    if not 0 <= t_end < schedule.T:
        raise ValueError(f"t_end = {t_end} is outside [0, T) for a schedule of T={schedule.T} steps")
    steps = sorted(set(_snapshot_step(s) for s in snapshots)) if snapshots is not None else []
    for s in steps:
        if not 0 <= s <= t_end:
            raise ValueError(f"snapshot step {s} is outside [0, t_end={t_end}]")
    stream = seeding.check_stream(stream, sharded=block is not None)
    block = sharding.partial(block)
    implementation = dispatch.implementation("trajectory", backend, x0)
    call_seed = seeding.call_seed(seed, generator, x0.device, implementation.SEED_ON_DEVICE)
    x_end, kept = implementation.trajectory(x0, schedule, t_end, seed=call_seed, stream=stream, steps=steps,
                                            block=block)
    return (x_end, kept) if snapshots is not None else x_end
