"""The cpu backend: the compiled CPU loop draws the kernels' stream (Philox integers bit for bit, normals
within NOISE_ATOL), and every noising call on it gives the reference's numbers, with autograd."""
import re
import subprocess
import sys

import pytest
import torch
import torch.nn.functional as F
from cases import KERNEL_DTYPES, T_FORMS, make_t, make_x0, run_in_threads, shape_params
from tolerances import assert_close, assert_noise_close, to_reference

import diffusion_kernels as dk
from diffusion_kernels import dispatch, cpu_noise, reference

pytestmark = pytest.mark.skipif(not cpu_noise.available(), reason="the cpu backend needs numba (the [cpu] extra)")

COUNTERS = [(0, 0, 0), (2**32 - 3, 0, 5), (2**40 + 7, 3, 2**32 - 1), (123_456_789, 2**31, 7)]


@pytest.mark.parametrize("first_quad,stream,step", COUNTERS)
@pytest.mark.parametrize("seed", [0, 1, 2**63 + 12345, 2**64 - 1])
def test_philox_words_are_the_references_bit_for_bit(seed, first_quad, stream, step):
    words = cpu_noise.philox_words(seed, first_quad, 37, stream=stream, step=step)
    quads = torch.arange(first_quad, first_quad + 37, dtype=torch.int64)
    k0, k1 = seed & 0xFFFFFFFF, seed >> 32
    expected = reference.philox4x32(quads & 0xFFFFFFFF, quads >> 32, torch.full_like(quads, stream),
                                    torch.full_like(quads, step), k0, k1)
    for lane in range(4):
        assert torch.equal(torch.from_numpy(words[:, lane].astype("int64")), expected[lane])


@pytest.mark.parametrize("offset", [0, 1, 3, 4, 2**33 + 2])
@pytest.mark.parametrize("shape", [(1,), (3, 101), (0, 4), (2, 3, 5, 7)])
def test_normals_are_the_reference_stream(shape, offset):
    eps = cpu_noise.philox_normal(11, shape, stream=4, step=9, offset=offset)
    assert eps.shape == torch.Size(shape) and eps.dtype == torch.float32
    assert_noise_close(eps, reference.philox_normal(11, shape, stream=4, step=9, offset=offset))


@pytest.mark.parametrize("t_form", T_FORMS)
@pytest.mark.parametrize("shape,layout", shape_params())
@pytest.mark.parametrize("dtype", KERNEL_DTYPES + [torch.float64], ids=str)
def test_q_sample_on_the_cpu_backend_matches_the_reference(dtype, shape, layout, t_form, schedule):
    gen = torch.Generator().manual_seed(hash((shape, layout, t_form)) % 2**31)
    x0 = make_x0(shape, layout, dtype, "cpu", gen)
    t = make_t(t_form, shape, schedule.T, gen)
    if t is None:
        pytest.skip(f"t form {t_form} needs more dimensions than {shape}")
    x_t, eps = dk.q_sample(x0, t, schedule, seed=5, return_noise=True, backend="cpu")
    assert x_t.dtype == dtype and eps.dtype == dtype and x_t.shape == x0.shape
    assert_noise_close(eps.float() if dtype != torch.float64 else eps,
                       reference.philox_normal(5, shape).to(eps.dtype))
    # Against the formula on the float32 normals the call used (ε is returned rounded to the I/O dtype).
    drawn = cpu_noise.philox_normal(5, shape)
    assert_close(x_t, reference.q_sample(to_reference(x0), t, schedule.alpha_bars, to_reference(drawn)), dtype)
    # x_t alone, offset noise and v come from the same stream.
    assert torch.equal(dk.q_sample(x0, t, schedule, seed=5, backend="cpu"), x_t)


