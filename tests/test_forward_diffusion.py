"""ForwardDiffusion, the notebook's forward-process object, on the fused path."""
import torch
from tolerances import assert_close, to_reference

import diffusion_kernels as dk


def test_q_sample_and_add_noise_agree_with_reference(device):
    fd = dk.ForwardDiffusion(dk.NoiseSchedule.cosine(T=200))
    x0 = torch.randn(3, 1, 8, 8, device=device)
    t = torch.tensor([0, 100, 199])
    x_t, noise = fd.add_noise(x0, t, seed=3)
    assert_close(x_t, dk.reference.q_sample(to_reference(x0), t, fd.alpha_bars, to_reference(noise)))
    torch.testing.assert_close(fd.q_sample(x0, t, seed=3), x_t, rtol=0, atol=0)
    torch.testing.assert_close(fd.q_sample(x0, t, noise), x_t)
    assert fd.T == 200 and fd.betas.dtype == torch.float64


def test_default_schedule_is_ddpm_linear():
    fd = dk.ForwardDiffusion()
    torch.testing.assert_close(fd.alpha_bars, dk.NoiseSchedule.linear().alpha_bars)


def test_step_and_trajectory_methods(device):
    fd = dk.ForwardDiffusion(dk.NoiseSchedule.linear(T=30))
    x0 = torch.randn(2, 16, device=device)
    noise = torch.randn_like(x0)
    assert_close(fd.step(x0, 4, noise), dk.reference.forward_step(to_reference(x0), 4, fd.alphas,
                                                                    to_reference(noise)), dtype=torch.float32)
    end, snaps = fd.trajectory(x0, 29, snapshots=[29], seed=2)
    torch.testing.assert_close(end, dk.forward_trajectory(x0, fd.schedule, 29, seed=2), rtol=0, atol=0)
    assert torch.equal(snaps[29], end)
