"""Bad input gets a clear error naming what was wrong."""
import numpy as np
import pytest
import torch

import diffusion_kernels as dk


@pytest.fixture(params=["triton", "reference"])
def backend(request, device):
    return request.param


def call(backend, x0, t, schedule, noise=None, **kw):
    return dk.q_sample(x0, t, schedule, noise, backend=backend, **kw)


@pytest.mark.parametrize("t", [1000, -1, torch.tensor([0, 1000]), torch.tensor([[5, -3], [1, 2]])])
def test_t_out_of_range(device, backend, schedule, t):
    x0 = torch.randn(2, 2, 4, device=device)
    with pytest.raises(ValueError, match=r"outside \[0, T\).*T=1000"):
        call(backend, x0, t, schedule)


def test_t_out_of_range_names_the_value(device, backend, schedule):
    with pytest.raises(ValueError, match="contains 1234"):
        call(backend, torch.randn(2, 3, device=device), torch.tensor([5, 1234]), schedule)


@pytest.mark.parametrize("t", [torch.tensor([0.0, 1.0]), torch.tensor(3.0), 2.5, torch.tensor([True, False])])
def test_t_of_float_or_bool_dtype(device, backend, schedule, t):
    with pytest.raises(TypeError, match="t must"):
        call(backend, torch.randn(2, 3, device=device), t, schedule)


@pytest.mark.parametrize("t_shape", [(3,), (2, 4), (1,), (2, 3, 5, 1)])
def test_t_shape_fits_neither_form(device, backend, schedule, t_shape):
    x0 = torch.randn(2, 3, 5, device=device)
    with pytest.raises(ValueError, match=r"t of shape \(.*\) does not fit x0 of shape \(2, 3, 5\)"):
        call(backend, x0, torch.zeros(t_shape, dtype=torch.long), schedule)


@pytest.mark.parametrize("dtype", [torch.int32, torch.int64, torch.uint8, torch.bool])
def test_integer_or_bool_x0(device, backend, schedule, dtype):
    with pytest.raises(TypeError, match="x0 must be float16, bfloat16, float32 or float64"):
        call(backend, torch.zeros(2, 3, dtype=dtype, device=device), 0, schedule)


def test_noise_shape_mismatch(device, backend, schedule):
    with pytest.raises(ValueError, match=r"noise has shape \(2, 4\) but x0 has shape \(2, 3\)"):
        call(backend, torch.randn(2, 3, device=device), 0, schedule, torch.randn(2, 4, device=device))


def test_noise_on_another_device(device, backend, schedule):
    x0 = torch.randn(2, 3, device=device)
    with pytest.raises(ValueError, match=rf"noise is on meta but x0 is on {x0.device}"):
        call(backend, x0, 0, schedule, torch.empty(2, 3, device="meta"))


def test_t_as_a_numpy_array(device, backend, schedule):
    with pytest.raises(TypeError, match=r"t must be an int or an integer tensor, got ndarray \(torch.as_tensor"):
        call(backend, torch.randn(2, 3, device=device), np.array([1, 2]), schedule)


@pytest.mark.parametrize("bad", [1.5, -0.25, float("nan")])
def test_alpha_bars_outside_zero_one(device, backend, bad):
    alpha_bars = torch.tensor([0.99, bad, 0.5], dtype=torch.float64)
    with pytest.raises(ValueError, match=rf"alpha_bars must lie in \[0.0, 1.0\]; got {bad}"):
        call(backend, torch.randn(2, 3, device=device), 0, alpha_bars)
    with pytest.raises(ValueError, match="alpha_bars must lie in"):
        dk.forward_step(torch.randn(2, 3, device=device), 0, alpha_bars, backend=backend)


def test_alpha_bars_are_checked_again_after_an_in_place_change(device, backend):
    """A learned ᾱ changes in place at every optimizer step: its new values are checked."""
    alpha_bars = torch.tensor([0.99, 0.7, 0.5], dtype=torch.float64)
    x0 = torch.randn(2, 3, device=device)
    call(backend, x0, 1, alpha_bars)
    alpha_bars[2] = 1.25
    with pytest.raises(ValueError, match="got 1.25"):
        call(backend, x0, 1, alpha_bars)


def test_schedule_of_wrong_type(device, backend):
    with pytest.raises(TypeError, match="schedule must be a NoiseSchedule or a 1-D alpha_bars tensor"):
        call(backend, torch.randn(2, 3, device=device), 0, [0.9, 0.8])


