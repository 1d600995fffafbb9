"""The kernels' Box–Muller against float64 math, including the GPU's fast path run on CPU.

On a GPU, Box–Muller uses the special-function instructions lg2.approx,
sin.approx and cos.approx (kernels/box_muller.py, MATH). Triton's
interpreter has none of them, so on CPU that path is run with each
instruction emulated by the math library plus its documented worst-case
error (CUDA C++ Programming Guide, intrinsic functions: __log2f is within
2**-22 absolute on [0.5, 2] and 2 ulp elsewhere; __sinf and __cosf within
2**-21.41 and 2**-21.19 absolute on [-pi, pi], taken here as PTX's looser
2**-20.9), pushed all one way or all the other. Whichever way the errors go,
the normals must stay within NOISE_ATOL of the float64 reference.

AMD GPUs take MATH_POLY: log, sin and cos from float32 multiply-adds, which the
interpreter runs as the GPU does (up to the rounding of a fused multiply-add), so
its accuracy is checked exhaustively here, over every angle and every radius
the stream can draw, and through whole launches.
"""
import numpy as np
import pytest
import torch
import torch.nn.functional as F
from tolerances import NOISE_ATOL, assert_close, assert_noise_close, to_reference

import triton
import triton.language as tl
from triton.language.extra import libdevice

import diffusion_kernels as dk
from diffusion_kernels import launch, reference
from diffusion_kernels.dispatch import interpreter_active
from diffusion_kernels.kernels import box_muller as box_muller_module
from diffusion_kernels.kernels import philox_normal
from diffusion_kernels.kernels.box_muller import box_muller
from diffusion_kernels.noising import launcher as noising_launcher
from diffusion_kernels.trajectory import launcher as trajectory_launcher
from diffusion_kernels.loss import launcher as loss_launcher

LG2_ABS_ERROR = 2.0**-22  # on [0.5, 2]; elsewhere 2 ulp, i.e. relative
SINCOS_ABS_ERROR = 2.0**-20.9  # on [-pi, pi], where the kernel keeps the angle


@triton.jit
def box_muller_kernel(ra_ptr, rb_ptr, z_ptr, scale, N: tl.constexpr, MATH: tl.constexpr, SCALED: tl.constexpr):
    offs = tl.arange(0, N)
    ra = tl.load(ra_ptr + offs).to(tl.uint32, bitcast=True)
    rb = tl.load(rb_ptr + offs).to(tl.uint32, bitcast=True)
    if SCALED:
        z0, z1 = box_muller(ra, rb, MATH, scale)
    else:
        z0, z1 = box_muller(ra, rb, MATH)
    tl.store(z_ptr + offs, z0)
    tl.store(z_ptr + N + offs, z1)


