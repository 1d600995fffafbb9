"""A schedule the forward process cannot run is refused when it is built, naming the entry or the
parameter that is wrong."""
import pytest
import torch

import diffusion_kernels as dk


@pytest.mark.parametrize("alpha_bars,match", [
    ([0.5, 0.9, 0.1], r"non-increasing.*alpha_bars\[1\] = 0.9"),
    ([0.5, 0.0, 0.0], r"zero at most at its last step.*alpha_bars\[1\]"),
    ([1.2, 0.5], r"in \[0, 1\].*alpha_bars\[0\] = 1.2"),
    ([0.5, float("nan")], r"finite.*alpha_bars\[1\]"),
])
def test_alpha_bars_the_steps_cannot_follow(alpha_bars, match):
    with pytest.raises(ValueError, match=match):
        dk.NoiseSchedule.from_alpha_bars(alpha_bars)


def test_zero_terminal_alpha_bar_is_a_valid_schedule():
    schedule = dk.NoiseSchedule.from_alpha_bars([0.9, 0.5, 0.0])
    x = dk.forward_trajectory(torch.randn(8), schedule, 2, seed=1, backend="reference")
    assert torch.isfinite(x).all()


def test_raw_non_monotone_alpha_bars_refused_by_the_steps(device):
    ab = torch.tensor([0.5, 0.9, 0.1], dtype=torch.float64)
    x = torch.randn(3, 4, device=device)
    dk.q_sample(x, torch.tensor([0, 1, 2]), ab, seed=1)  # the closed form is defined for any ᾱ in [0, 1]
    if device.type == "cpu":
        with pytest.raises(ValueError, match="non-increasing"):
            dk.forward_step(x, torch.tensor([0, 1, 2]), ab, seed=1)
    with pytest.raises(ValueError, match="non-increasing"):
        dk.forward_trajectory(x, ab, 2, seed=1)


@pytest.mark.parametrize("build,match", [
    (lambda: dk.NoiseSchedule.sigmoid_alpha_bar(tau=0), "tau must be > 0"),
    (lambda: dk.NoiseSchedule.scaled_linear(beta_start=-1), "beta_start must be >= 0"),
    (lambda: dk.NoiseSchedule.linear(beta_end=float("inf")), "beta_end must be finite"),
    (lambda: dk.NoiseSchedule.cosine(max_beta=0), "max_beta must be > 0"),
    (lambda: dk.NoiseSchedule.sigmoid_alpha_bar(start=3, end=-3), "start must be below end"),
    (lambda: dk.NoiseSchedule.from_betas([0.1, 2.0]), r"betas must be in \[0, 1\]; betas\[1\] = 2.0"),
])
def test_constructor_parameters_are_named(build, match):
    with pytest.raises(ValueError, match=match):
        build()


@pytest.mark.parametrize("betas", ["abc", ["a", "b"], {1: 2}], ids=["str", "strings", "dict"])
def test_betas_that_are_not_numbers(betas):
    with pytest.raises(TypeError, match="betas must be a 1-D sequence of real numbers"):
        dk.NoiseSchedule.from_betas(betas)


def test_a_schedule_keeps_its_own_copy_of_the_values():
    ab = dk.NoiseSchedule.linear().alpha_bars
    schedule = dk.NoiseSchedule.from_alpha_bars(ab)
    before = schedule.coefficient_tables("cpu")[0].clone()
    ab.mul_(0.5)
    assert torch.equal(schedule.coefficient_tables("cpu")[0], before)