def test_seed_out_of_range(device, backend, schedule):
    with pytest.raises(ValueError, match=r"seed must lie in \[0, 2\*\*64\)"):
        call(backend, torch.randn(2, 3, device=device), 0, schedule, seed=-1)


@pytest.mark.parametrize("stream,error,message", [(-1, ValueError, r"stream must lie in \[0, 2\*\*32\), got -1"),
                                                   (2**32, ValueError, r"stream must lie in \[0, 2\*\*32\)"),
                                                   (1.5, TypeError, "stream must be an int, got float"),
                                                   (True, TypeError, "stream must be an int, got bool")])
def test_stream_out_of_range_or_not_an_int(device, backend, schedule, stream, error, message):
    with pytest.raises(error, match=message):
        call(backend, torch.randn(2, 3, device=device), 0, schedule, stream=stream)


def test_unknown_backend(schedule):
    with pytest.raises(ValueError, match="backend must be one of"):
        dk.q_sample(torch.randn(2), 0, schedule, backend="cuda")


def test_triton_backend_refuses_float64(device, schedule):
    with pytest.raises(TypeError, match="float64 runs on backend='reference'"):
        dk.q_sample(torch.randn(2, dtype=torch.float64, device=device), 0, schedule, backend="triton")


@pytest.mark.skipif(torch.cuda.device_count() < 2, reason="needs two CUDA devices")
def test_tensors_on_two_gpus(schedule):
    with pytest.raises(ValueError, match="different GPUs"):
        dk.q_sample(torch.randn(2, 3, device="cuda:0"), 0, schedule, torch.randn(2, 3, device="cuda:1"))


def test_two_gpu_check_on_device_objects():
    """The device check itself, on device objects (runs without any GPU)."""
    from diffusion_kernels.checks import check_device_set

    with pytest.raises(ValueError, match=r"different GPUs: \['cuda:0', 'cuda:1'\]"):
        check_device_set([torch.device("cuda:1"), torch.device("cpu"), torch.device("cuda:0")])
    check_device_set([torch.device("cuda:0"), torch.device("cuda:0"), torch.device("cpu")])


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="a GPU t is range-checked by the kernel: needs CUDA")
def test_gpu_t_is_checked_without_a_host_sync(schedule):
    x0 = torch.randn(4, 3, 8, 8, device="cuda")
    t = torch.tensor([0, 10, 500, 999], device="cuda")
    dk.q_sample(x0, t, schedule, seed=0)  # compile and cache the tables first
    torch.cuda.set_sync_debug_mode("error")  # any host sync now raises
    try:
        x_t, eps = dk.q_sample(x0, t, schedule, seed=1, return_noise=True)
    finally:
        torch.cuda.set_sync_debug_mode("default")
    torch.testing.assert_close(x_t, dk.q_sample(x0, t, schedule, eps, backend="reference"), rtol=1e-5, atol=1e-5)


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="a GPU alpha_bars is checked on the device: needs CUDA")
def test_gpu_alpha_bars_are_checked_without_a_host_sync(schedule):
    x0 = torch.randn(4, 3, 8, device="cuda")
    alpha_bars = schedule.alpha_bars.to("cuda").requires_grad_(True)
    t = torch.tensor([0, 10, 500, 999], device="cuda")
    dk.q_sample(x0, t, alpha_bars, seed=0)  # compile first
    with torch.no_grad():
        alpha_bars.mul_(0.999)  # an optimizer step: new values, checked again
    torch.cuda.set_sync_debug_mode("error")  # any host sync now raises
    try:
        x_t = dk.q_sample(x0, t, alpha_bars, seed=1)
    finally:
        torch.cuda.set_sync_debug_mode("default")
    assert x_t.requires_grad and bool(torch.isfinite(x_t).all())


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="a GPU t is range-checked by the kernel: needs CUDA")
def test_gpu_t_out_of_range_stops_with_a_device_assert():
    """Like PyTorch's own indexing: a device-side assert, which ends the CUDA context, so in its own process."""
    import subprocess
    import sys

    code = ("import torch, diffusion_kernels as dk\n"
            "x0 = torch.randn(2, 8, device='cuda')\n"
            "dk.q_sample(x0, torch.tensor([3, 1000], device='cuda'), dk.NoiseSchedule.linear(), seed=0)\n"
            "torch.cuda.synchronize()\n")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=600)
    output = result.stdout + result.stderr
    assert result.returncode != 0, output
    assert "device-side assert" in output or "t outside [0, T) of the schedule" in output, output[-2000:]
