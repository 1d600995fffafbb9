"""Drop-in integrations: against the real diffusers package, and faithful readings of
guided-diffusion's and denoising-diffusion-pytorch's formulas (neither is on PyPI in a form
that installs beside a CPU torch: the first is not published, the second needs torchvision)."""
import math

import numpy as np
import pytest
import torch
from tolerances import assert_close, assert_noise_close

import diffusion_kernels as dk
from diffusion_kernels.integrations import denoising_diffusion_pytorch as ddp
from diffusion_kernels.integrations import guided_diffusion as gd

diffusers = pytest.importorskip("diffusers", reason="diffusers is a test dependency (pip install -e .[test])")
from diffusion_kernels.integrations import diffusers as dk_diffusers  # noqa: E402

CONFIGS = [
    dict(beta_schedule="linear"),
    dict(beta_schedule="scaled_linear", beta_start=0.00085, beta_end=0.012),
    dict(beta_schedule="squaredcos_cap_v2"),
    dict(beta_schedule="sigmoid"),
    dict(beta_schedule="scaled_linear", beta_start=0.00085, beta_end=0.012, rescale_betas_zero_snr=True),
]


def _batch(device, dtype, shape=(4, 3, 8, 8)):
    g = torch.Generator().manual_seed(0)
    x0 = torch.randn(shape, generator=g).to(device=device, dtype=dtype)
    noise = torch.randn(shape, generator=g).to(device=device, dtype=dtype)
    return x0, noise, torch.tensor([0, 1, 500, 999], device=device)


SCHEDULER_CASES = [
    pytest.param(cls, config, id=f"{cls}-{config['beta_schedule']}" + ("-zero_snr" if len(config) > 3 else ""))
    for cls in ("DDPMScheduler", "DDIMScheduler") for config in CONFIGS
    if not (cls == "DDIMScheduler" and config["beta_schedule"] == "sigmoid")  # DDIM has no sigmoid betas
]


@pytest.mark.parametrize("cls,config", SCHEDULER_CASES)
def test_diffusers_float32_equals_stock(device, config, cls):
    stock = getattr(diffusers, cls)(**config)
    fused = dk_diffusers.patch(getattr(diffusers, cls)(**config))
    x0, noise, t = _batch(device, torch.float32)
    torch.testing.assert_close(fused.add_noise(x0, noise, t), stock.add_noise(x0, noise, t), rtol=1.3e-6, atol=1e-6)
    torch.testing.assert_close(fused.get_velocity(x0, noise, t), stock.get_velocity(x0, noise, t),
                               rtol=1.3e-6, atol=1e-6)


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16], ids=str)
def test_diffusers_half_precision_equals_float32_result_cast(device, dtype):
    stock = diffusers.DDPMScheduler()
    fused = dk_diffusers.FusedDDPMScheduler()
    assert isinstance(fused, diffusers.DDPMScheduler)
    x0, noise, t = _batch(device, dtype)
    expected = stock.add_noise(x0.float(), noise.float(), t)
    assert_close(fused.add_noise(x0, noise, t), expected, dtype=dtype)
    assert_close(fused.get_velocity(x0, noise, t), stock.get_velocity(x0.float(), noise.float(), t), dtype=dtype)


def test_diffusers_bf16_stock_path_loses_the_noise_and_ours_keeps_it(device):
    x0, noise, _ = _batch(device, torch.bfloat16)
    t = torch.zeros(4, dtype=torch.long, device=device)
    stock = diffusers.DDPMScheduler().add_noise(x0, noise, t)
    fused = dk_diffusers.FusedDDIMScheduler().add_noise(x0, noise, t)
    assert torch.equal(stock, x0)  # ᾱ_0 rounds to 1 in bf16: no noise at all
    assert (fused != x0).float().mean() > 0.5


# ---- guided-diffusion -------------------------------------------------------------------------
def _guided_tables(betas):
    """guided_diffusion/gaussian_diffusion.py, GaussianDiffusion.__init__ (float64 numpy)."""
    alphas = 1.0 - betas
    ab = np.cumprod(alphas, axis=0)
    ab_prev = np.append(1.0, ab[:-1])
    post_var = betas * (1.0 - ab_prev) / (1.0 - ab)
    return dict(sqrt_ab=np.sqrt(ab), sqrt_1m_ab=np.sqrt(1.0 - ab), var=1.0 - ab, log_var=np.log(1.0 - ab),
                post_var=post_var, post_log_var=np.log(np.append(post_var[1], post_var[1:])),
                coef1=betas * np.sqrt(ab_prev) / (1.0 - ab), coef2=(1.0 - ab_prev) * np.sqrt(alphas) / (1.0 - ab))