def test_offset_noise_and_v_match_the_reference(schedule):
    x0 = torch.randn(3, 4, 9)
    t = torch.tensor([[1, 2, 3, 4], [500, 600, 700, 800], [999, 998, 0, 1]])
    x_t, eps, v = dk.q_sample(x0, t, schedule, seed=8, return_noise=True, return_v=True, offset_noise=0.3,
                              backend="cpu")
    eps_ref = reference.drawn_noise(8, x0.shape, t.shape, offset_strength=0.3)
    assert_noise_close(eps, eps_ref)
    assert_close(x_t, reference.q_sample(to_reference(x0), t, schedule.alpha_bars, to_reference(eps)))
    assert_close(v, reference.velocity(to_reference(x0), t, schedule.alpha_bars, to_reference(eps)))
    fused = dk.q_sample(x0, t, schedule, seed=8, offset_noise=0.3, backend="cpu")  # the one-pass loop
    assert_close(fused, to_reference(x_t))


def test_gradients_flow_through_the_cpu_backend(schedule):
    x0 = torch.randn(4, 3, 6, requires_grad=True)
    ab = schedule.alpha_bars.clone().requires_grad_(True)
    t = torch.tensor([0, 10, 500, 999])
    x_t, eps = dk.q_sample(x0, t, ab, seed=2, return_noise=True, backend="cpu")
    g = torch.randn_like(x_t)
    gx, gab = torch.autograd.grad(x_t, (x0, ab), g)
    x_r = reference.q_sample(x0, t, ab, eps)
    gx_r, gab_r = torch.autograd.grad(x_r, (x0, ab), g)
    torch.testing.assert_close(gx, gx_r)
    torch.testing.assert_close(gab, gab_r)


def test_forms_steps_and_losses_on_the_cpu_backend(schedule):
    x0 = torch.randn(2, 3, 17)
    sigma = torch.tensor([0.1, 0.9])
    for call, ref in (
            (lambda: dk.flow_match_sample(x0, sigma, seed=3, return_noise=True, backend="cpu"),
             lambda eps: reference.flow_match_sample(x0, sigma, eps)),
            (lambda: dk.edm_sample(x0, sigma * 10, seed=3, return_noise=True, backend="cpu"),
             lambda eps: reference.edm_sample(x0, sigma * 10, eps)),
            (lambda: dk.forward_step(x0, torch.tensor([3, 700]), schedule, seed=3, return_noise=True,
                                     backend="cpu"),
             lambda eps: reference.forward_step(x0, torch.tensor([3, 700]), schedule.alphas, eps))):
        out, eps = call()
        assert_noise_close(eps, reference.philox_normal(3, x0.shape))
        assert_close(out, ref(eps))
    x_t, handle = dk.q_sample(x0, torch.tensor([5, 50]), schedule, seed=4, return_noise="seed", backend="cpu")
    pred = torch.randn_like(x0)
    loss = dk.noise_mse(pred, handle, backend="cpu")
    torch.testing.assert_close(loss, F.mse_loss(pred, reference.philox_normal(4, x0.shape)), rtol=1e-5, atol=1e-6)
    short = dk.NoiseSchedule.cosine(T=12)
    x_end = dk.forward_trajectory(x0, short, 11, seed=6, backend="cpu")
    ref_end, _ = reference.forward_trajectory(x0, short.alphas, 11, seed=6)
    torch.testing.assert_close(x_end, ref_end, rtol=1e-5, atol=1e-5 * 12)


def test_auto_takes_the_cpu_backend_outside_the_interpreter():
    script = ("import torch, diffusion_kernels as dk; from diffusion_kernels import dispatch; "
              "x = torch.randn(3, 4); print(dispatch.select('auto', x), dispatch.select('auto', x.double()))")
    env = {"TRITON_INTERPRET": "0", "PATH": ""}
    run = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, env=env)
    assert run.stdout.split() == ["cpu", "cpu"], run.stderr


