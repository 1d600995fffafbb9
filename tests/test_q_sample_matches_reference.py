"""The fused kernel, given ε, equals the float64 textbook formula to the I/O dtype's rounding."""
import pytest
import torch
from cases import KERNEL_DTYPES, T_FORMS, make_t, make_x0, shape_params
from tolerances import assert_close, to_reference

import diffusion_kernels as dk
from diffusion_kernels import reference


SHAPE_T_FORMS = [pytest.param(p.values[0], p.values[1], form, id=f"{p.id}-{form}")
                 for p in shape_params() for form in T_FORMS
                 if not (form == "per_frame" and len(p.values[0]) < 2)]  # (B, F) needs two dims


@pytest.mark.parametrize("dtype", KERNEL_DTYPES, ids=str)
@pytest.mark.parametrize("shape,layout,t_form", SHAPE_T_FORMS)
def test_given_noise_matches_float64_reference(device, schedule, dtype, shape, layout, t_form):
    g = torch.Generator().manual_seed(hash((shape, layout, t_form)) % 2**31)
    t = make_t(t_form, shape, schedule.T, g)
    x0 = make_x0(shape, layout, dtype, device, g)
    noise = make_x0(shape, "contiguous", dtype, device, g)
    x_t = dk.q_sample(x0, t, schedule, noise, backend="triton")
    expected = reference.q_sample(to_reference(x0), t, schedule.alpha_bars, to_reference(noise))
    assert x_t.dtype == dtype and x_t.shape == x0.shape and x_t.device == x0.device
    assert_close(x_t, expected)


@pytest.mark.parametrize("dtype", KERNEL_DTYPES, ids=str)
def test_drawn_noise_returned_is_the_noise_used(device, schedule, dtype):
    x0 = torch.randn(3, 4, 17, device=device, dtype=dtype)
    t = torch.tensor([0, 400, 999])
    x_t, eps = dk.q_sample(x0, t, schedule, seed=5, return_noise=True, backend="triton")
    stream = reference.philox_normal(5, x0.shape, dtype=torch.float64)
    # x_t is built from the float32 ε; the returned ε is that value rounded once to the I/O dtype.
    assert eps.dtype == dtype
    assert_close(eps, stream)
    assert_close(x_t, reference.q_sample(to_reference(x0), t, schedule.alpha_bars, stream))


def test_channels_last_input_gives_channels_last_output(device, schedule):
    x0 = torch.randn(2, 3, 6, 5, device=device).to(memory_format=torch.channels_last)
    x_t, eps = dk.q_sample(x0, torch.tensor([3, 700]), schedule, seed=1, return_noise=True, backend="triton")
    assert x_t.is_contiguous(memory_format=torch.channels_last)
    assert eps.is_contiguous(memory_format=torch.channels_last)


def test_t_on_cpu_with_x0_on_device(device, schedule):
    x0 = torch.randn(4, 10, device=device)
    noise = torch.randn_like(x0)
    t = torch.tensor([1, 2, 3, 999], device="cpu")
    x_t = dk.q_sample(x0, t, schedule, noise, backend="triton")
    assert_close(x_t, reference.q_sample(to_reference(x0), t, schedule.alpha_bars, to_reference(noise)))


@pytest.mark.parametrize("name", ["linear", "cosine", "scaled_linear", "sigmoid"])
def test_every_schedule_and_a_raw_alpha_bar_tensor(device, name):
    sched = getattr(dk.NoiseSchedule, name)()
    x0 = torch.randn(5, 33, device=device)
    noise = torch.randn_like(x0)
    t = torch.tensor([0, 1, 500, 998, 999])
    expected = reference.q_sample(to_reference(x0), t, sched.alpha_bars, to_reference(noise))
    assert_close(dk.q_sample(x0, t, sched, noise, backend="triton"), expected)
    assert_close(dk.q_sample(x0, t, sched.alpha_bars, noise, backend="triton"), expected)


def test_zero_terminal_snr_gives_pure_noise_at_the_last_step(device):
    sched = dk.NoiseSchedule.linear().rescale_zero_terminal_snr()
    x0 = torch.randn(2, 50, device=device)
    noise = torch.randn_like(x0)
    x_t = dk.q_sample(x0, 999, sched, noise, backend="triton")
    torch.testing.assert_close(x_t, noise, rtol=0, atol=0)


def test_float64_runs_the_reference_path(schedule):
    x0 = torch.randn(3, 8, dtype=torch.float64)
    noise = torch.randn_like(x0)
    x_t = dk.q_sample(x0, torch.tensor([0, 5, 999]), schedule, noise)
    assert x_t.dtype == torch.float64
    assert_close(x_t, reference.q_sample(x0, torch.tensor([0, 5, 999]), schedule.alpha_bars, noise))


@pytest.mark.parametrize("dtype", KERNEL_DTYPES, ids=str)
def test_reference_backend_gives_the_kernel_result_for_a_seed(device, schedule, dtype):
    x0 = torch.randn(3, 5, 11, device=device, dtype=dtype)
    t = torch.tensor([7, 70, 700])
    fused = dk.q_sample(x0, t, schedule, seed=2024, backend="triton")
    ref = dk.q_sample(x0.cpu(), t, schedule, seed=2024, backend="reference")
    # Same Philox integers; the normals differ only by the math library's sin/cos/log rounding.
    assert_close(fused, to_reference(ref), dtype=dtype)


def test_numpy_integer_t(device, schedule):
    np = pytest.importorskip("numpy")
    x0 = torch.randn(2, 6, device=device)
    noise = torch.randn_like(x0)
    torch.testing.assert_close(dk.q_sample(x0, np.int64(321), schedule, noise, backend="triton"),
                               dk.q_sample(x0, 321, schedule, noise, backend="triton"), rtol=0, atol=0)
