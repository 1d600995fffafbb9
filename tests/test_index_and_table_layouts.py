"""Every tensor handed to a kernel besides x0 (the row index t, σ, the coefficient tables) may be a
strided, expanded (stride-0) or offset view of a larger buffer: the result is what the same values
packed give."""
import pytest
import torch
from tolerances import assert_close

import diffusion_kernels as dk
from diffusion_kernels.integrations import guided_diffusion as gd

B = 6


def _t_views(device):
    """(name, t) pairs of non-contiguous 1-D t of B entries."""
    ts = torch.randint(0, 1000, (2 * B,), generator=torch.Generator().manual_seed(1)).to(device)
    pairs = torch.stack([ts[:B], ts[B:]], dim=1)
    return [("expanded", torch.tensor(500, device=device).expand(B)), ("step2", ts[::2]),
            ("column", pairs[:, 0]), ("offset_view", ts[3:3 + B]), ("reversed", ts.flip(0)[:B])]


@pytest.mark.parametrize("which", range(5), ids=["expanded", "step2", "column", "offset_view", "reversed"])
@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16], ids=str)
def test_q_sample_and_velocity_read_a_strided_t_by_its_strides(device, schedule, which, dtype):
    _, t = _t_views(device)[which]
    packed = t.contiguous()
    x0 = torch.randn(B, 3, 5, 7, device=device, dtype=dtype)
    noise = torch.randn_like(x0)
    assert torch.equal(dk.q_sample(x0, t, schedule, seed=3), dk.q_sample(x0, packed, schedule, seed=3))
    expected = dk.q_sample(x0.double(), packed, schedule, noise.double(), backend="reference")
    assert_close(dk.q_sample(x0, t, schedule, noise), expected, dtype=dtype)
    expected_v = dk.get_velocity(x0.double(), noise.double(), packed, schedule, backend="reference")
    assert_close(dk.get_velocity(x0, noise, t, schedule), expected_v, dtype=dtype)


def test_backward_reads_a_strided_t_by_its_strides(device, schedule):
    _, t = _t_views(device)[1]
    x0 = torch.randn(B, 33, device=device, requires_grad=True)
    dk.q_sample(x0, t, schedule, seed=1).sum().backward()
    expected = schedule.alpha_bars.sqrt()[t.cpu()].float().reshape(B, 1).expand(B, 33)
    assert_close(x0.grad, expected)


def test_strided_sigma_and_alpha_bar_views(device, schedule):
    x0 = torch.randn(B, 40, device=device)
    noise = torch.randn_like(x0)
    sigmas = torch.rand(2 * B, device=device, generator=None)
    strided = sigmas[::2]
    assert_close(dk.flow_match_sample(x0, strided, noise),
                 dk.flow_match_sample(x0.double(), strided.contiguous().double(), noise.double(), backend="reference"))
    # an ᾱ table that is a strided view of a larger buffer (every second entry of a 2T table)
    big = torch.stack([schedule.alpha_bars, torch.full((1000,), 0.25, dtype=torch.float64)], dim=1).reshape(-1)
    view = big[::2].to(device)
    t = torch.tensor([0, 1, 10, 500, 998, 999], device=device)
    assert_close(dk.q_sample(x0, t, view, noise),
                 dk.q_sample(x0.double(), t, schedule, noise.double(), backend="reference"))


def test_guided_mixin_with_an_expanded_t(device):
    diffusion = gd.GaussianDiffusionForward(torch.linspace(1e-4, 0.02, 1000, dtype=torch.float64).numpy())
    x0 = torch.randn(B, 3, 4, 4, device=device)
    noise = torch.randn_like(x0)
    t = torch.tensor(321, device=device).expand(B)
    mean, var, _ = diffusion.q_mean_variance(x0, t)
    packed_mean, packed_var, _ = diffusion.q_mean_variance(x0, t.contiguous())
    assert torch.equal(mean, packed_mean) and torch.equal(var, packed_var)
    assert torch.equal(diffusion.q_sample(x0, t, noise), diffusion.q_sample(x0, t.contiguous(), noise))
