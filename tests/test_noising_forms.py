"""The kernel family beyond DDPM's x_t: v-target, flow matching, EDM, offset noise, and the seed-only loss."""
import pytest
import torch
import torch.nn.functional as F
from cases import KERNEL_DTYPES
from tolerances import assert_close, assert_noise_close, to_reference

import diffusion_kernels as dk
from diffusion_kernels import reference


@pytest.mark.parametrize("dtype", KERNEL_DTYPES, ids=str)
@pytest.mark.parametrize("given_noise", [True, False], ids=["given", "drawn"])
def test_v_target_in_the_same_pass(device, schedule, dtype, given_noise):
    x0 = torch.randn(3, 4, 9, device=device, dtype=dtype)
    t = torch.tensor([0, 300, 999])
    noise = torch.randn_like(x0) if given_noise else None
    seed = None if given_noise else 3
    x_t, eps, v = dk.q_sample(x0, t, schedule, noise, seed=seed, return_noise=True, return_v=True, backend="triton")
    eps64 = to_reference(noise) if given_noise else reference.philox_normal(3, x0.shape, dtype=torch.float64)
    assert_close(v, reference.velocity(to_reference(x0), t, schedule.alpha_bars, eps64))
    assert_close(x_t, reference.q_sample(to_reference(x0), t, schedule.alpha_bars, eps64))
    x_t2, v2 = dk.q_sample(x0, t, schedule, noise, seed=seed, return_v=True, backend="triton")
    assert torch.equal(x_t2, x_t) and torch.equal(v2, v)
    assert_close(dk.get_velocity(x0, eps, t, schedule, backend="triton"),
                 reference.velocity(to_reference(x0), t, schedule.alpha_bars, to_reference(eps)))


def test_v_target_gradients(device, schedule):
    x0 = torch.randn(2, 3, 5, device=device, requires_grad=True)
    noise = torch.randn(2, 3, 5, device=device, requires_grad=True)
    t = torch.tensor([10, 700])
    g_x, g_v = torch.randn(2, 3, 5, device=device), torch.randn(2, 3, 5, device=device)
    x_t, v = dk.q_sample(x0, t, schedule, noise, return_v=True, backend="triton")
    fused = torch.autograd.grad((x_t * g_x).sum() + (v * g_v).sum(), (x0, noise), retain_graph=True)
    only_v = torch.autograd.grad((v * g_v).sum(), (x0, noise))
    x0r, nr = (to_reference(x).requires_grad_(True) for x in (x0, noise))
    xr = reference.q_sample(x0r, t, schedule.alpha_bars, nr)
    vr = reference.velocity(x0r, t, schedule.alpha_bars, nr)
    ref = torch.autograd.grad((xr * to_reference(g_x)).sum() + (vr * to_reference(g_v)).sum(), (x0r, nr),
                              retain_graph=True)
    ref_v = torch.autograd.grad((vr * to_reference(g_v)).sum(), (x0r, nr))
    for a, b in zip(fused + only_v, ref + ref_v):
        assert_close(a, b)


@pytest.mark.parametrize("dtype", KERNEL_DTYPES, ids=str)
@pytest.mark.parametrize("sigma", [0.3, "per_sample", "per_frame"])
def test_flow_matching(device, dtype, sigma):
    x0 = torch.randn(4, 3, 10, device=device, dtype=dtype)
    noise = torch.randn_like(x0)
    sigma = {"per_sample": torch.tensor([0.0, 0.25, 0.9, 1.0]), "per_frame": torch.rand(4, 3)}.get(sigma, sigma)
    x_s, v = dk.flow_match_sample(x0, sigma, noise, return_v=True, backend="triton")
    assert_close(x_s, reference.flow_match_sample(to_reference(x0), sigma, to_reference(noise)))
    assert_close(v, to_reference(noise) - to_reference(x0))


