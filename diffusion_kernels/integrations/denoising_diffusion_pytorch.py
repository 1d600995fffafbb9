"""denoising-diffusion-pytorch: ``q_sample`` and ``predict_v`` of its ``GaussianDiffusion``, fused,
with offset noise drawn inside the same kernel.

    from denoising_diffusion_pytorch import GaussianDiffusion
    from diffusion_kernels.integrations.denoising_diffusion_pytorch import FusedNoising

    class FusedGaussianDiffusion(FusedNoising, GaussianDiffusion):
        pass

``immiscible=True`` is followed exactly: their ``noise_assignment`` reorders
the noise before the fused pass. The kernel reads the module's own ``sqrt_alphas_cumprod`` and
``sqrt_one_minus_alphas_cumprod`` buffers (float32, made in float64), so the
numbers are theirs. Its schedules are ``NoiseSchedule.linear_scaled`` (its
1000/T-scaled linear), ``NoiseSchedule.cosine`` and ``NoiseSchedule.sigmoid_alpha_bar``.
"""
from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import cast

import torch

from ..forms import Form, table_form
from ..hints import Timesteps
from ..noising.entry import run as _run
from ..checks import check_noise, check_x0


class FusedNoising:
    """Needs the ``sqrt_alphas_cumprod`` and ``sqrt_one_minus_alphas_cumprod`` buffers of their GaussianDiffusion."""

    # What their GaussianDiffusion holds (declared for type checkers; the host class sets them).
    sqrt_alphas_cumprod: torch.Tensor
    sqrt_one_minus_alphas_cumprod: torch.Tensor
    noise_assignment: Callable[[torch.Tensor, torch.Tensor], torch.Tensor]

    def _fused_form(self, x_start: torch.Tensor, t: Timesteps, noise: torch.Tensor | None = None) -> Form:
        return table_form(x_start, t, self.sqrt_alphas_cumprod, self.sqrt_one_minus_alphas_cumprod, noise=noise)

    def q_sample(self, x_start: torch.Tensor, t: Timesteps, noise: torch.Tensor | None = None) -> torch.Tensor:
        """sqrt(ᾱ[t])·x_start + sqrt(1 − ᾱ[t])·ε in one pass, ε drawn in the kernel when not given.

        With their ``immiscible=True`` the noise (given, or drawn with ``randn_like`` as theirs is)
        is first reordered across the batch by their own ``noise_assignment``, as their q_sample does.
        """
        x_start = check_x0(x_start, "x_start")
        if getattr(self, "immiscible", False):
            noise = torch.randn_like(x_start) if noise is None else noise
            noise = noise[self.noise_assignment(x_start, noise)]
        noise = check_noise(noise, x_start)
        return cast(torch.Tensor, _run(x_start, noise, self._fused_form(x_start, t, noise), seed=None, generator=None,
                                       return_noise=False, return_v=False, backend="auto", stream=None))

    def predict_v(self, x_start: torch.Tensor, t: Timesteps, noise: torch.Tensor) -> torch.Tensor:
        """sqrt(ᾱ[t])·ε − sqrt(1 − ᾱ[t])·x_start in one pass."""
        x_start = check_x0(x_start, "x_start")
        noise = check_noise(noise, x_start)
        form = self._fused_form(x_start, t, noise)
        form = dataclasses.replace(form, tables=form.velocity_tables, reference=form.reference_velocity)
        return cast(torch.Tensor, _run(x_start, noise, form, seed=None, generator=None, return_noise=False,
                                       return_v=False, backend="auto", stream=None))

    def q_sample_offset_noise(self, x_start: torch.Tensor, t: torch.Tensor, offset_noise_strength: float, *,
                              return_v: bool = False) -> tuple[torch.Tensor, ...]:
        """(x_t, noise[, v]) with offset noise: noise = ε + strength · one normal per (batch, channel).

        The same noise their ``p_losses`` builds from ``randn_like`` plus a
        broadcast ``randn(b, c)``, drawn and applied inside the noising kernel;
        ``noise`` (and ``v``) are the regression targets.
        """
        x_start = check_x0(x_start, "x_start")
        if getattr(self, "immiscible", False):
            raise ValueError("q_sample_offset_noise draws its noise inside the kernel, which immiscible=True's "
                             "reordering of the noise cannot follow; build the noise and call q_sample instead")
        b, c = x_start.shape[:2]
        rows = t.reshape(b, 1).expand(b, c)
        return cast(tuple[torch.Tensor, ...], _run(
            x_start, None, self._fused_form(x_start, rows), seed=None, generator=None, return_noise=True,
            return_v=return_v, backend="auto", stream=None, offset_strength=offset_noise_strength))
