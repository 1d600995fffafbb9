"""guided-diffusion / improved-diffusion: the forward-process methods of ``GaussianDiffusion``, fused.

Mix ``FusedForwardProcess`` in front of their class and every training step's
``q_sample`` (and the posterior used by ``p_mean_variance``) runs on the fused
kernel, with the same return conventions::

    from guided_diffusion.gaussian_diffusion import GaussianDiffusion
    from diffusion_kernels.integrations.guided_diffusion import FusedForwardProcess

    class FusedGaussianDiffusion(FusedForwardProcess, GaussianDiffusion):
        pass

The kernel reads the instance's own float64 numpy tables (``sqrt_alphas_cumprod``,
``posterior_mean_coef1``, ...) cast to float32, exactly as their
``_extract_into_tensor`` does, so the numbers are theirs to float32 rounding,
and results are float32 for float16/bfloat16 input as theirs are. A table is
converted once per device and converted again when the array is replaced or
its values change. The tables are ready after ``__init__``, so a first call
inside ``torch.compile(fullgraph=True)`` traces no numpy.

``GaussianDiffusionForward(betas)`` is the same object without their package.
"""
from __future__ import annotations

from collections.abc import Sequence
from typing import Any, NamedTuple, cast

import numpy as np
import torch

from ..forms import Form as _Form
from ..forms import table_form
from ..noising.entry import run as _run
from ..checks import check_noise, check_t, check_x0, clamped
from ..hints import Device, Timesteps
from ..reference import broadcast_t

# The tables the fused methods read: name -> (their array, what is taken of it in float64).
_TABLES = {
    "sqrt_alphas_cumprod": ("sqrt_alphas_cumprod", None),
    "sqrt_one_minus_alphas_cumprod": ("sqrt_one_minus_alphas_cumprod", None),
    "variance": ("alphas_cumprod", lambda ab: 1.0 - ab),  # their q_mean_variance's 1.0 - self.alphas_cumprod
    "log_one_minus_alphas_cumprod": ("log_one_minus_alphas_cumprod", None),
    "posterior_mean_coef1": ("posterior_mean_coef1", None),
    "posterior_mean_coef2": ("posterior_mean_coef2", None),
    "posterior_variance": ("posterior_variance", None),
    "posterior_log_variance_clipped": ("posterior_log_variance_clipped", None),
}


class _Converted(NamedTuple):
    array: np.ndarray  # the instance's array the entry was made from
    values: np.ndarray  # a copy of its values then
    per_device: dict[object, torch.Tensor]  # device -> float32 tensor (and "float64": the values)


def _float32_result(x: torch.Tensor) -> torch.Tensor:
    """Their coefficients are float32 tensors, so a float16/bfloat16 batch comes out float32."""
    return x.float() if x.dtype in (torch.float16, torch.bfloat16) else x