def test_flow_matching_gradient_to_sigma(device):
    x0 = torch.randn(3, 11, device=device)
    noise = torch.randn_like(x0)
    sigma = torch.tensor([0.1, 0.5, 0.9], dtype=torch.float64, requires_grad=True)
    g = torch.randn_like(x0)
    (grad,) = torch.autograd.grad((dk.flow_match_sample(x0, sigma, noise, backend="triton") * g).sum(), sigma)
    sigma_r = sigma.detach().clone().requires_grad_(True)
    ref = reference.flow_match_sample(to_reference(x0), sigma_r, to_reference(noise))
    (grad_r,) = torch.autograd.grad((ref * to_reference(g)).sum(), sigma_r)
    # Per-sigma sums of 11 float32 products.
    torch.testing.assert_close(grad, grad_r, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("dtype", KERNEL_DTYPES, ids=str)
def test_edm(device, dtype):
    x0 = torch.randn(3, 2, 7, device=device, dtype=dtype)
    sigma = torch.tensor([0.002, 1.0, 80.0])
    x_s, eps = dk.edm_sample(x0, sigma, seed=1, return_noise=True, backend="triton")
    eps64 = reference.philox_normal(1, x0.shape, dtype=torch.float64)
    assert_close(x_s, reference.edm_sample(to_reference(x0), sigma, eps64))
    assert_close(eps, eps64)


def test_sigma_range_errors(device):
    x0 = torch.zeros(2, 3, device=device)
    with pytest.raises(ValueError, match=r"flow matching needs sigma \[0.0, 1.0\]"):
        dk.flow_match_sample(x0, torch.tensor([0.5, 1.5]))
    with pytest.raises(ValueError, match="EDM needs sigma >= 0"):
        dk.edm_sample(x0, -1.0)
    with pytest.raises(TypeError, match="sigma must be a float"):
        dk.edm_sample(x0, torch.tensor([1, 2]))
    with pytest.raises(ValueError, match=r"sigma of shape \(3,\) does not fit"):
        dk.edm_sample(x0, torch.ones(3))


def test_offset_noise_is_one_normal_per_row(device, schedule):
    x0 = torch.zeros(4, 3, 8, 8, device=device)
    t = torch.full((4, 3), 999)  # per-channel rows: (B, C) offsets, as in offset-noise training
    _, eps = dk.q_sample(x0, t, schedule, seed=11, offset_noise=0.5, return_noise=True, backend="triton")
    plain = reference.philox_normal(11, x0.shape)
    offsets = reference.philox_normal(11, (4, 3), step=reference.OFFSET_STEP)
    assert_noise_close(eps.cpu(), plain + 0.5 * offsets[..., None, None])
    ref = dk.q_sample(x0.cpu(), t, schedule, seed=11, offset_noise=0.5, return_noise=True, backend="reference")[1]
    assert_noise_close(eps.cpu(), ref)


@pytest.mark.parametrize("dtype", KERNEL_DTYPES, ids=str)
@pytest.mark.parametrize("reduction", ["mean", "sum"])
@pytest.mark.parametrize("offset", [0.0, 0.1])
def test_noise_mse_equals_unfused_loss(device, schedule, dtype, reduction, offset):
    x0 = torch.randn(3, 4, 6, 5, device=device, dtype=dtype)
    t = torch.tensor([5, 500, 995])
    x_t, handle = dk.q_sample(x0, t, schedule, return_noise="seed", offset_noise=offset, backend="triton")
    x_t2, eps = dk.q_sample(x0, t, schedule, seed=handle.seed, offset_noise=offset, return_noise=True,
                            backend="triton")
    assert torch.equal(x_t, x_t2)
    pred = torch.randn(x0.shape, device=device).to(dtype).requires_grad_(True)
    loss = dk.noise_mse(pred, handle, reduction=reduction)
    (grad,) = torch.autograd.grad(loss * 3.0, pred)
    pred64 = to_reference(pred).requires_grad_(True)
    # ε as the kernel drew it in float32 (the stored eps is rounded to the I/O dtype).
    eps64 = to_reference(handle.materialize(torch.float32))
    ref = F.mse_loss(pred64, eps64, reduction=reduction)
    (grad_ref,) = torch.autograd.grad(ref * 3.0, pred64)
    assert loss.dtype == torch.float32
    torch.testing.assert_close(to_reference(loss), ref, rtol=1e-5, atol=1e-6)  # a float32 sum of ~360 terms
    assert_close(grad, grad_ref)
    if dtype == torch.float32:
        torch.testing.assert_close(loss, F.mse_loss(pred.detach(), eps, reduction=reduction), rtol=1e-5, atol=1e-6)


def test_noise_mse_rejects_a_tensor_and_a_wrong_shape(device, schedule):
    x0 = torch.zeros(2, 4, device=device)
    _, handle = dk.q_sample(x0, 3, schedule, return_noise="seed", backend="triton")
    with pytest.raises(TypeError, match="NoiseHandle"):
        dk.noise_mse(x0, torch.zeros_like(x0))
    with pytest.raises(ValueError, match=r"prediction has shape \(4, 2\)"):
        dk.noise_mse(torch.zeros(4, 2, device=device), handle)
    with pytest.raises(ValueError, match="cannot be used with a given noise"):
        dk.q_sample(x0, 3, schedule, torch.zeros_like(x0), return_noise="seed")


def test_sigma_that_is_nan_or_infinite_is_refused(device):
    x0 = torch.zeros(2, 3, device=device)
    with pytest.raises(ValueError, match="flow matching needs sigma"):
        dk.flow_match_sample(x0, torch.tensor([0.5, float("nan")]))
    with pytest.raises(ValueError, match=r"EDM needs sigma >= 0\.0 and finite in float32"):
        dk.edm_sample(x0, torch.tensor([1.0, float("inf")]))


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="a GPU sigma is checked on the device: needs CUDA")
def test_gpu_sigma_is_checked_without_a_host_sync():
    x0 = torch.randn(4, 3, 8, 8, device="cuda")
    sigma = torch.rand(4, device="cuda")
    dk.flow_match_sample(x0, sigma, seed=0)  # compile first
    torch.cuda.set_sync_debug_mode("error")
    try:
        x_s, eps = dk.flow_match_sample(x0, sigma, seed=1, return_noise=True)
    finally:
        torch.cuda.set_sync_debug_mode("default")
    s = sigma.view(4, 1, 1, 1)
    torch.testing.assert_close(x_s, (1 - s) * x0 + s * eps, rtol=1e-5, atol=1e-5)