def _extract(arr, t, shape):
    """guided_diffusion's _extract_into_tensor."""
    res = torch.from_numpy(arr).to(device=t.device)[t].float()
    while len(res.shape) < len(shape):
        res = res[..., None]
    return res.expand(shape)


def test_guided_diffusion_methods_match_their_formulas(device):
    betas = np.linspace(1e-4, 0.02, 1000, dtype=np.float64)
    ours = gd.GaussianDiffusionForward(betas)
    ref = _guided_tables(betas)
    x0, noise, t = _batch(device, torch.float32)
    x_t = ours.q_sample(x0, t, noise)
    expected = _extract(ref["sqrt_ab"], t, x0.shape) * x0 + _extract(ref["sqrt_1m_ab"], t, x0.shape) * noise
    torch.testing.assert_close(x_t, expected, rtol=1.3e-6, atol=1e-6)
    mean, var, log_var = ours.q_mean_variance(x0, t)
    torch.testing.assert_close(mean, _extract(ref["sqrt_ab"], t, x0.shape) * x0)
    torch.testing.assert_close(var, _extract(ref["var"], t, x0.shape))
    torch.testing.assert_close(log_var, _extract(ref["log_var"], t, x0.shape))
    p_mean, p_var, p_log_var = ours.q_posterior_mean_variance(x0, x_t, t)
    torch.testing.assert_close(p_mean, _extract(ref["coef1"], t, x0.shape) * x0 + _extract(ref["coef2"], t, x0.shape)
                               * x_t, rtol=1.3e-6, atol=1e-6)
    torch.testing.assert_close(p_var, _extract(ref["post_var"], t, x0.shape))
    torch.testing.assert_close(p_log_var, _extract(ref["post_log_var"], t, x0.shape))
    assert p_var.shape == x0.shape and p_log_var.shape == x0.shape


def test_guided_diffusion_mixin_swaps_into_their_class(device):
    class TheirGaussianDiffusion:  # the constructor contract the mixin relies on: their float64 tables
        def __init__(self, *, betas):
            self.betas = np.array(betas, dtype=np.float64)
            tables = _guided_tables(self.betas)
            self.alphas_cumprod = np.cumprod(1.0 - self.betas)
            self.sqrt_alphas_cumprod, self.sqrt_one_minus_alphas_cumprod = tables["sqrt_ab"], tables["sqrt_1m_ab"]
            self.log_one_minus_alphas_cumprod = tables["log_var"]
            self.posterior_mean_coef1, self.posterior_mean_coef2 = tables["coef1"], tables["coef2"]
            self.posterior_variance = tables["post_var"]
            self.posterior_log_variance_clipped = tables["post_log_var"]

        def q_sample(self, x_start, t, noise=None):
            raise AssertionError("the fused q_sample must win the method lookup")

    class Fused(gd.FusedForwardProcess, TheirGaussianDiffusion):
        pass

    diffusion = Fused(betas=np.linspace(1e-4, 0.02, 100))
    x0, noise, _ = _batch(device, torch.float32)
    t = torch.tensor([0, 10, 50, 99], device=device)
    ref = _guided_tables(diffusion.betas)
    torch.testing.assert_close(diffusion.q_sample(x0, t, noise), _extract(ref["sqrt_ab"], t, x0.shape) * x0
                               + _extract(ref["sqrt_1m_ab"], t, x0.shape) * noise, rtol=1.3e-6, atol=1e-6)


# ---- denoising-diffusion-pytorch --------------------------------------------------------------
def _ddp_linear(T):
    scale = 1000 / T
    return torch.linspace(scale * 0.0001, scale * 0.02, T, dtype=torch.float64)


def _ddp_cosine(T, s=0.008):
    steps = T + 1
    t = torch.linspace(0, T, steps, dtype=torch.float64) / T
    ab = torch.cos((t + s) / (1 + s) * math.pi * 0.5) ** 2
    ab = ab / ab[0]
    return torch.clip(1 - (ab[1:] / ab[:-1]), 0, 0.999)


def _ddp_sigmoid(T, start=-3, end=3, tau=1):
    steps = T + 1
    t = torch.linspace(0, T, steps, dtype=torch.float64) / T
    v_start = torch.tensor(start / tau).sigmoid()
    v_end = torch.tensor(end / tau).sigmoid()
    ab = (-((t * (end - start) + start) / tau).sigmoid() + v_end) / (v_end - v_start)
    ab = ab / ab[0]
    return torch.clip(1 - (ab[1:] / ab[:-1]), 0, 0.999)


