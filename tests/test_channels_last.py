"""Channels-last tensors (channels_last, channels_last_3d) on their own paths, with the same results.

Drawn noise goes through the channels-last tile (whole quads in memory order);
calls that draw nothing run the contiguous kernels in memory order. Either way
the noise is bit-identical to what the same call on a contiguous tensor draws:
the stream is defined on the logical index, not the layout.
"""
import pytest
import torch
from cases import KERNEL_DTYPES, make_x0
from tolerances import assert_close, assert_noise_close, to_reference

import diffusion_kernels as dk
from diffusion_kernels import launch, reference
from diffusion_kernels.noising import launcher as noising_launcher

# (shape, layout): 2, 4 and 16 channels, one sample, a 3-D volume, planes of one and of many quads.
TAKEN = [((2, 4, 6, 4), "channels_last"), ((3, 16, 2, 2), "channels_last"), ((1, 4, 5, 4), "channels_last"),
         ((2, 2, 8, 9), "channels_last"), ((2, 4, 3, 2, 2), "channels_last_3d")]
# 3 channels (not a power of two), and planes that are not whole quads: the strided kernel.
NOT_TAKEN = [((2, 3, 4, 4), "channels_last"), ((2, 4, 5, 3), "channels_last")]


@pytest.fixture
def channels_last_launches(monkeypatch):
    """What noising_launcher.channels_last_draw answered, call by call."""
    answers = []
    draw = noising_launcher.channels_last_draw

    def spy(*args, **kwargs):
        answers.append(draw(*args, **kwargs))
        return answers[-1]

    monkeypatch.setattr(noising_launcher, "channels_last_draw", spy)
    return answers


@pytest.mark.parametrize("dtype", KERNEL_DTYPES, ids=str)
@pytest.mark.parametrize("shape,layout", TAKEN + NOT_TAKEN, ids=str)
@pytest.mark.parametrize("t_form", ["per_sample", "one_t"])
def test_drawn_noise_is_bit_identical_to_the_contiguous_layouts(device, schedule, channels_last_launches, dtype,
                                                                 shape, layout, t_form):
    x0 = make_x0(shape, layout, dtype, device, torch.Generator().manual_seed(0))
    t = torch.arange(shape[0]) * 97 + 3 if t_form == "per_sample" else torch.tensor(123)
    kwargs = dict(seed=2**40 + 9, return_noise=True, return_v=True, offset_noise=0.2, backend="triton")
    x_t, eps, v = dk.q_sample(x0, t, schedule, **kwargs)
    assert channels_last_launches == [(shape, layout) in TAKEN]
    for out in (x_t, eps, v):
        assert out.stride() == x0.stride()
    ref_x_t, ref_eps, ref_v = dk.q_sample(x0.contiguous(), t, schedule, **kwargs)
    torch.testing.assert_close(eps.contiguous(), ref_eps, rtol=0, atol=0)  # the stream itself: bit for bit
    # x_t and v: the same float32 terms, which a GPU compiler may fuse into FMAs differently per kernel.
    assert_close(x_t, ref_x_t)
    assert_close(v, ref_v)


def test_drawn_noise_is_the_reference_stream(device, schedule):
    x0 = make_x0((2, 8, 4, 4), "channels_last", torch.float32, device)
    t = torch.tensor([5, 900])
    x_t, eps = dk.q_sample(x0, t, schedule, seed=31, return_noise=True, backend="triton")
    stream = reference.philox_normal(31, x0.shape, dtype=torch.float64)
    assert_noise_close(eps, stream)
    assert_close(x_t, reference.q_sample(to_reference(x0), t, schedule.alpha_bars, stream))


def test_device_seed_advances_on_the_channels_last_path(device, schedule, channels_last_launches):
    x0 = make_x0((2, 4, 4, 4), "channels_last", torch.float32, device)
    seed = dk.DeviceSeed(77, device=device)
    first = dk.q_sample(x0, 10, schedule, seed=seed, return_noise=True, backend="triton")[1]
    second = dk.q_sample(x0, 10, schedule, seed=seed, return_noise=True, backend="triton")[1]
    assert channels_last_launches == [True, True]
    for got, s in ((first, 77), (second, 78)):
        torch.testing.assert_close(got.contiguous(), dk.q_sample(x0.contiguous(), 10, schedule, seed=s,
                                                                 return_noise=True, backend="triton")[1])


