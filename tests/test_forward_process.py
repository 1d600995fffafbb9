"""The step-by-step forward process: forward_step, the fused trajectory, and its agreement with the closed form."""
import numpy as np
import pytest
import scipy.stats
import torch
from cases import KERNEL_DTYPES
from tolerances import assert_close, assert_noise_close, to_reference

import diffusion_kernels as dk
from diffusion_kernels import reference


@pytest.mark.parametrize("dtype", KERNEL_DTYPES, ids=str)
@pytest.mark.parametrize("t", [0, torch.tensor([3, 999]), torch.tensor([[1, 2, 3], [4, 5, 6]])], ids=["int", "B", "BF"])
def test_forward_step_matches_reference(device, schedule, dtype, t):
    x = torch.randn(2, 3, 13, device=device, dtype=dtype)
    noise = torch.randn_like(x)
    out = dk.forward_step(x, t, schedule, noise, backend="triton")
    expected = reference.forward_step(to_reference(x), t, schedule.alphas, to_reference(noise))
    assert_close(out, expected)


def test_forward_step_with_raw_alpha_bars_uses_the_implied_alphas(device, schedule):
    x = torch.randn(4, 9, device=device)
    noise = torch.randn_like(x)
    t = torch.tensor([0, 1, 500, 999])
    assert_close(dk.forward_step(x, t, schedule.alpha_bars, noise, backend="triton"),
                 reference.forward_step(to_reference(x), t, schedule.alphas, to_reference(noise)), dtype=torch.float32)


@pytest.mark.parametrize("t_end", [0, 1, 6, 40])
def test_fused_trajectory_equals_iterated_steps(device, t_end):
    schedule = dk.NoiseSchedule.cosine(T=50)
    x0 = torch.randn(3, 37, device=device)
    x_end, snaps = dk.forward_trajectory(x0, schedule, t_end, seed=8, snapshots=[0, t_end // 2, t_end],
                                         backend="triton")
    ref_end, ref_snaps = reference.forward_trajectory(x0.cpu(), schedule.alphas, t_end, seed=8,
                                                      snapshots=[0, t_end // 2, t_end])
    # Same noises; float32 rounding (and libm differences in the normals) accumulate over the steps.
    torch.testing.assert_close(x_end.cpu(), ref_end, rtol=1e-5, atol=1e-5 * (t_end + 1))
    assert sorted(snaps) == sorted(ref_snaps)
    for s in snaps:
        torch.testing.assert_close(snaps[s].cpu(), ref_snaps[s], rtol=1e-5, atol=1e-5 * (t_end + 1))
    torch.testing.assert_close(snaps[t_end], x_end)


def test_trajectory_steps_draw_independent_noise(device):
    """Step s uses the stream's step word s: two steps of one seed are uncorrelated."""
    ones = dk.NoiseSchedule.from_betas(torch.ones(2, dtype=torch.float64))  # α = 0: x_s = ε_s exactly
    x0 = torch.zeros(4096, device=device)
    _, snaps = dk.forward_trajectory(x0, ones, 1, seed=3, snapshots=[0, 1], backend="triton")
    assert_noise_close(snaps[0].cpu(), reference.philox_normal(3, (4096,), step=0))
    assert_noise_close(snaps[1].cpu(), reference.philox_normal(3, (4096,), step=1))
    r = np.corrcoef(snaps[0].cpu().numpy(), snaps[1].cpu().numpy())[0, 1]
    assert abs(r) < 5 / np.sqrt(4096)


@pytest.mark.parametrize("t", [10, 100, 199])
def test_trajectory_and_closed_form_agree_in_distribution(device, t):
    schedule = dk.NoiseSchedule.linear(T=200)
    image = torch.linspace(-1, 1, 64, device=device).reshape(1, 8, 8)
    batch = image.expand(16, 8, 8).contiguous()
    closed = dk.q_sample(batch, t, schedule, seed=1, backend="triton")
    stepped = dk.forward_trajectory(batch, schedule, t, seed=2, backend="triton")
    ab = float(schedule.alpha_bars[t])
    # Standardise per pixel with the known mean and std: both must then be N(0, 1) samples.
    z = [((x.cpu().double() - ab**0.5 * image.cpu().double()) / (1 - ab) ** 0.5).flatten().numpy()
         for x in (closed, stepped)]
    assert scipy.stats.ks_2samp(z[0], z[1]).pvalue > 1e-3
    assert scipy.stats.kstest(z[1], "norm").pvalue > 1e-3


def test_trajectory_bad_arguments(device, schedule):
    x0 = torch.zeros(4, device=device)
    with pytest.raises(ValueError, match=r"t_end = 1000 is outside \[0, T\)"):
        dk.forward_trajectory(x0, schedule, 1000)
    with pytest.raises(ValueError, match="snapshot step 7 is outside"):
        dk.forward_trajectory(x0, schedule, 5, snapshots=[7])
    with pytest.raises(TypeError, match="t_end must be an int"):
        dk.forward_trajectory(x0, schedule, 2.0)


def test_reference_backend_trajectory_matches_fused(device):
    schedule = dk.NoiseSchedule.linear(T=20)
    x0 = torch.randn(2, 10, device=device)
    fused = dk.forward_trajectory(x0, schedule, 19, seed=4, backend="triton")
    ref = dk.forward_trajectory(x0.cpu(), schedule, 19, seed=4, backend="reference")
    torch.testing.assert_close(fused.cpu(), ref, rtol=1e-5, atol=2e-4)
