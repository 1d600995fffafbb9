"""Timesteps and σ drawn from the noise stream: the same on every backend, distributed as diffusers'
training scripts draw them, and refused with a clear error for arguments that make no sense."""
import math

import numpy as np
import pytest
import torch
from cases import runnable_backends

import diffusion_kernels as dk
from diffusion_kernels import reference
from diffusion_kernels.sampling import entry as sampling

scipy_stats = pytest.importorskip("scipy.stats", reason="scipy is a test dependency (pip install -e .[test])")
training_utils = pytest.importorskip("diffusers.training_utils", reason="diffusers is a test dependency")

ALPHA = 1e-3  # KS p-value below which a distribution is rejected
N = 20_000
RECIPE = dict(logit_mean=0.4, logit_std=0.8, mode_scale=1.29)


def test_the_words_are_the_streams_at_the_sampling_step(device):
    words, _ = sampling._draws(torch.Size([4, 9]), 77, None, 3, device, "auto")
    q = torch.arange(9, dtype=torch.int64)
    expected = torch.stack(reference.philox4x32(q, q * 0, torch.full_like(q, 3),
                                                torch.full_like(q, sampling.SAMPLING_STEP), 77, 0), dim=1)
    assert torch.equal(words.cpu().reshape(-1), expected.reshape(-1)[:36])


@pytest.mark.parametrize("scheme", sampling.SCHEMES)
def test_every_backend_draws_the_same(device, scheme):
    t = {b: dk.sample_timesteps((3, 50), 1000, scheme=scheme, device=device, seed=5, backend=b, **RECIPE)
         for b in runnable_backends(device)}
    s = {b: dk.sample_sigmas(150, scheme=scheme, device=device, seed=5, shift=3.0, backend=b, **RECIPE)
         for b in runnable_backends(device)}
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


# Every u the samplers can draw: the 24 high bits of a word, each value once.
ALL_WORDS = torch.arange(2**24, dtype=torch.int64) << 8


@pytest.mark.parametrize("scheme,mode_scale", [("uniform", 1.29), ("cosmap", 1.29),
                                               ("mode", sampling.MODE_SCALE_RANGE[0]),
                                               ("mode", sampling.MODE_SCALE_RANGE[1]), ("mode", 0.0)])
def test_every_drawable_u_gives_sigma_in_range_and_t_below_T(scheme, mode_scale):
    """Exhaustive over the 2**24 values of u. The mode map is linear in its scale for a fixed u, so its two
    range ends bound every scale between them."""
    recipe = sampling._recipe(scheme, 0.0, 1.0, mode_scale)
    complement = sampling._complement(ALL_WORDS, None, *recipe)
    sigma = complement.to(torch.float32)
    assert bool((sigma > 0).all()) and bool((sigma <= 1).all())
    assert float(complement.min()) >= sampling._smallest_complement(*recipe)
    for T in (1, 1000, 2**31 - 1):
        t = T - torch.ceil(complement * T).to(torch.int64)
        assert int(t.min()) >= 0 and int(t.max()) <= T - 1


def test_the_stream_normals_stay_within_the_bound_the_logit_check_assumes():
    # Box–Muller's largest radius is at its smallest u1 = 2**-24; the float32 math is within NOISE_ATOL of it.
    from diffusion_kernels.tolerances import NOISE_ATOL

    assert math.sqrt(-2.0 * math.log(2.0**-24)) + NOISE_ATOL < sampling.NORMAL_BOUND
    recipe = sampling._recipe("logit_normal", 0.0, sampling.LOGIT_BOUND / sampling.NORMAL_BOUND, 1.29)
    extreme = torch.tensor([-sampling.NORMAL_BOUND, sampling.NORMAL_BOUND])
    complement = sampling._complement(None, extreme, *recipe)
    assert bool((complement.to(torch.float32) > 0).all()) and bool((complement <= 1).all())
    t = 2**31 - 1 - torch.ceil(complement * (2**31 - 1)).to(torch.int64)
    assert int(t.min()) >= 0 and int(t.max()) <= 2**31 - 2


def test_a_wide_logit_normal_never_gives_sigma_zero(device):
    """σ = 0 made sigma_sqrt's σ⁻² infinite by division; what is left is float32's range: σ⁻² of a σ below
    2**-64 exceeds it, exactly as the float64 weight rounded to float32 does."""
    sigma = dk.sample_sigmas(100_000, logit_std=10.0, device=device, seed=3)
    assert bool((sigma > 0).all()) and bool((sigma <= 1).all())
    x0 = torch.randn(100_000, 2, device=device)
    # The reference: 100,000 rows of two elements would be 100,000 programs in Triton's interpreter.
    _, noised = dk.flow_match_sample(x0, sigma, seed=1, return_noise="seed", backend="reference")
    weighted = dk.diffusion_loss(x0, noised, weighting="sigma_sqrt", reduction="none", backend="reference")
    plain = dk.diffusion_loss(x0, noised, reduction="none", backend="reference")
    large = sigma.double() ** -2 > torch.finfo(torch.float32).max
    assert not bool(torch.isnan(weighted).any())
    assert torch.equal(torch.isinf(weighted), large & (plain > 0))
    torch.testing.assert_close(weighted[~large], (plain.double() * sigma.double() ** -2).float()[~large])


