"""torch.compile(fullgraph=True) of a training step that noises: no graph break, same numbers as eager."""
import pytest
import torch

import diffusion_kernels as dk

SCHEDULE = dk.NoiseSchedule.linear()


def training_step(x0, t, weight):
    x_t, eps, v = dk.q_sample(x0, t, SCHEDULE, return_noise=True, return_v=True)
    prediction = x_t * weight
    return ((prediction - eps) ** 2).mean() + ((prediction - v) ** 2).mean()


def _compiled_matches_eager(device, backend):
    torch._dynamo.reset()
    x0 = torch.randn(4, 3, 8, 8, device=device)
    t = torch.tensor([1, 2, 500, 999], device=device)
    weight = torch.ones(1, device=device, requires_grad=True)
    compiled = torch.compile(training_step, fullgraph=True, backend=backend)
    torch.manual_seed(0)
    loss = compiled(x0, t, weight)
    (grad,) = torch.autograd.grad(loss, weight)
    torch.manual_seed(0)
    eager_loss = training_step(x0, t, weight)
    (eager_grad,) = torch.autograd.grad(eager_loss, weight)
    torch.testing.assert_close(loss, eager_loss, rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(grad, eager_grad, rtol=1e-5, atol=1e-6)


def test_compiled_step_on_cpu_has_no_graph_break():
    """On CPU a compiled graph takes the reference path (the interpreter cannot be traced)."""
    _compiled_matches_eager("cpu", "aot_eager")


def test_compiled_given_noise_and_seed_forms_on_cpu():
    torch._dynamo.reset()
    x0, noise = torch.randn(2, 5), torch.randn(2, 5)
    fn = torch.compile(lambda x, n: (dk.q_sample(x, torch.tensor([3, 4]), SCHEDULE, n),
                                     dk.q_sample(x, 7, SCHEDULE, seed=9),
                                     dk.flow_match_sample(x, torch.tensor([0.2, 0.7]), n)),
                       fullgraph=True, backend="aot_eager")
    a, b, c = fn(x0, noise)
    torch.testing.assert_close(a, dk.q_sample(x0, torch.tensor([3, 4]), SCHEDULE, noise, backend="reference"))
    torch.testing.assert_close(b, dk.q_sample(x0, 7, SCHEDULE, seed=9, backend="reference"))
    torch.testing.assert_close(c, dk.flow_match_sample(x0, torch.tensor([0.2, 0.7]), noise, backend="reference"))


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="compiling the Triton kernel path needs a CUDA device")
def test_compiled_step_on_gpu_uses_the_kernel_without_graph_break():
    _compiled_matches_eager("cuda", "inductor")


def test_registered_ops_match_the_direct_launchers(device):
    """The triton_op entry points (what torch.compile calls) give the direct launchers' results."""
    from diffusion_kernels import launch

    a, b = SCHEDULE.coefficient_tables(device)
    x0 = torch.randn(3, 17, device=device)
    g = torch.randn_like(x0)
    t = torch.tensor([0, 500, 999], device=device)
    args = (x0, t, a, b, None, None, None, None, 5, 0, 0, 0, 0.0, True, False, 0)
    bargs = (g, None, t, a, b, None, None, x0, None, None, 5, 0, 0, 0, 0.0, torch.float32, None, True, 0)
    for op, direct, call in ((torch.ops.diffusion_kernels.noise_affine, launch.noise_affine, args),
                             (torch.ops.diffusion_kernels.noise_affine_backward, launch.noise_affine_backward, bargs)):
        for op_out, direct_out in zip(op(*call), direct(*call)):
            # What a call did not ask for: None from the launcher, a 0-element tensor from the op (its schema).
            assert op_out.numel() == 0 if direct_out is None else torch.equal(op_out, direct_out)


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="opcheck traces the kernels with wrap_triton: needs CUDA")
def test_opcheck_on_gpu():
    a, b = SCHEDULE.coefficient_tables("cuda")
    x0 = torch.randn(3, 17, device="cuda")
    t = torch.tensor([0, 500, 999], device="cuda")
    torch.library.opcheck(torch.ops.diffusion_kernels.noise_affine.default,
                          (x0, t, a, b, None, None, None, None, 5, 0, 0, 0, 0.0, True, False, 0))


def test_raw_alpha_bar_tables_are_cached_until_modified():
    from diffusion_kernels.api import raw_tables

    ab = SCHEDULE.alpha_bars.float()
    first = raw_tables(ab, "cpu")
    assert raw_tables(ab, "cpu") is first
    ab.mul_(0.5)  # an in-place change bumps the version: the tables are derived again
    again = raw_tables(ab, "cpu")
    assert again is not first and torch.equal(again[0], (ab.double().sqrt()).float())


def test_inference_tensor_alpha_bars_are_derived_and_checked_every_call():
    """An ᾱ made under torch.inference_mode tracks no version: never cached, checked on each call."""
    with torch.inference_mode():
        ab = SCHEDULE.alpha_bars.clone()
        x0 = torch.randn(2, 5)
        noise = torch.randn(2, 5)
        x_t = dk.q_sample(x0, torch.tensor([3, 900]), ab, noise)
        torch.testing.assert_close(x_t, dk.q_sample(x0, torch.tensor([3, 900]), SCHEDULE, noise,
                                                    backend="reference"))
        ab[900] = 2.0
        with pytest.raises(ValueError, match="got 2.0"):
            dk.q_sample(x0, torch.tensor([3, 900]), ab, noise)


def test_guided_mixin_compiles_fullgraph_with_a_first_call_inside_the_graph():
    """The mixin's tables are made in __init__, so a first call inside torch.compile traces no numpy,
    and the posterior's t range check reads no data there."""
    import numpy as np

    from diffusion_kernels.integrations.guided_diffusion import GaussianDiffusionForward

    torch._dynamo.reset()
    diffusion = GaussianDiffusionForward(np.linspace(1e-4, 0.02, 1000))
    x0, noise = torch.randn(3, 2, 4, 4), torch.randn(3, 2, 4, 4)
    t = torch.tensor([0, 400, 999])
    compiled = torch.compile(lambda x, n: (diffusion.q_sample(x, t, n), *diffusion.q_mean_variance(x, t),
                                           *diffusion.q_posterior_mean_variance(x, n, t)),
                             fullgraph=True, backend="aot_eager")
    got = compiled(x0, noise)
    expected = (diffusion.q_sample(x0, t, noise), *diffusion.q_mean_variance(x0, t),
                *diffusion.q_posterior_mean_variance(x0, noise, t))
    for a, b in zip(got, expected):
        torch.testing.assert_close(a, b)
