"""NaN/Inf propagation, bf16 at small t, zero-size tensors, and the t-range switch."""
import pytest
import torch
from cases import KERNEL_DTYPES

import triton
import triton.language as tl

import diffusion_kernels as dk
from diffusion_kernels.dispatch import interpreter_active
from diffusion_kernels.kernels.box_muller import MATH_LIBRARY, MATH_POLY
from diffusion_kernels.kernels.convert import to_output
from diffusion_kernels.noising import launcher as noising_launcher


@pytest.mark.parametrize("dtype", KERNEL_DTYPES, ids=str)
def test_nan_and_inf_stay_in_their_elements(device, schedule, dtype):
    x0 = torch.randn(3, 40, device=device, dtype=dtype)
    x0[0, 3] = float("nan")
    x0[1, 7] = float("inf")
    x0[2, 39] = -float("inf")
    x_t = dk.q_sample(x0, torch.tensor([5, 500, 999]), schedule, seed=4, backend="triton")
    bad = ~torch.isfinite(x_t)
    assert bad.sum() == 3
    assert torch.isnan(x_t[0, 3]) and x_t[1, 7] == float("inf") and x_t[2, 39] == -float("inf")


def test_bf16_at_t0_still_carries_noise(device, schedule):
    """sqrt(1 − ᾱ_0) = 0.01 survives: the sum is formed in float32 and rounded once."""
    x0 = torch.linspace(-1, 1, 4096, device=device).to(torch.bfloat16)
    x_t = dk.q_sample(x0, 0, schedule, seed=0, backend="triton")
    changed = (x_t != x0).float().mean()
    # noise of std 0.01 against a bf16 spacing of at most 2**-7 moves most elements
    assert changed > 0.5
    diffusers_style = (schedule.alpha_bars[0].to(torch.bfloat16) ** 0.5) * x0  # bf16 ᾱ_0 rounds to 1: no noise
    assert torch.equal(diffusers_style, x0)


@pytest.mark.parametrize("shape", [(0,), (0, 3, 4), (4, 0), (2, 3, 0, 5)])
def test_zero_size(device, schedule, shape):
    x0 = torch.randn(shape, device=device)
    t = torch.zeros(shape[:1], dtype=torch.long)
    x_t, eps = dk.q_sample(x0, t, schedule, seed=1, return_noise=True, backend="triton")
    assert x_t.shape == x0.shape and eps.shape == x0.shape


def test_unchecked_t_is_clamped_never_read_out_of_bounds(device):
    ab = torch.tensor([0.9, 0.5, 0.1], dtype=torch.float64)
    sched = dk.NoiseSchedule.from_alpha_bars(ab)
    x0 = torch.ones(4, 8, device=device)
    noise = torch.zeros_like(x0)
    x_t = dk.q_sample(x0, torch.tensor([-5, 0, 2, 77]), sched, noise, check_t=False, backend="triton")
    expected = ab[[0, 0, 2, 2]].sqrt().float()[:, None].expand(4, 8)
    torch.testing.assert_close(x_t.cpu(), expected)


def test_guard_tables_sit_outside_the_read_range(device):
    """Surround the coefficient tables with sentinels; an out-of-range t must never reach them."""
    big = torch.full((9,), 1e6, device=device)
    a, b = big[3:6], big[3:6].clone()
    a.fill_(0.5)
    b.fill_(0.0)
    x0 = torch.ones(3, 5, device=device)
    t_rows = torch.tensor([-1, 3, 2**40], device=device)
    out, _ = noising_launcher.q_sample_forward(x0, t_rows, a, b, torch.zeros_like(x0))
    torch.testing.assert_close(out, torch.full_like(x0, 0.5))


@triton.jit
def _rounding_kernel(x_ptr, soft_ptr, never_nan_ptr, quiet_nan_ptr, N: tl.constexpr):
    offs = tl.arange(0, N)
    x = tl.load(x_ptr + offs)
    tl.store(soft_ptr + offs, to_output(x, tl.bfloat16, True, MATH_LIBRARY))
    tl.store(never_nan_ptr + offs, to_output(x, tl.bfloat16, False, MATH_POLY, True))
    tl.store(quiet_nan_ptr + offs, to_output(x, tl.bfloat16, False, MATH_POLY))


def _rounded(x: torch.Tensor) -> list[torch.Tensor]:
    """The interpreter's, the never-NaN and the quiet-NaN integer roundings of x, as int16 bits."""
    outs = [torch.empty(x.numel(), dtype=torch.bfloat16) for _ in range(3)]
    _rounding_kernel[(1,)](x, *outs, N=x.numel())
    return [out.view(torch.int16) for out in outs]


@pytest.mark.skipif(not interpreter_active(), reason="the integer roundings are compared under Triton's interpreter")
def test_bfloat16_rounding_in_integer_ops_is_round_to_nearest_even():
    """The integer roundings of float32 to bfloat16 (the interpreter's; the one without a NaN test that drawn
    noise takes on GPUs without a conversion instruction; the one that makes NaNs one quiet NaN first,
    every other output there) against torch's round-to-nearest-even, over ties, halfway-plus-one, the
    largest finite values (which overflow to inf), infinities, zeros, subnormals and random bit patterns;
    the interpreter's and the quiet-NaN one keep every NaN a NaN, whatever its sign and payload (a payload
    whose rounding add carries into the sign, or leaves the exponent's all-ones with no mantissa, included)."""
    gen = torch.Generator().manual_seed(0)
    bits = torch.cat([
        torch.tensor([0x7F7FFFFF, 0x7F7F8000, 0x7F7F7FFF, 0x7F800000, 0xFF800000, 0, 0x80000000, 1, 0x807FFFFF]),
        (torch.randint(0, 2**16, (4096,), generator=gen) << 16) | 0x8000,  # exact ties, both parities
        (torch.randint(0, 2**16, (4096,), generator=gen) << 16) | 0x8001,
        (torch.randint(0, 2**16, (4096,), generator=gen) << 16) | 0x7FFF,
        torch.randint(-2**31, 2**31, (1 << 16,), generator=gen, dtype=torch.int64),
    ])
    x = (((bits + 2**31) % 2**32) - 2**31).to(torch.int32).view(torch.float32)
    finite = x[~torch.isnan(x)]
    n = 1 << (finite.numel().bit_length() - 1)
    finite = finite[:n].contiguous()
    expected = finite.to(torch.bfloat16).view(torch.int16)
    for rounded in _rounded(finite):
        assert torch.equal(rounded, expected)
    nan_bits = torch.tensor([0x7FC00000, 0x7FFFFFFF, 0x7F800001, 0x7F807FFF, 0x7FBFFFFF, 0xFFC00000, 0xFFFFFFFF,
                             0xFF800001, 0x7FFF8000, 0x7F808000, 0x7FC08000, 0xFFFF7FFF, 0x7F8F0000, 0xFFA00000,
                             0x7FE00001, 0xFF80FFFF])
    nan = (((nan_bits + 2**31) % 2**32) - 2**31).to(torch.int32).view(torch.float32)
    assert bool(torch.isnan(nan).all())
    soft, _, quiet = _rounded(nan)
    assert bool(torch.isnan(soft.view(torch.bfloat16).float()).all())
    assert bool(torch.isnan(quiet.view(torch.bfloat16).float()).all())