@pytest.mark.parametrize("dtype", KERNEL_DTYPES, ids=str)
@pytest.mark.parametrize("layout", ["channels_last", "channels_last_3d"])
def test_given_noise_and_gradients_in_memory_order(device, schedule, dtype, layout):
    """No noise drawn: the contiguous kernels over memory order, for the forward and the backward."""
    shape = (3, 4, 2, 3, 5) if layout == "channels_last_3d" else (3, 4, 3, 5)
    g = torch.Generator().manual_seed(1)
    x0 = make_x0(shape, layout, dtype, device, g).requires_grad_(True)
    noise = make_x0(shape, layout, dtype, device, g).requires_grad_(True)
    grad_out = make_x0(shape, layout, dtype, device, g)
    t = torch.tensor([0, 500, 999])
    x_t = dk.q_sample(x0, t, schedule, noise, backend="triton")
    assert x_t.stride() == x0.stride()
    gx, gn = torch.autograd.grad(x_t, (x0, noise), grad_out)
    x0_r, noise_r = (to_reference(v).requires_grad_(True) for v in (x0, noise))
    x_r = dk.q_sample(x0_r, t, schedule, noise_r, backend="reference")
    gx_r, gn_r = torch.autograd.grad(x_r, (x0_r, noise_r), to_reference(grad_out))
    assert_close(x_t, x_r)
    assert_close(gx, gx_r)
    assert_close(gn, gn_r)


def test_learned_schedule_gradient_regenerates_the_channels_last_draw(device, schedule, channels_last_launches):
    """The forward draws through the channels-last tile, the backward regenerates ε in logical order
    (the strided kernel): the ᾱ gradient only matches if both drew the same values."""
    x0 = make_x0((4, 4, 4, 6), "channels_last", torch.float32, device)
    ab = schedule.alpha_bars[:50].clone().to(device).requires_grad_(True)
    t = torch.tensor([3, 3, 10, 40])
    x_t, eps = dk.q_sample(x0, t, ab, seed=99, return_noise=True, backend="triton")
    assert channels_last_launches == [True]
    grad_out = torch.randn(x0.shape, device=device)
    (g_ab,) = torch.autograd.grad(x_t, ab, grad_out)
    ab_r = to_reference(ab).requires_grad_(True)
    x_r = reference.q_sample(to_reference(x0), t, ab_r, to_reference(eps))
    (g_ab_r,) = torch.autograd.grad(x_r, ab_r, to_reference(grad_out))
    # test_autograd's tolerance for per-timestep sums of float32 products.
    torch.testing.assert_close(to_reference(g_ab), g_ab_r, rtol=1e-4, atol=1e-4)


def test_planes_are_found_only_for_a_channels_last_layout():
    def planes(x, rows=2):
        _, _, layout = launch.prepare(x.shape, [x], [])
        return launch.channels_last_planes(layout, x.numel(), rows)

    x = torch.zeros(2, 4, 6, 4)
    assert planes(x.to(memory_format=torch.channels_last)) == launch.Planes(2, 4, 24)
    assert planes(x.to(memory_format=torch.channels_last), rows=1) == launch.Planes(2, 4, 24)
    assert planes(torch.zeros(2, 6, 4, 4).permute(0, 3, 1, 2)) == launch.Planes(2, 4, 24)  # built by a permute
    assert planes(x.to(memory_format=torch.channels_last), rows=8) is None  # a t per (sample, channel)
    assert planes(x) is None  # contiguous
    assert planes(x.permute(0, 1, 3, 2)) is None  # a transposed plane
    assert planes(torch.zeros(2, 6, 4, 8).permute(0, 3, 1, 2)[:, ::2]) is None  # channels not adjacent
    assert planes(torch.zeros(2, 6, 4, 4).permute(3, 0, 1, 2)) is None  # samples inside the plane


@pytest.mark.parametrize("dtype", KERNEL_DTYPES, ids=str)
@pytest.mark.parametrize("shape,layout", TAKEN[:2] + TAKEN[-1:] + NOT_TAKEN[:1], ids=str)
@pytest.mark.parametrize("offset", [0.0, 0.3])
def test_noise_mse_of_a_channels_last_prediction_equals_the_contiguous_ones(device, schedule, dtype, shape, layout,
                                                                             offset):
    """The loss regenerates ε through the channels-last tile (or the strided kernel), the same values
    as for a contiguous prediction: equal loss and gradient, the gradient in the prediction's layout."""
    g = torch.Generator().manual_seed(2)
    x0 = make_x0(shape, layout, dtype, device, g)
    _, handle = dk.q_sample(x0, torch.arange(shape[0]) * 40, schedule, return_noise="seed", offset_noise=offset,
                            backend="triton")
    pred = make_x0(shape, layout, dtype, device, g).requires_grad_(True)
    loss = dk.noise_mse(pred, handle, backend="triton")
    (grad,) = torch.autograd.grad(loss, pred)
    flat = pred.detach().contiguous().requires_grad_(True)
    loss_c = dk.noise_mse(flat, handle, backend="triton")
    (grad_c,) = torch.autograd.grad(loss_c, flat)
    # The sums run over other tiles (another order of float32 additions); the gradient is elementwise.
    torch.testing.assert_close(loss, loss_c, rtol=1e-6, atol=0)
    assert grad.stride() == pred.stride()
    torch.testing.assert_close(grad.contiguous(), grad_c, rtol=0, atol=0)