@pytest.mark.parametrize("call,message", [
    (lambda: dk.sample_sigmas(4, scheme="mode", mode_scale=10), "mode_scale must lie in \\[-1.0, 1.7519\\]"),
    (lambda: dk.sample_sigmas(4, scheme="mode", mode_scale=-3), "mode_scale must lie in"),
    (lambda: dk.sample_timesteps(4, 1000, scheme="mode", mode_scale=10), "mode_scale must lie in"),
    (lambda: dk.sample_timesteps(4, 1000, scheme="mode", mode_scale=-1.01), "mode_scale must lie in"),
    (lambda: dk.sample_sigmas(4, logit_std=16.0), "logit_std must be at most 87"),
    (lambda: dk.sample_timesteps(4, 1000, scheme="logit_normal", logit_mean=-90.0), "must be at most 87"),
    (lambda: dk.sample_sigmas(4, scheme="uniform", shift=1e-35), "float32 cannot hold"),
])
def test_recipes_whose_draws_would_leave_the_range_are_refused(call, message):
    with pytest.raises(ValueError, match=message):
        call()


@pytest.mark.parametrize("T", [np.int64(1000), np.int32(7), torch.tensor(1000), torch.tensor([12])])
@pytest.mark.parametrize("shape", [np.int64(4), torch.tensor(4), (np.int64(2), 3), torch.tensor([2, 3])])
def test_integer_likes_are_ints(T, shape):
    t = dk.sample_timesteps(shape, T, seed=2)
    assert t.shape == dk.sample_timesteps(torch.Size([int(s) for s in np.atleast_1d(np.asarray(shape))]),
                                          int(T), seed=2).shape
    assert int(t.max()) < int(T)


@pytest.mark.parametrize("T", [True, 10.0, torch.tensor(10.0), torch.tensor([3, 4])])
def test_numbers_that_are_not_integers_are_no_T(T):
    with pytest.raises(ValueError, match="T must be a positive int"):
        dk.sample_timesteps(4, T)


@pytest.mark.parametrize("weighting_scheme", list(sampling.SCRIPT_WEIGHTING_SCHEMES))
def test_script_recipe_draws_and_weighs_as_diffusers_scripts(weighting_scheme):
    """train_dreambooth_sd3.py passes one --weighting_scheme to compute_density_for_timestep_sampling and to
    compute_loss_weighting_for_sd3; script_recipe splits it into our sampler's scheme and loss weighting."""
    scheme, weighting = dk.script_recipe(weighting_scheme)
    theirs = training_utils.compute_density_for_timestep_sampling(
        weighting_scheme, N, generator=torch.Generator().manual_seed(2), **RECIPE)
    ours = dk.sample_timesteps(N, 1000, scheme=scheme, seed=21, **RECIPE)
    assert scipy_stats.ks_2samp(ours.numpy(), (theirs * 1000).long().numpy()).pvalue > ALPHA
    sigma = torch.tensor([0.05, 0.3, 0.5, 0.9])
    x0 = torch.randn(4, 6)
    _, noised = dk.flow_match_sample(x0, sigma, seed=1, return_noise="seed")
    prediction = torch.randn(4, 6)
    weighted = dk.diffusion_loss(prediction, noised, weighting=weighting, reduction="none")
    plain = dk.diffusion_loss(prediction, noised, reduction="none")
    expected = training_utils.compute_loss_weighting_for_sd3(weighting_scheme, sigma)
    torch.testing.assert_close(weighted / plain, expected.float(), rtol=1e-5, atol=0)


def test_an_unknown_script_weighting_scheme_is_named():
    with pytest.raises(ValueError, match="unknown weighting_scheme 'cos'"):
        dk.script_recipe("cos")


def test_the_readme_maps_every_weighting_scheme_as_script_recipe_does():
    import re
    from pathlib import Path

    text = (Path(__file__).resolve().parents[1] / "README.md").read_text()
    rows = dict((name, (scheme, None if weighting == "None" else weighting.strip('"')))
                for name, scheme, weighting in re.findall(r'^\| `(\w+)` \| `"(\w+)"` \| `("?\w+"?)` \|$', text, re.M))
    assert rows == sampling.SCRIPT_WEIGHTING_SCHEMES
    # and the README says what min-SNR does at SNR = 0, where diffusers' scripts divide 0 by 0
    assert "0/0, a NaN" in text and "ε weight 1 there" in text