def _hard_inputs(n: int = 4096):
    """Philox words for Box–Muller: half crowd the end u1 -> 1 where the radius goes to 0 (and a plain
    lg2.approx loses all relative accuracy), the rest span u1 and the angle, both ends included."""
    k = torch.cat([torch.arange(2**23 - n // 2, 2**23),  # the 2048 largest u1
                   torch.tensor([0, 1, 2, 2**22, 2**22 + 1]),
                   torch.randint(0, 2**23, (n // 2 - 5,), generator=torch.Generator().manual_seed(0))])
    ra = (k << 9) | torch.randint(0, 2**9, (n,), generator=torch.Generator().manual_seed(1))
    rb = torch.cat([torch.tensor([0, 2**32 - 1, 2**31, 2**31 - 1]),
                    torch.randint(0, 2**32, (n - 4,), generator=torch.Generator().manual_seed(2))])
    return ra, rb


def _run_box_muller(ra, rb, device, math: int, scale: float | None = None) -> torch.Tensor:
    n = ra.numel()
    as_int32 = [(((x + 2**31) % 2**32) - 2**31).to(torch.int32).to(device) for x in (ra, rb)]
    z = torch.empty(2 * n, device=device)
    box_muller_kernel[(1,)](*as_int32, z, 1.0 if scale is None else scale, N=n, MATH=math, SCALED=scale is not None)
    return z


def _device_math(device) -> int:
    return launch.math_mode(torch.device(device))


def _float64_box_muller(ra, rb) -> torch.Tensor:
    u1 = ((ra >> 9).double() + 0.5) * 2.0**-23
    theta = (rb >> 8).double() * 2.0**-24 * (2 * np.pi) - np.pi
    radius = torch.sqrt(-2 * torch.log(u1))
    return torch.cat([radius * torch.cos(theta), radius * torch.sin(theta)])


@pytest.fixture(params=[1.0, -1.0], ids=["errors_up", "errors_down"])
def emulated_gpu_math(request, monkeypatch):
    """Every launch takes the NVIDIA path, its instructions emulated at their worst-case errors."""
    if not interpreter_active():
        pytest.skip("a GPU runs the real instructions: test_box_muller_is_accurate_across_its_whole_range")
    return _emulate_nvidia(monkeypatch, request.param)


def _emulate_nvidia(monkeypatch, sign: float) -> float:
    # Called while the interpreter runs a kernel, so tl's functions act on its tensors.
    def lg2(x):
        exact = tl.log2(x)
        near_one = (x >= 0.5) & (x <= 2.0)
        return tl.where(near_one, exact + sign * LG2_ABS_ERROR, exact * (1.0 + sign * LG2_ABS_ERROR))

    monkeypatch.setattr(libdevice, "fast_log2f", lg2, raising=False)
    monkeypatch.setattr(tl, "inline_asm_elementwise", _emulated_ptx)
    monkeypatch.setattr(libdevice, "fast_cosf", lambda x: tl.cos(x) + sign * SINCOS_ABS_ERROR, raising=False)
    monkeypatch.setattr(libdevice, "fast_sinf", lambda x: tl.sin(x) + sign * SINCOS_ABS_ERROR, raising=False)
    _every_launch_takes(monkeypatch, launch.MATH_NVIDIA)
    return sign


def _emulated_ptx(asm, constraints, args, dtype, is_pure, pack):
    """The NVIDIA path's one inline PTX, Philox's wide multiply (philox_normal.mul_wide), as the PTX ISA
    defines it: mul.wide.u32 gives the 64-bit product, mov.b64 {lo, hi} unpacks its low word first."""
    asm, constraints, pack = (getattr(x, "value", x) for x in (asm, constraints, pack))
    assert asm == philox_normal.MUL_WIDE_PTX.value and constraints == "=r,=r,r,r" and pack == 1
    a, m = args
    product = a.to(tl.uint64) * m.to(tl.uint64)
    return (product >> 32).to(tl.uint32), product.to(tl.uint32)


def _every_launch_takes(monkeypatch, math: int) -> None:
    for family in (noising_launcher, trajectory_launcher, loss_launcher):  # where each launcher reads it
        monkeypatch.setattr(family, "math_mode", lambda device: math)
    if math == launch.MATH_POLY:
        _emulate_amd_reciprocal(monkeypatch, 1.0)


# AMD's fast division a · rcp(b): v_rcp_f32 within 1 ulp, then the product's rounding; taken at 4 ulp.
RCP_REL_ERROR = 2.0**-21


def _emulate_amd_reciprocal(monkeypatch, sign: float) -> None:
    """libdevice.fast_dividef (MATH_POLY's one hardware instruction) as the exact quotient off by its error
    bound, all one way (``sign``)."""
    monkeypatch.setattr(libdevice, "fast_dividef", lambda x, y: (x / y) * (1.0 + sign * RCP_REL_ERROR),
                        raising=False)


@pytest.fixture(params=["nvidia_errors_up", "nvidia_errors_down", "amd_poly"])
def gpu_math_path(request, monkeypatch):
    """Every launch takes a GPU's Box–Muller: NVIDIA's instructions emulated at their worst-case
    errors either way, or AMD's multiply-add polynomials as they are."""
    if not interpreter_active():
        pytest.skip("a GPU runs its own path: test_box_muller_is_accurate_across_its_whole_range")
    if request.param == "amd_poly":
        _every_launch_takes(monkeypatch, launch.MATH_POLY)
    else:
        request.getfixturevalue("emulated_gpu_math_" + request.param.split("_")[-1])
    return request.param


@pytest.fixture
def emulated_gpu_math_up(monkeypatch):
    return _emulate_nvidia(monkeypatch, 1.0)


@pytest.fixture
def emulated_gpu_math_down(monkeypatch):
    return _emulate_nvidia(monkeypatch, -1.0)


@pytest.mark.gpu  # on a GPU: the hardware instructions themselves; on CPU, the interpreter's library path
def test_box_muller_is_accurate_across_its_whole_range(device):
    """The path the device really runs: the hardware approximations on a GPU, the math library on CPU."""
    ra, rb = _hard_inputs()
    z = _run_box_muller(ra, rb, device, math=_device_math(device))
    assert_noise_close(z, _float64_box_muller(ra, rb))


def test_gpu_box_muller_is_accurate_at_the_instructions_worst_case_errors(emulated_gpu_math):
    ra, rb = _hard_inputs()
    z = _run_box_muller(ra, rb, "cpu", math=launch.MATH_NVIDIA)
    assert_noise_close(z, _float64_box_muller(ra, rb))


def test_gpu_box_muller_is_accurate_at_every_angle_at_the_largest_radius(emulated_gpu_math):
    """Exhaustive over the angle: all 2**24 of them at the largest radius (u1 = 2**-24), each from the word
    whose low 8 bits, which the contract drops and the NVIDIA path's conversion of the whole word keeps, are
    all ones (the farthest from the angle's own), with the instructions' errors all one way."""
    worst = 0.0
    chunk = 1 << 20
    for start in range(0, 1 << 24, chunk):
        k = torch.arange(start, start + chunk, dtype=torch.int64)
        ra, rb = torch.zeros_like(k), (k << 8) | 0xFF
        z = _run_box_muller(ra, rb, "cpu", math=launch.MATH_NVIDIA)
        worst = max(worst, float((z.double() - _float64_box_muller(ra, rb)).abs().max()))
    assert worst < NOISE_ATOL, f"worst error {worst:.3g}"


@pytest.mark.parametrize("scale", [1.0, 0.37, 3.5])
def test_a_scaled_box_muller_is_the_scale_times_the_normals_at_the_worst_case_errors(emulated_gpu_math, scale):
    """x_t's b[t]·ε drawn whole (box_muller's scale: the radius from −lg2(u1), or the series over 2 ln 2,
    times scale·sqrt(2 ln 2)), on the same hard inputs, half of them on the series: within the scale times
    NOISE_ATOL of scale times the float64 normals."""
    ra, rb = _hard_inputs()
    z = _run_box_muller(ra, rb, "cpu", math=launch.MATH_NVIDIA, scale=scale)
    torch.testing.assert_close(z.double(), scale * _float64_box_muller(ra, rb), rtol=0, atol=scale * NOISE_ATOL)


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
@pytest.mark.parametrize("shape", [(3, 4, 6, 10), (2, 4, 16, 16)])
def test_x_t_alone_on_the_gpu_math_path_is_x_t_with_its_noise(gpu_math_path, schedule, dtype, shape):
    """x_t drawn alone (b[t]·ε as one product per pair on NVIDIA) against the reference x_t of the stream's
    ε, and against the x_t drawn with ε returned, to the dtype's tolerance."""
    x0 = torch.randn(shape).to(dtype)
    t = torch.tensor([0, 400, 999][:shape[0]])
    alone = dk.q_sample(x0, t, schedule, seed=77, backend="triton")
    with_noise, _ = dk.q_sample(x0, t, schedule, seed=77, return_noise=True, backend="triton")
    expected = reference.q_sample(to_reference(x0), t, to_reference(schedule.alpha_bars),
                                  reference.philox_normal(77, x0.shape))
    assert_close(alone, expected, dtype)
    assert_close(alone, to_reference(with_noise), dtype)


@pytest.mark.skipif(not interpreter_active(), reason="runs the AMD path through Triton's interpreter")
@pytest.mark.parametrize("sign", [1.0, -1.0], ids=["reciprocal_up", "reciprocal_down"])
def test_amd_box_muller_is_accurate_at_every_angle_and_every_radius(monkeypatch, sign):
    """Exhaustive: all 2**24 angles, each paired with one of the 2**23 radii (every radius twice), with the
    hardware reciprocal's error at its bound either way."""
    _emulate_amd_reciprocal(monkeypatch, sign)
    worst = 0.0
    chunk = 1 << 20
    for start in range(0, 1 << 24, chunk):
        i = torch.arange(start, start + chunk, dtype=torch.int64)
        ra, rb = (i % (1 << 23)) << 9, i << 8
        z = _run_box_muller(ra, rb, "cpu", math=launch.MATH_POLY)
        worst = max(worst, float((z.double() - _float64_box_muller(ra, rb)).abs().max()))
    assert worst < NOISE_ATOL / 4, f"worst error {worst:.3g}"


def test_lg2_alone_near_u1_one_would_break_the_noise_tolerance(emulated_gpu_math, monkeypatch):
    """Why the series branch exists: with lg2.approx used all the way to u1 -> 1, the same
    emulated error puts radii near 0 off by far more than NOISE_ATOL."""
    monkeypatch.setattr(box_muller_module, "SERIES_BELOW", tl.constexpr(0.0))  # w = u1 - 1 < 0: never the series
    ra, rb = _hard_inputs()
    z = _run_box_muller(ra, rb, "cpu", math=launch.MATH_NVIDIA)
    error = (to_reference(z) - _float64_box_muller(ra, rb)).abs()
    assert float(error.nan_to_num(nan=np.inf).max()) > 10 * NOISE_ATOL


@pytest.mark.parametrize("dtype,layout", [(torch.float32, "contiguous"), (torch.bfloat16, "contiguous"),
                                          (torch.float32, "channels_last")], ids=str)
def test_q_sample_on_the_gpu_math_path_matches_the_reference(gpu_math_path, schedule, dtype, layout):
    """The fast path through whole launches: the forward (2-byte paired tiles, strided layouts) and
    the backward, which regenerates ε for the gradient of a learned ᾱ table."""
    x0 = torch.randn(3, 4, 6, 10)
    if layout == "channels_last":
        x0 = x0.to(memory_format=torch.channels_last)
    x0 = x0.to(dtype)
    ab = schedule.alpha_bars.clone().requires_grad_(True)
    t = torch.tensor([0, 400, 999])
    x_t, eps = dk.q_sample(x0, t, ab, seed=77, return_noise=True, backend="triton")
    eps_ref = reference.philox_normal(77, x0.shape)
    if dtype == torch.float32:
        assert_noise_close(eps, eps_ref)
    ab_r = to_reference(ab).requires_grad_(True)
    x_r = reference.q_sample(to_reference(x0), t, ab_r, eps_ref)
    assert_close(x_t, x_r, dtype)
    grad_out = torch.randn(x0.shape).to(dtype)
    (g_ab,) = torch.autograd.grad(x_t, ab, grad_out)
    (g_ab_r,) = torch.autograd.grad(x_r, ab_r, to_reference(grad_out))
    # Per-timestep sums of 240 float32 products (test_autograd's learned-table tolerance).
    torch.testing.assert_close(to_reference(g_ab), g_ab_r, rtol=1e-4, atol=1e-4)


def test_noise_mse_and_trajectory_on_the_gpu_math_path_match_the_reference(gpu_math_path, schedule):
    x0 = torch.randn(2, 3, 37)
    t = torch.tensor([10, 900])
    _, handle = dk.q_sample(x0, t, schedule, return_noise="seed", offset_noise=0.1, backend="triton")
    pred = torch.randn(x0.shape)
    eps_ref = reference.drawn_noise(handle.seed, x0.shape, (2,), offset_strength=0.1)
    loss = dk.noise_mse(pred, handle, reduction="sum", backend="triton")
    torch.testing.assert_close(to_reference(loss), F.mse_loss(to_reference(pred), eps_ref, reduction="sum"),
                               rtol=1e-5, atol=1e-5)
    short = dk.NoiseSchedule.cosine(T=20)
    x_end = dk.forward_trajectory(x0, short, 19, seed=4, backend="triton")
    ref_end, _ = reference.forward_trajectory(x0, short.alphas, 19, seed=4)
    # test_forward_process's tolerance: the steps' float32 rounding accumulates.
    torch.testing.assert_close(x_end, ref_end, rtol=1e-5, atol=1e-5 * 20)
