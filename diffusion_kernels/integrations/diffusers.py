"""diffusers: a scheduler's ``add_noise`` and ``get_velocity`` on the fused kernel.

The schedule is read from ``scheduler.alphas_cumprod`` and its square roots are
taken in float64, so float32 results equal diffusers' own to float32 rounding,
and bf16/fp16 results equal diffusers' float32 result cast to that dtype (the
stock path casts ᾱ to bf16 first, which rounds ᾱ_0 to 1 and drops the noise of
the first timesteps).

    from diffusion_kernels.integrations.diffusers import patch
    scheduler = patch(DDPMScheduler.from_pretrained(...))    # or FusedDDPMScheduler(...)
"""
from __future__ import annotations

import types

import torch

from ..api import get_velocity, q_sample
from ..schedules import NoiseSchedule


def _schedule_of(scheduler) -> NoiseSchedule:
    alphas_cumprod = getattr(scheduler, "alphas_cumprod", None)
    if not isinstance(alphas_cumprod, torch.Tensor):
        raise TypeError(f"{type(scheduler).__name__} has no alphas_cumprod table to noise with")
    cached = getattr(scheduler, "_fused_schedule", None)
    if cached is not None and cached[0] is alphas_cumprod:
        return cached[1]
    schedule = NoiseSchedule.from_alpha_bars(alphas_cumprod.detach().cpu(), name=type(scheduler).__name__)
    scheduler._fused_schedule = (alphas_cumprod, schedule)
    return schedule


def fused_add_noise(scheduler, original_samples: torch.Tensor, noise: torch.Tensor,
                    timesteps: torch.Tensor) -> torch.Tensor:
    """``scheduler.add_noise`` in one fused pass: sqrt(ᾱ[t])·x0 + sqrt(1 − ᾱ[t])·ε."""
    return q_sample(original_samples, timesteps, _schedule_of(scheduler), noise)


def fused_get_velocity(scheduler, sample: torch.Tensor, noise: torch.Tensor, timesteps: torch.Tensor) -> torch.Tensor:
    """``scheduler.get_velocity`` in one fused pass: sqrt(ᾱ[t])·ε − sqrt(1 − ᾱ[t])·x0."""
    return get_velocity(sample, noise, timesteps, _schedule_of(scheduler))


def patch(scheduler):
    """Route this scheduler instance's ``add_noise`` and ``get_velocity`` to the fused kernel; returns it."""
    _schedule_of(scheduler)
    scheduler.add_noise = types.MethodType(fused_add_noise, scheduler)
    if hasattr(scheduler, "get_velocity"):
        scheduler.get_velocity = types.MethodType(fused_get_velocity, scheduler)
    return scheduler


class _FusedNoising:
    add_noise = fused_add_noise
    get_velocity = fused_get_velocity


def _fused_class(base_name: str):
    import diffusers

    base = getattr(diffusers, base_name)
    return type(f"Fused{base_name}", (_FusedNoising, base), {
        "__doc__": f"diffusers' {base_name} with add_noise and get_velocity on the fused kernel.",
        "__module__": __name__,
    })


def __getattr__(name: str):
    # FusedDDPMScheduler, FusedDDIMScheduler, ...: built on first use so that importing
    # this module does not import diffusers.
    if name.startswith("Fused") and name.endswith("Scheduler"):
        cls = _fused_class(name[len("Fused"):])
        globals()[name] = cls
        return cls
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
