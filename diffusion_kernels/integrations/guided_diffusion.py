"""guided-diffusion / improved-diffusion: the forward-process methods of ``GaussianDiffusion``, fused.

Mix ``FusedForwardProcess`` in front of their class and every training step's
``q_sample`` (and the posterior used by ``p_mean_variance``) runs on the fused
kernel, with the same return conventions::

    from guided_diffusion.gaussian_diffusion import GaussianDiffusion
    from diffusion_kernels.integrations.guided_diffusion import FusedForwardProcess

    class FusedGaussianDiffusion(FusedForwardProcess, GaussianDiffusion):
        pass

``GaussianDiffusionForward(betas)`` is the same object without their package.
The tables follow their float64 numpy arrays; results are float32 like
theirs (``_extract_into_tensor`` casts the coefficients to float32).
"""
from __future__ import annotations

import numpy as np
import torch

from ..api import _Form, _run
from ..checks import check_noise, check_t, check_x0
from ..reference import broadcast_t
from ..schedules import NoiseSchedule


def _expand(table: np.ndarray, t: torch.Tensor, shape) -> torch.Tensor:
    values = torch.from_numpy(np.asarray(table)).to(device=t.device)[t].float()
    return broadcast_t(values, len(shape)).expand(shape)


class FusedForwardProcess:
    """q_sample, q_mean_variance and q_posterior_mean_variance on the fused kernel.

    Needs ``self.betas`` (a 1-D float64 numpy array), as guided-diffusion's
    ``GaussianDiffusion`` has.
    """

    def _fused_tables(self):
        cached = getattr(self, "_fused_cache", None)
        if cached is not None and cached[0] is self.betas:
            return cached[1]
        betas = np.asarray(self.betas, dtype=np.float64)
        schedule = NoiseSchedule.from_betas(betas, name="guided_diffusion")
        ab = schedule.alpha_bars.numpy()
        ab_prev = np.append(1.0, ab[:-1])
        tables = {
            "schedule": schedule,
            "variance": 1.0 - ab,
            "log_variance": np.log(1.0 - ab),
            "coef1": betas * np.sqrt(ab_prev) / (1.0 - ab),
            "coef2": (1.0 - ab_prev) * np.sqrt(1.0 - betas) / (1.0 - ab),
        }
        tables["posterior_variance"] = betas * (1.0 - ab_prev) / (1.0 - ab)
        tables["posterior_log_variance_clipped"] = np.log(
            np.append(tables["posterior_variance"][1], tables["posterior_variance"][1:]))
        self._fused_cache = (self.betas, tables)
        return tables

    def q_sample(self, x_start, t, noise=None):
        """Sample q(x_t | x_0); ``t`` is a (N,) tensor of step indices, 0 meaning one step."""
        from ..api import q_sample

        return q_sample(x_start, t, self._fused_tables()["schedule"], noise)

    def q_mean_variance(self, x_start, t):
        """(mean, variance, log_variance) of q(x_t | x_0), all of x_start's shape."""
        tables = self._fused_tables()
        mean = self.q_sample(x_start, t, torch.zeros_like(x_start))
        return mean, _expand(tables["variance"], t, x_start.shape), _expand(tables["log_variance"], t,
                                                                               x_start.shape)

    def q_posterior_mean_variance(self, x_start, x_t, t):
        """(posterior_mean, posterior_variance, posterior_log_variance_clipped) of q(x_{t−1} | x_t, x_0).

        The mean coef1[t]·x_start + coef2[t]·x_t is one fused pass: the noising
        kernel with x_t in the place of ε.
        """
        tables = self._fused_tables()
        x_start = check_x0(x_start, "x_start")
        x_t = check_noise(x_t, x_start)
        index = check_t(t, x_start, len(tables["coef1"]))
        coef1 = torch.from_numpy(tables["coef1"])
        coef2 = torch.from_numpy(tables["coef2"])

        def kernel_tables(device):
            return coef1.to(device=device, dtype=torch.float32), coef2.to(device=device, dtype=torch.float32)

        def textbook(x0, xt):
            c1 = broadcast_t(coef1.float().to(x0.device)[index.to(x0.device)], x0.ndim)
            c2 = broadcast_t(coef2.float().to(x0.device)[index.to(x0.device)], x0.ndim)
            return (c1 * x0.float() + c2 * xt.float()).to(x0.dtype)

        form = _Form(index, kernel_tables, None, textbook, None, check_index=True)
        mean = _run(x_start, x_t, form, seed=None, generator=None, return_noise=False, return_v=False,
                    backend="auto", stream=None)
        return (mean, _expand(tables["posterior_variance"], t, x_t.shape),
                _expand(tables["posterior_log_variance_clipped"], t, x_t.shape))


class GaussianDiffusionForward(FusedForwardProcess):
    """guided-diffusion's forward-process tables and methods, without their package."""

    def __init__(self, betas):
        betas = np.array(betas, dtype=np.float64)
        if betas.ndim != 1 or not ((betas > 0).all() and (betas <= 1).all()):
            raise ValueError("betas must be a 1-D array with values in (0, 1]")
        self.betas = betas
        self.num_timesteps = int(betas.shape[0])
        tables = self._fused_tables()
        ab = tables["schedule"].alpha_bars.numpy()
        self.alphas_cumprod = ab
        self.alphas_cumprod_prev = np.append(1.0, ab[:-1])
        self.sqrt_alphas_cumprod = np.sqrt(ab)
        self.sqrt_one_minus_alphas_cumprod = np.sqrt(1.0 - ab)
        self.posterior_variance = tables["posterior_variance"]
        self.posterior_log_variance_clipped = tables["posterior_log_variance_clipped"]
        self.posterior_mean_coef1 = tables["coef1"]
        self.posterior_mean_coef2 = tables["coef2"]
