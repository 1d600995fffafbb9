"""Debug-mode launches: the kernel's own t check, and no false overflow assertions.

A launch compiled with ``debug=True`` (what q_sample asks for when t lives on
the GPU) turns the kernels' ``tl.device_assert``s on, and Triton's debug mode
(TRITON_DEBUG=1) also checks every int32 add, subtract and multiply for
overflow. On CPU, Triton's interpreter runs the same assertions when its
options say debug, which these tests switch on.
"""
import pytest
import torch

from triton.runtime.errors import InterpreterError

import diffusion_kernels as dk
from diffusion_kernels.dispatch import interpreter_active
from diffusion_kernels.noising import launcher as noising_launcher


@pytest.fixture
def interpreter_debug(monkeypatch):
    """The interpreter with debug on and the overflow sanitiser as TRITON_DEBUG=1 sets it."""
    if not interpreter_active():
        pytest.skip("switches the interpreter's debug mode; on a GPU, test_bad_input runs the device assert")
    from triton.runtime import interpreter

    builder = interpreter.interpreter_builder
    if not hasattr(builder, "options") or not hasattr(builder.options, "sanitize_overflow"):
        pytest.skip("this Triton's interpreter has no debug options to switch")
    monkeypatch.setattr(builder, "options", type(builder.options)(debug=True, sanitize_overflow=True))


def _launch_with_t(t, T: int = 1000):
    a = torch.ones(T)
    return noising_launcher.forward(torch.randn(2, 8), torch.tensor(t), a, a, None, None, None, None, 1, 0, 0, 0, 0.0,
                               False, False, 0, check_t=True)


@pytest.mark.parametrize("t", [[0, 999], [999, 0]])
def test_kernel_t_check_accepts_the_whole_schedule(interpreter_debug, t):
    out, _, _ = _launch_with_t(t)
    assert out.shape == (2, 8)


@pytest.mark.parametrize("t", [[3, 1000], [-1, 0], [0, 2**40]])
def test_kernel_t_check_stops_outside_the_schedule(interpreter_debug, t):
    with pytest.raises(InterpreterError, match=r"t outside \[0, T\) of the schedule"):
        _launch_with_t(t)


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16], ids=str)
@pytest.mark.parametrize("layout", ["contiguous", "channels_last", "sliced"])
def test_debug_mode_raises_no_false_overflow_assertion(interpreter_debug, schedule, dtype, layout):
    """Every kernel family in debug mode: Philox's wrapping key schedule, the magic-number division
    and the strided index arithmetic must not trip the int32 overflow checks."""
    x0 = torch.randn(3, 4, 6, 20)
    x0 = {"contiguous": x0, "channels_last": x0.to(memory_format=torch.channels_last),
          "sliced": x0[:, :, :, ::2]}[layout].to(dtype)
    ab = schedule.alpha_bars.clone().requires_grad_(True)
    x_t, handle = dk.q_sample(x0, torch.tensor([0, 5, 999]), ab, return_noise="seed", offset_noise=0.1,
                              backend="triton")
    (g_ab,) = torch.autograd.grad(x_t.float().sum(), ab)
    pred = torch.randn(x0.shape).to(dtype).requires_grad_(True)
    (g_pred,) = torch.autograd.grad(dk.noise_mse(pred, handle, backend="triton"), pred)
    table = ab.detach().float()
    _, eps = noising_launcher.q_sample_forward(x0.reshape(-1)[:37].float(), torch.zeros(1, dtype=torch.int64), table,
                                               table, seed=2**64 - 1, write_noise=True, elem_offset=2**40 + 3)
    x_end = dk.forward_trajectory(x0.float(), dk.NoiseSchedule.cosine(T=8), 7, seed=3, backend="triton")
    for value in (x_t, g_ab, g_pred, eps, x_end):
        assert torch.isfinite(value.float()).all()