class FusedForwardProcess:
    """q_sample, q_mean_variance and q_posterior_mean_variance on the fused kernel.

    Needs their float64 numpy tables (``sqrt_alphas_cumprod``, ``posterior_mean_coef1``, ...), as
    guided-diffusion's and improved-diffusion's ``GaussianDiffusion`` have.
    """

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        for name in _TABLES:
            self._fused_table(name, "cpu")

    def _fused_table(self, name: str, device: Device) -> torch.Tensor:
        """The table ``name`` (of _TABLES) as a float32 tensor on ``device``."""
        cache = self.__dict__.setdefault("_fused_cache", {})
        device = torch.device(device)
        entry = cache.get(name)
        if not torch.compiler.is_compiling():
            source, transform = _TABLES[name]
            array = getattr(self, source)
            if entry is None or entry.array is not array or not np.array_equal(entry.values, array):
                entry = cache[name] = _Converted(array, np.array(array, dtype=np.float64), {})
            if not entry.per_device:
                values = entry.values if transform is None else transform(entry.values)
                with torch.inference_mode(False):
                    entry.per_device["float64"] = torch.from_numpy(np.ascontiguousarray(values))
        if entry is None:
            raise RuntimeError(f"{type(self).__name__}: the {name} table was never converted; call the method once "
                               "outside torch.compile (FusedForwardProcess.__init__ does)")
        tensor = entry.per_device.get(device)
        if tensor is None:
            with torch.inference_mode(False):
                tensor = entry.per_device[device] = entry.per_device["float64"].to(device=device, dtype=torch.float32)
        return tensor

    def _fused_expand(self, name: str, t: torch.Tensor, shape: Sequence[int]) -> torch.Tensor:
        """Their ``_extract_into_tensor(self.<name>, t, shape)``."""
        values = self._fused_table(name, t.device)[t]
        return broadcast_t(values, len(shape)).expand(shape)

    def _fused_sample(self, x_start: torch.Tensor, t: Timesteps, noise: torch.Tensor | None) -> torch.Tensor:
        x_start = _float32_result(check_x0(x_start, "x_start"))
        noise = check_noise(noise if noise is None else noise.to(x_start.dtype), x_start)
        form = table_form(x_start, t, self._fused_table("sqrt_alphas_cumprod", x_start.device),
                          self._fused_table("sqrt_one_minus_alphas_cumprod", x_start.device), noise=noise)
        return cast(torch.Tensor, _run(x_start, noise, form, seed=None, generator=None, return_noise=False,
                                       return_v=False, backend="auto", stream=None))

    def q_sample(self, x_start: torch.Tensor, t: Timesteps, noise: torch.Tensor | None = None) -> torch.Tensor:
        """Sample q(x_t | x_0); ``t`` is a (N,) tensor of step indices, 0 meaning one step."""
        return self._fused_sample(x_start, t, noise)

    def q_mean_variance(self, x_start: torch.Tensor, t: torch.Tensor
                        ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """(mean, variance, log_variance) of q(x_t | x_0), all of x_start's shape."""
        mean = self._fused_sample(x_start, t, torch.zeros_like(x_start))
        return (mean, self._fused_expand("variance", t, x_start.shape),
                self._fused_expand("log_one_minus_alphas_cumprod", t, x_start.shape))

    def q_posterior_mean_variance(self, x_start: torch.Tensor, x_t: torch.Tensor, t: torch.Tensor
                                  ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """(posterior_mean, posterior_variance, posterior_log_variance_clipped) of q(x_{t−1} | x_t, x_0).

        The mean coef1[t]·x_start + coef2[t]·x_t is one fused pass: the noising
        kernel with x_t in the place of ε.
        """
        x_start = check_x0(x_start, "x_start")
        x_t = check_noise(x_t, x_start)
        dtype = torch.promote_types(torch.promote_types(x_start.dtype, x_t.dtype), torch.float32)
        x_start, x_t = x_start.to(dtype), x_t.to(dtype)
        device = x_start.device
        coef1 = self._fused_table("posterior_mean_coef1", device)
        coef2 = self._fused_table("posterior_mean_coef2", device)
        index = check_t(t, x_start, coef1.numel(), check_range=not torch.compiler.is_compiling())

        def textbook(x0: torch.Tensor, xt: torch.Tensor) -> torch.Tensor:
            idx = clamped(index, coef1.numel()).to(device)
            c1, c2 = broadcast_t(coef1[idx], x0.ndim), broadcast_t(coef2[idx], x0.ndim)
            return (c1.to(x0.dtype) * x0 + c2.to(x0.dtype) * xt).to(x0.dtype)

        form = _Form(index, lambda dev: (coef1.to(dev), coef2.to(dev)), None, textbook, None, check_index=True)
        mean = cast(torch.Tensor, _run(x_start, x_t, form, seed=None, generator=None, return_noise=False,
                                       return_v=False, backend="auto", stream=None))
        return (mean, self._fused_expand("posterior_variance", t, x_t.shape),
                self._fused_expand("posterior_log_variance_clipped", t, x_t.shape))


class GaussianDiffusionForward(FusedForwardProcess):
    """guided-diffusion's forward-process tables and methods, without their package."""

    def __init__(self, betas: np.ndarray | Sequence[float]) -> None:
        betas = np.array(betas, dtype=np.float64)
        if betas.ndim != 1 or betas.size == 0:
            raise ValueError(f"betas must be a non-empty 1-D array, got shape {betas.shape}")
        bad = np.flatnonzero(~((betas > 0) & (betas <= 1)))
        if bad.size:
            raise ValueError(f"betas must lie in (0, 1]; betas[{bad[0]}] = {betas[bad[0]]!r}")
        self.betas = betas
        self.num_timesteps = int(betas.shape[0])
        alphas = 1.0 - betas
        ab = np.cumprod(alphas, axis=0)
        self.alphas_cumprod = ab
        self.alphas_cumprod_prev = np.append(1.0, ab[:-1])
        self.sqrt_alphas_cumprod = np.sqrt(ab)
        self.sqrt_one_minus_alphas_cumprod = np.sqrt(1.0 - ab)
        self.log_one_minus_alphas_cumprod = np.log(1.0 - ab)
        self.posterior_variance = betas * (1.0 - self.alphas_cumprod_prev) / (1.0 - ab)
        self.posterior_log_variance_clipped = np.log(
            np.append(self.posterior_variance[1], self.posterior_variance[1:]))
        self.posterior_mean_coef1 = betas * np.sqrt(self.alphas_cumprod_prev) / (1.0 - ab)
        self.posterior_mean_coef2 = (1.0 - self.alphas_cumprod_prev) * np.sqrt(alphas) / (1.0 - ab)
        super().__init__()
