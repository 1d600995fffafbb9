"""Gradients: to x0, to a given ε, and to a learned ᾱ table; fused against reference."""
import pytest
import torch
from cases import KERNEL_DTYPES, make_x0
from tolerances import assert_close, to_reference

import diffusion_kernels as dk


def test_reference_gradcheck_float64(schedule):
    x0 = torch.randn(3, 4, 5, dtype=torch.float64, requires_grad=True)
    noise = torch.randn(3, 4, 5, dtype=torch.float64, requires_grad=True)
    ab = schedule.alpha_bars[:50].clone().requires_grad_(True)
    t = torch.tensor([0, 17, 49])
    assert torch.autograd.gradcheck(lambda x, n, a: dk.q_sample(x, t, a, n), (x0, noise, ab))


@pytest.mark.parametrize("dtype", KERNEL_DTYPES, ids=str)
@pytest.mark.parametrize("layout", ["contiguous", "channels_last", "sliced"])
def test_fused_gradients_match_reference(device, schedule, dtype, layout):
    shape = (3, 4, 6, 5)
    g = torch.Generator().manual_seed(0)
    x0 = make_x0(shape, layout, dtype, device, g).requires_grad_(True)
    noise = make_x0(shape, "contiguous", dtype, device, g).requires_grad_(True)
    grad_out = torch.randn(shape, generator=g).to(device=device, dtype=dtype)
    t = torch.tensor([0, 250, 999])
    x_t = dk.q_sample(x0, t, schedule, noise, backend="triton")
    gx, gn = torch.autograd.grad(x_t, (x0, noise), grad_out)
    x0_r, noise_r = (to_reference(v).requires_grad_(True) for v in (x0, noise))
    x_r = dk.q_sample(x0_r, t, schedule, noise_r, backend="reference")
    gx_r, gn_r = torch.autograd.grad(x_r, (x0_r, noise_r), to_reference(grad_out))
    assert gx.dtype == dtype and gn.dtype == dtype
    assert_close(gx, gx_r)
    assert_close(gn, gn_r)


@pytest.mark.parametrize("given_noise", [True, False], ids=["given_noise", "drawn_noise"])
@pytest.mark.parametrize("t_form", ["per_sample", "per_frame", "scalar"])
def test_learned_alpha_bar_gradient_matches_reference(device, schedule, given_noise, t_form):
    shape = (4, 3, 7, 5)
    x0 = torch.randn(shape, device=device)
    t = {"per_sample": torch.tensor([3, 3, 10, 40]), "per_frame": torch.randint(0, 50, shape[:2]),
         "scalar": torch.tensor(12)}[t_form]
    ab = schedule.alpha_bars[:50].clone().to(device).requires_grad_(True)
    noise = torch.randn(shape, device=device) if given_noise else None
    grad_out = torch.randn(shape, device=device)
    x_t, eps = dk.q_sample(x0, t, ab, noise, seed=None if given_noise else 99, return_noise=True, backend="triton")
    (g_ab,) = torch.autograd.grad(x_t, ab, grad_out)

    ab_r = to_reference(ab).requires_grad_(True)
    x_r = dk.reference.q_sample(to_reference(x0), t, ab_r, to_reference(eps))
    (g_ab_r,) = torch.autograd.grad(x_r, ab_r, to_reference(grad_out))
    # Per-timestep sums over up to 420 float32 products: float32 tolerance scaled by the sum length.
    torch.testing.assert_close(to_reference(g_ab), g_ab_r, rtol=1e-4, atol=1e-4)
    assert g_ab_r.abs().max() > 1.0


def test_drawn_noise_is_not_differentiable(device, schedule):
    x0 = torch.randn(2, 9, device=device, requires_grad=True)
    x_t, eps = dk.q_sample(x0, 10, schedule, seed=1, return_noise=True, backend="triton")
    assert x_t.requires_grad and not eps.requires_grad
    (gx,) = torch.autograd.grad(x_t.sum(), x0)
    torch.testing.assert_close(gx, torch.full_like(x0, float(schedule.alpha_bars[10].sqrt())))


def test_zero_size_backward(device, schedule):
    x0 = torch.randn(0, 3, device=device, requires_grad=True)
    x_t = dk.q_sample(x0, torch.zeros(0, dtype=torch.long), schedule, seed=1, backend="triton")
    (gx,) = torch.autograd.grad(x_t.sum(), x0)
    assert gx.shape == x0.shape