def test_without_numba_the_cpu_backend_names_its_extra(monkeypatch):
    monkeypatch.setattr(dispatch, "cpu_available", lambda: False)
    from diffusion_kernels.install import extra_line

    # The line that installs the extra for how this copy was installed (a checkout, a wheel or an index).
    with pytest.raises(RuntimeError, match=re.escape(f"needs numba: {extra_line('cpu')}")):
        dk.q_sample(torch.randn(3), 1, dk.NoiseSchedule.linear(), seed=1, backend="cpu")
    assert dispatch.select("auto", torch.randn(3)) in ("triton", "reference")


def test_the_cpu_backend_refuses_other_devices():
    with pytest.raises(RuntimeError, match="backend='cpu' runs on CPU tensors"):
        dispatch.select("cpu", torch.empty(2, device="meta"))


@pytest.mark.parametrize("shape", [(3, 5, 7), (3, 23_457)], ids=["one_thread", "threads"])
@pytest.mark.parametrize("offset_noise", [0.0, 0.2])
def test_the_one_pass_loops_match_the_reference_on_one_thread_and_many(shape, offset_noise, schedule):
    """Below cpu_noise.SERIAL_BELOW elements one thread runs each loop, above it numba's threads do; rows
    whose length is not a multiple of 4 share a quad at their boundary."""
    x0 = torch.randn(shape)
    t = torch.tensor([3, 500, 999])
    x_t, eps = dk.q_sample(x0, t, schedule, seed=9, return_noise=True, offset_noise=offset_noise, backend="cpu")
    eps_ref = reference.drawn_noise(9, shape, (3,), offset_strength=offset_noise)
    assert_noise_close(eps, eps_ref)
    assert_close(x_t, reference.q_sample(to_reference(x0), t, schedule.alpha_bars, to_reference(eps)))
    _, handle = dk.q_sample(x0, t, schedule, seed=9, return_noise="seed", offset_noise=offset_noise,
                            backend="cpu")
    pred = torch.randn(shape, requires_grad=True)
    for reduction in ("mean", "sum"):
        loss = dk.noise_mse(pred, handle, reduction=reduction, backend="cpu")
        (grad,) = torch.autograd.grad(loss, pred)
        pred_r = to_reference(pred).requires_grad_(True)
        loss_r = F.mse_loss(pred_r, to_reference(eps), reduction=reduction)  # the ε the loops draw
        (grad_r,) = torch.autograd.grad(loss_r, pred_r)
        torch.testing.assert_close(to_reference(loss), loss_r, rtol=1e-5, atol=1e-6)
        torch.testing.assert_close(to_reference(grad), grad_r, rtol=1e-5, atol=1e-6)


def test_the_loops_give_the_same_bits_on_every_run(schedule):
    x0 = torch.randn(3, 30_001)
    t = torch.tensor([1, 2, 3])
    first = dk.q_sample(x0, t, schedule, seed=4, backend="cpu")
    _, handle = dk.q_sample(x0, t, schedule, seed=4, return_noise="seed", backend="cpu")
    losses = {float(dk.noise_mse(x0, handle, backend="cpu")) for _ in range(3)}
    assert torch.equal(first, dk.q_sample(x0, t, schedule, seed=4, backend="cpu")) and len(losses) == 1


def test_calls_from_many_threads_give_each_its_own_numbers(schedule):
    """numba's parallel loops are entered by one Python thread at a time; every caller gets what a
    call alone gives (sizes above SERIAL_BELOW, so the threaded loops run)."""
    x0 = torch.randn(4, 40_000)
    t = torch.tensor([1, 200, 600, 999])
    expected = {seed: dk.q_sample(x0, t, schedule, seed=seed, backend="cpu") for seed in range(6)}
    results = {}

    def work(seed):
        results[seed] = dk.q_sample(x0, t, schedule, seed=seed, backend="cpu")

    assert run_in_threads(work, 6) == []
    assert all(torch.equal(results[seed], expected[seed]) for seed in range(6))
