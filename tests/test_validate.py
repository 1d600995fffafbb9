"""diffusion_kernels.validate: passes on the real kernel, and each check can fail."""
import torch

import diffusion_kernels as dk
from diffusion_kernels import validate
from diffusion_kernels.trajectory import entry as trajectory_entry


def test_full_validation_passes(device):
    report = validate.run(device, numel=8192, trajectory_steps=[5, 30], trajectory_copies=16, progress=False)
    names = [c.name for c in report.checks]
    assert report.passed, report.format()
    assert "closed form vs steps, t=30" in names and "noise tail beyond 4σ" in names
    assert "fused steps vs forward_step, t=5" in names


def test_noise_checks_catch_wrong_distributions():
    g = torch.Generator().manual_seed(0)
    n = 1 << 16
    failed = {}
    for label, sample in {
        "uniform": (torch.rand(n, generator=g) - 0.5) * 12**0.5,  # mean 0, std 1, not normal
        "wide": 1.05 * torch.randn(n, generator=g),
        "shifted": torch.randn(n, generator=g) + 0.05,
        "correlated": torch.randn(n + 1, generator=g).unfold(0, 2, 1).sum(1) / 2**0.5,
    }.items():
        failed[label] = {c.name for c in validate.noise_checks(sample, "x") if not c.passed}
    assert "x KS vs N(0,1)" in failed["uniform"]
    assert "x std" in failed["wide"]
    assert "x mean" in failed["shifted"]
    assert "x lag-1 correlation" in failed["correlated"]


def test_closed_form_vs_steps_catches_a_wrong_trajectory(device, monkeypatch):
    schedule = dk.NoiseSchedule.linear(T=100)
    real = trajectory_entry.forward_trajectory

    def too_noisy(x0, sched, t_end, **kw):  # the trajectory of a schedule with more noise
        return real(x0, dk.NoiseSchedule.linear(T=100, beta_end=0.04), t_end, **kw)

    monkeypatch.setattr(trajectory_entry, "forward_trajectory", too_noisy)
    checks = validate.closed_form_vs_steps(device, schedule, [60], copies=16, seed=0, backend="auto")
    assert not checks[0].passed