@pytest.mark.parametrize("T", [1000, 250])
@pytest.mark.parametrize("name,ours,theirs,rtol", [
    ("linear", dk.NoiseSchedule.linear_scaled, _ddp_linear, 1e-12),
    ("cosine", dk.NoiseSchedule.cosine, _ddp_cosine, 1e-10),
    # theirs takes sigmoid(start/tau) and sigmoid(end/tau) as float32 tensors; ours keeps float64,
    # and the last betas (ᾱ near 0) amplify that float32 rounding.
    ("sigmoid", dk.NoiseSchedule.sigmoid_alpha_bar, _ddp_sigmoid, 5e-5),
])
def test_denoising_diffusion_pytorch_schedules(T, name, ours, theirs, rtol):
    torch.testing.assert_close(ours(T).betas, theirs(T), rtol=rtol, atol=1e-12)


class _TheirModule(torch.nn.Module):
    """What the mixin reads from their GaussianDiffusion: float32 buffers made from float64 tables."""

    def __init__(self, betas):
        super().__init__()
        ab = torch.cumprod(1.0 - betas, dim=0)
        self.register_buffer("alphas_cumprod", ab.float())
        self.register_buffer("sqrt_alphas_cumprod", ab.sqrt().float())
        self.register_buffer("sqrt_one_minus_alphas_cumprod", (1.0 - ab).sqrt().float())


class _FusedModule(ddp.FusedNoising, _TheirModule):
    pass


def test_denoising_diffusion_pytorch_q_sample_and_predict_v(device):
    module = _FusedModule(_ddp_cosine(1000)).to(device)
    x0, noise, t = _batch(device, torch.float32)

    def extract(a, t, shape):
        b, *_ = t.shape
        return a.gather(-1, t).reshape(b, *((1,) * (len(shape) - 1)))

    sa, s1 = module.sqrt_alphas_cumprod, module.sqrt_one_minus_alphas_cumprod
    torch.testing.assert_close(module.q_sample(x0, t, noise),
                               extract(sa, t, x0.shape) * x0 + extract(s1, t, x0.shape) * noise, rtol=2e-6, atol=2e-6)
    torch.testing.assert_close(module.predict_v(x0, t, noise),
                               extract(sa, t, x0.shape) * noise - extract(s1, t, x0.shape) * x0, rtol=2e-6, atol=2e-6)


def test_denoising_diffusion_pytorch_offset_noise(device):
    module = _FusedModule(_ddp_linear(1000)).to(device)
    x0, _, t = _batch(device, torch.float32)
    torch.manual_seed(4)
    x_t, noise, v = module.q_sample_offset_noise(x0, t, 0.1, return_v=True)
    torch.testing.assert_close(x_t, module.q_sample(x0, t, noise), rtol=2e-6, atol=2e-6)
    torch.testing.assert_close(v, module.predict_v(x0, t, noise), rtol=2e-6, atol=2e-6)
    # the noise is the stream's ε plus 0.1 × one normal per (batch, channel), from the seed the call drew
    torch.manual_seed(4)
    seed = dk.seeding.draw_seed()
    expected = dk.reference.drawn_noise(seed, x0.shape, (4, 3), offset_strength=0.1)
    assert_noise_close(noise.cpu(), expected)


def test_denoising_diffusion_pytorch_immiscible_reorders_the_noise_first(device):
    """Their immiscible=True reorders the noise across the batch by their noise_assignment (a linear
    assignment of noise to samples) before the closed form; the fused q_sample does the same."""
    module = _FusedModule(_ddp_linear(1000)).to(device)
    module.immiscible = True
    module.noise_assignment = lambda x_start, noise: torch.arange(noise.shape[0] - 1, -1, -1, device=noise.device)
    x0, noise, t = _batch(device, torch.float32)
    sa, s1 = module.sqrt_alphas_cumprod[t].reshape(4, 1, 1, 1), module.sqrt_one_minus_alphas_cumprod[t].reshape(
        4, 1, 1, 1)
    torch.testing.assert_close(module.q_sample(x0, t, noise), sa * x0 + s1 * noise.flip(0), rtol=2e-6, atol=2e-6)
    with pytest.raises(ValueError, match="immiscible"):
        module.q_sample_offset_noise(x0, t, 0.1)
