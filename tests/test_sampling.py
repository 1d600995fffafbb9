"""Timesteps and σ drawn from the noise stream: the same on every backend, distributed as diffusers'
training scripts draw them, and refused with a clear error for arguments that make no sense."""
import math

import pytest
import torch

import diffusion_kernels as dk
from diffusion_kernels import backend, cpu_noise, reference, sampling

scipy_stats = pytest.importorskip("scipy.stats", reason="scipy is a test dependency (pip install -e .[test])")
training_utils = pytest.importorskip("diffusers.training_utils", reason="diffusers is a test dependency")

ALPHA = 1e-3  # KS p-value below which a distribution is rejected
N = 20_000
RECIPE = dict(logit_mean=0.4, logit_std=0.8, mode_scale=1.29)


def _backends(device):
    chosen = ["reference"]
    if device.type == "cuda" or backend.interpreter_active():
        chosen.append("triton")
    if device.type == "cpu" and cpu_noise.available():
        chosen.append("cpu")
    return chosen


def test_the_words_are_the_streams_at_the_sampling_step(device):
    words, _ = sampling._draws(torch.Size([4, 9]), 77, None, 3, device, "auto")
    q = torch.arange(9, dtype=torch.int64)
    expected = torch.stack(reference.philox4x32(q, q * 0, torch.full_like(q, 3),
                                                torch.full_like(q, sampling.SAMPLING_STEP), 77, 0), dim=1)
    assert torch.equal(words.cpu().reshape(-1), expected.reshape(-1)[:36])


@pytest.mark.parametrize("scheme", sampling.SCHEMES)
def test_every_backend_draws_the_same(device, scheme):
    t = {b: dk.sample_timesteps((3, 50), 1000, scheme=scheme, device=device, seed=5, backend=b, **RECIPE)
         for b in _backends(device)}
    s = {b: dk.sample_sigmas(150, scheme=scheme, device=device, seed=5, shift=3.0, backend=b, **RECIPE)
         for b in _backends(device)}
    first = next(iter(t))
    for b in t:
        assert t[b].dtype == torch.int64 and t[b].shape == (3, 50) and s[b].dtype == torch.float32
        assert bool(((t[b] >= 0) & (t[b] < 1000)).all()) and bool(((s[b] > 0) & (s[b] < 1)).all())
        torch.testing.assert_close(s[b].cpu(), s[first].cpu(), rtol=0, atol=2e-6)
        if scheme == "uniform":
            assert torch.equal(t[b].cpu(), t[first].cpu())  # integer arithmetic on the words: exact
        else:  # ⌊u·T⌋ of values equal to float32 rounding: at most a rare boundary differs by one
            assert int((t[b].cpu() - t[first].cpu()).abs().max()) <= 1


def test_a_seed_reproduces_and_seeds_differ(device):
    a = dk.sample_sigmas(64, device=device, seed=1)
    assert torch.equal(a, dk.sample_sigmas(64, device=device, seed=1))
    assert not torch.equal(a, dk.sample_sigmas(64, device=device, seed=2))
    assert not torch.equal(a, dk.sample_sigmas(64, device=device, seed=1, stream=1))
    g1, g2 = torch.Generator().manual_seed(9), torch.Generator().manual_seed(9)
    assert torch.equal(dk.sample_timesteps(8, 1000, generator=g1, device=device),
                       dk.sample_timesteps(8, 1000, generator=g2, device=device))


@pytest.mark.parametrize("scheme", ["logit_normal", "mode", "uniform"])
def test_the_density_is_diffusers(scheme):
    """u, seen through t = ⌊u·T⌋, against diffusers' compute_density_for_timestep_sampling."""
    theirs = training_utils.compute_density_for_timestep_sampling(
        scheme, N, generator=torch.Generator().manual_seed(0), **RECIPE)
    ours = dk.sample_timesteps(N, 1000, scheme=scheme, seed=11, **RECIPE)
    assert scipy_stats.ks_2samp(ours.numpy(), (theirs * 1000).long().numpy()).pvalue > ALPHA


def test_cosmap_is_the_sd3_map_of_a_uniform():
    u = torch.rand(N, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    theirs = 1.0 - 1.0 / (torch.tan(math.pi * u / 2) + 1.0)
    ours = 1.0 - dk.sample_sigmas(N, scheme="cosmap", seed=12).double()
    assert scipy_stats.ks_2samp(ours.numpy(), theirs.numpy()).pvalue > ALPHA


@pytest.mark.parametrize("scheme", ["logit_normal", "mode"])
def test_sigmas_are_what_the_flow_scripts_index(scheme):
    """train_dreambooth_sd3.py: indices = (u·T).long(), σ = scheduler.sigmas of scheduler.timesteps[indices]."""
    from diffusers import FlowMatchEulerDiscreteScheduler

    scheduler = FlowMatchEulerDiscreteScheduler(shift=3.0)
    u = training_utils.compute_density_for_timestep_sampling(
        scheme, N, generator=torch.Generator().manual_seed(1), **RECIPE)
    indices = (u * scheduler.config.num_train_timesteps).long()
    theirs = scheduler.sigmas[indices]
    ours = dk.sample_sigmas(N, scheme=scheme, shift=3.0, seed=13, **RECIPE)
    assert scipy_stats.ks_2samp(ours.numpy(), theirs.numpy()).pvalue > ALPHA


@pytest.mark.parametrize("call,message", [
    (lambda: dk.sample_sigmas(4, scheme="beta"), "unknown scheme 'beta'"),
    (lambda: dk.sample_sigmas(4, shift=0.0), "shift must be a positive number"),
    (lambda: dk.sample_sigmas(4, logit_std=-1.0), "logit_std must be a positive number"),
    (lambda: dk.sample_sigmas(4, logit_mean=float("nan")), "logit_mean must be finite"),
    (lambda: dk.sample_timesteps(4, 0), "T must be a positive int"),
    (lambda: dk.sample_timesteps(4, 10.5), "T must be a positive int"),
    (lambda: dk.sample_timesteps(4, 2**31), "T must be a positive int below 2\\*\\*31"),
    (lambda: dk.sample_timesteps((2, -1), 10), "negative sizes"),
    (lambda: dk.sample_timesteps("4", 10), "shape must be an int or a sequence of ints"),
])
def test_bad_arguments_are_named(call, message):
    with pytest.raises((ValueError, TypeError), match=message):
        call()


def test_empty_shapes_draw_nothing(device):
    assert dk.sample_timesteps((0, 3), 10, device=device, seed=1).shape == (0, 3)
    assert dk.sample_sigmas(0, device=device, seed=1).shape == (0,)
