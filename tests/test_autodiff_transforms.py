"""Forward-mode AD, double backward and torch.func transforms either work, with the same numbers,
or are refused naming the transform; and the registered ops pass torch.library.opcheck, dynamic
shapes included, on CPU through the interpreter as on a GPU."""
import pytest
import torch
import torch.autograd.forward_ad as fwAD

import diffusion_kernels as dk

SCHEDULE = dk.NoiseSchedule.linear()
T_ROWS = torch.tensor([1, 50, 500, 999])


def _sqrt_ab(device):
    return SCHEDULE.alpha_bars.sqrt()[T_ROWS].float().reshape(4, 1).to(device)


def test_forward_mode_ad_gives_the_tangent(device):
    x0 = torch.randn(4, 6, device=device)
    tangent = torch.randn_like(x0)
    with fwAD.dual_level():
        out = dk.q_sample(fwAD.make_dual(x0, tangent), T_ROWS, SCHEDULE, seed=7)
        primal, out_tangent = fwAD.unpack_dual(out)
    torch.testing.assert_close(primal, dk.q_sample(x0, T_ROWS, SCHEDULE, seed=7), atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(out_tangent, _sqrt_ab(device) * tangent)


def test_forward_mode_ad_refused_by_name_on_the_forced_kernel(device):
    with fwAD.dual_level():
        dual = fwAD.make_dual(torch.randn(2, 3, device=device), torch.ones(2, 3, device=device))
        with pytest.raises(RuntimeError, match="forward-mode AD"):
            dk.q_sample(dual, 3, SCHEDULE, seed=1, backend="triton")


def test_torch_func_grad_and_jvp(device):
    x0 = torch.randn(4, 6, device=device)
    grad = torch.func.grad(lambda x: dk.q_sample(x, T_ROWS, SCHEDULE, seed=7).sum())(x0)
    torch.testing.assert_close(grad, _sqrt_ab(device).expand(4, 6))
    _, tangent = torch.func.jvp(lambda x: dk.q_sample(x, T_ROWS, SCHEDULE, seed=7), (x0,), (torch.ones_like(x0),))
    torch.testing.assert_close(tangent, _sqrt_ab(device).expand(4, 6))


def test_vmap_with_given_noise_and_refused_when_drawing(device):
    x0, noise = torch.randn(4, 6, device=device), torch.randn(4, 6, device=device)
    out = torch.vmap(lambda x, n: dk.q_sample(x, 500, SCHEDULE, n))(x0, noise)
    torch.testing.assert_close(out, dk.q_sample(x0, 500, SCHEDULE, noise, backend="reference"))
    with pytest.raises(RuntimeError, match="same ε"):
        torch.vmap(lambda x: dk.q_sample(x, 500, SCHEDULE, seed=1))(x0)


@pytest.mark.parametrize("learned", [False, True], ids=["x0", "learned_schedule"])
def test_double_backward(device, learned):
    x0 = torch.randn(4, 6, device=device, requires_grad=True)
    ab = SCHEDULE.alpha_bars.float().to(device).requires_grad_(learned)
    out = dk.q_sample(x0, T_ROWS, ab, seed=3)
    (first,) = torch.autograd.grad((out ** 2).sum(), x0, create_graph=True)
    (second,) = torch.autograd.grad(first.sum(), x0, retain_graph=learned)
    # d/dx Σ 2·a·(a·x + b·ε) = 2·a² per element
    torch.testing.assert_close(second, 2 * _sqrt_ab(device).expand(4, 6) ** 2)
    if learned:
        (ab_grad,) = torch.autograd.grad(first.sum(), ab)
        ref_ab = ab.detach().double().requires_grad_()
        ref_x = x0.detach().double().requires_grad_()
        ref_out = dk.q_sample(ref_x, T_ROWS, ref_ab, seed=3, backend="reference")
        (ref_first,) = torch.autograd.grad((ref_out ** 2).sum(), ref_x, create_graph=True)
        (ref_ab_grad,) = torch.autograd.grad(ref_first.sum(), ref_ab)
        torch.testing.assert_close(ab_grad.double(), ref_ab_grad, rtol=1e-4, atol=1e-4)


def _opcheck_args(device):
    a, b = SCHEDULE.coefficient_tables(device)
    x0 = torch.randn(3, 17, device=device)
    t = torch.tensor([0, 500, 999], device=device)
    forward = (x0, t, a, b, None, None, None, None, 5, 0, 0, 0, 0.0, True, False, 0)
    backward = (torch.randn_like(x0), None, t, a, b, None, None, x0, None, None, 5, 0, 0, 0, 0.0, torch.float32,
                None, True, 0)
    return forward, backward


def test_registered_ops_pass_opcheck(device):
    dk.q_sample(torch.randn(2, device=device), 1, SCHEDULE, seed=1)  # registers the ops
    forward, backward = _opcheck_args(device)
    torch.library.opcheck(torch.ops.diffusion_kernels.noising.default, forward)
    torch.library.opcheck(torch.ops.diffusion_kernels.noising_backward.default, backward)


def test_compiled_with_dynamic_shapes_over_batch_sizes():
    torch._dynamo.reset()

    def step(x0, t):
        x_t, eps = dk.q_sample(x0, t, SCHEDULE, return_noise=True, seed=11)
        return ((x_t - eps) ** 2).mean()

    compiled = torch.compile(step, fullgraph=True, dynamic=True, backend="aot_eager")
    for batch in (2, 3, 5):
        x0 = torch.randn(batch, 4, 6)
        t = torch.randint(0, 1000, (batch,))
        torch.testing.assert_close(compiled(x0, t), step(x0, t), rtol=1e-5, atol=1e-6)
