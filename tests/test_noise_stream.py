"""The drawn ε: bit-exact Philox, the documented stream layout, its invariances, its statistics."""
import numpy as np
import pytest
import scipy.stats
import torch
from cases import make_x0
from tolerances import assert_noise_close


import diffusion_kernels as dk
from diffusion_kernels import reference
from diffusion_kernels.noising import launcher as noising_launcher
from diffusion_kernels.kernels import noising as noising_kernels

# Known-answer vectors of Philox4x32-10 from the Random123 distribution (kat_vectors):
# (counter, key) -> output.
PHILOX_KAT = [
    ((0, 0, 0, 0), (0, 0), (0x6627E8D5, 0xE169C58D, 0xBC57AC4C, 0x9B00DBD8)),
    ((0xFFFFFFFF,) * 4, (0xFFFFFFFF,) * 2, (0x408F276D, 0x41C83B0E, 0xA20BC7C6, 0x6D5451FD)),
    ((0x243F6A88, 0x85A308D3, 0x13198A2E, 0x03707344), (0xA4093822, 0x299F31D0),
     (0xD16CFE09, 0x94FDCCEB, 0x5001E420, 0x24126EA1)),
]


@pytest.mark.parametrize("counter,key,expected", PHILOX_KAT)
def test_reference_philox_matches_known_answer_vectors(counter, key, expected):
    out = reference.philox4x32(*[torch.tensor([c]) for c in counter], *key)
    assert tuple(int(o) for o in out) == expected


def _kernel_noise(device, shape, seed, dtype=torch.float32, **kwargs):
    x0 = torch.zeros(shape, device=device, dtype=dtype)
    _, eps = dk.q_sample(x0, 999, dk.NoiseSchedule.linear(), seed=seed, return_noise=True, backend="triton",
                         **kwargs)
    return eps


def _launch_noise(device, n, seed, *, elem_offset=0, rows=1, stream=0):
    """ε straight from the launcher (t = 999 on every row, so x_t ≈ ε exactly up to 1e-2·x0 = 0)."""
    x0 = torch.zeros(n, device=device)
    sched = dk.NoiseSchedule.from_alpha_bars(torch.zeros(1, dtype=torch.float64))
    a, b = sched.coefficient_tables(device)
    t_rows = torch.zeros(rows, dtype=torch.int64, device=device)
    _, eps = noising_launcher.q_sample_forward(x0, t_rows, a, b, seed=seed, stream=stream, write_noise=True,
                                     elem_offset=elem_offset)
    return eps


@pytest.mark.parametrize("seed", [0, 1, 2**31, 2**32 + 7, 2**64 - 1])
@pytest.mark.parametrize("shape", [(1,), (5,), (3, 7, 33), (2, 4, 16, 16)])
def test_kernel_noise_equals_reference_stream(device, seed, shape):
    eps = _kernel_noise(device, shape, seed)
    expected = reference.philox_normal(seed, shape)
    assert_noise_close(eps.cpu(), expected)


def test_kernel_normals_invert_to_the_reference_philox_integers(device):
    """Recover the uniforms behind each Box–Muller pair and compare them with the reference's Philox integers.

    u1 = exp(−r²/2) carries r0 >> 9 and the angle carries r1 >> 8; unrelated
    integers would miss by ~2**22. The slack covers the GPU's fast sin/cos/log.
    """
    n = 256
    eps = _kernel_noise(device, (n,), 1234).cpu().double()
    quads = torch.arange(n // 4)
    r0, r1, r2, r3 = reference.philox4x32(quads, torch.zeros_like(quads), 0, 0, 1234, 0)
    for lanes, (ra, rb) in (((0, 1), (r0, r1)), ((2, 3), (r2, r3))):
        z_cos, z_sin = eps[lanes[0]::4], eps[lanes[1]::4]
        radius2 = z_cos**2 + z_sin**2
        u1 = torch.exp(-radius2 / 2)
        expected_u1 = ((ra >> 9).double() + 0.5) * 2.0**-23
        assert ((u1 - expected_u1).abs() / expected_u1).max() < 1e-4
        well_conditioned = radius2 > 0.25  # the angle of a short vector is dominated by rounding
        theta = torch.atan2(z_sin, z_cos)
        k = torch.round((theta + np.pi) / (2 * np.pi) * 2**24).long() % 2**24
        diff = (k - (rb >> 8)).abs()
        diff = torch.minimum(diff, 2**24 - diff)  # the angle wraps at ±π
        assert diff[well_conditioned].max() <= 8 and well_conditioned.sum() > n // 8


@pytest.mark.parametrize("dtype, block", [(torch.float32, 1), (torch.float32, 4), (torch.float32, 64),
                                          (torch.bfloat16, 2), (torch.bfloat16, 64)])
def test_noise_does_not_depend_on_block_size(device, monkeypatch, dtype, block):
    baseline = _kernel_noise(device, (3, 5, 29), 77, dtype=dtype)
    for constant in ("BLOCK_QUADS", "BLOCK_QUADS_PAIRED", "INTERPRETER_BLOCK_QUADS"):
        monkeypatch.setattr(noising_kernels, constant, block)
    torch.testing.assert_close(_kernel_noise(device, (3, 5, 29), 77, dtype=dtype), baseline, rtol=0, atol=0)


def test_noise_does_not_depend_on_layout(device):
    shape = (2, 3, 5, 7)
    baseline = _kernel_noise(device, shape, 9)
    for layout in ("channels_last", "sliced", "transposed"):
        x0 = torch.zeros_like(make_x0(shape, layout, torch.float32, device))
        _, eps = dk.q_sample(x0, 999, dk.NoiseSchedule.linear(), seed=9, return_noise=True, backend="triton")
        torch.testing.assert_close(eps.contiguous(), baseline, rtol=0, atol=0, msg=layout)


def test_noise_does_not_depend_on_batch_size(device):
    big = _kernel_noise(device, (6, 3, 11), 31)
    small = _kernel_noise(device, (3, 3, 11), 31)
    torch.testing.assert_close(big[:3], small, rtol=0, atol=0)


def test_noise_does_not_depend_on_t_form_or_dtype(device):
    shape = (4, 3, 10)
    x0 = torch.zeros(shape, device=device)
    sched = dk.NoiseSchedule.linear()
    forms = [5, torch.tensor(5), torch.full((4,), 5), torch.full((4, 3), 5)]
    results = [dk.q_sample(x0, t, sched, seed=3, return_noise=True, backend="triton")[1] for t in forms]
    for eps in results[1:]:
        torch.testing.assert_close(eps, results[0], rtol=0, atol=0)
    half = _kernel_noise(device, shape, 3, dtype=torch.bfloat16)
    torch.testing.assert_close(half, results[0].to(torch.bfloat16), rtol=0, atol=0)


@pytest.mark.parametrize("rows", [1, 3, 5])
def test_rows_that_split_quads_draw_the_same_stream(device, rows):
    # 5 * 7 = 35 elements: rows of 7 (or 35/5 = 7, 35/1) cut Philox quads between programs.
    eps = _launch_noise(device, 35, 11, rows=rows if 35 % rows == 0 else 1)
    assert_noise_close(eps.cpu(), reference.philox_normal(11, (35,)))


@pytest.mark.parametrize("offset", [2**31 - 3, 2**32 - 2, 2**34 - 30, 2**34 - 12, 2**34 + 1, 2**40 + 6])
def test_stream_index_math_is_64_bit(device, offset):
    """Elements past 2**31 (and 2**32) get their own quads: no wrap of the counter, also just below and
    across quad 2**32 (where 32-bit counters stop: launch.tiling.NARROW_ELEMENTS)."""
    eps = _launch_noise(device, 23, 5, elem_offset=offset)
    expected = reference.philox_normal(5, (23,), offset=offset)
    assert_noise_close(eps.cpu(), expected)
    if offset >= 2**32:
        wrapped = reference.philox_normal(5, (23,), offset=offset % 2**32)
        assert (eps.cpu() - wrapped).abs().max() > 0.1


def test_streams_of_one_seed_differ(device):
    a = _launch_noise(device, 256, 1, stream=0).cpu()
    b = _launch_noise(device, 256, 1, stream=1).cpu()
    assert_noise_close(b, reference.philox_normal(1, (256,), stream=1))
    assert abs(float(torch.corrcoef(torch.stack([a, b]))[0, 1])) < 0.25


def test_noise_statistics(device):
    eps = _kernel_noise(device, (64, 1024), 2024).double().cpu().flatten().numpy()
    n = eps.size
    assert abs(eps.mean()) < 5 / np.sqrt(n)
    assert abs(eps.std() - 1) < 5 * np.sqrt(0.5 / n)
    assert scipy.stats.kstest(eps, "norm").pvalue > 1e-3
    lag1 = np.corrcoef(eps[:-1], eps[1:])[0, 1]
    assert abs(lag1) < 5 / np.sqrt(n)


def test_seed_reproducibility_and_independence(device):
    sched = dk.NoiseSchedule.linear()
    x0 = torch.zeros(4, 256, device=device)
    torch.manual_seed(0)
    a1 = dk.q_sample(x0, 999, sched, backend="triton")
    a2 = dk.q_sample(x0, 999, sched, backend="triton")
    torch.manual_seed(0)
    b1 = dk.q_sample(x0, 999, sched, backend="triton")
    torch.testing.assert_close(a1, b1, rtol=0, atol=0)
    corr = np.corrcoef(a1.cpu().flatten().numpy(), a2.cpu().flatten().numpy())[0, 1]
    assert abs(corr) < 5 / np.sqrt(x0.numel())
    gen = torch.Generator().manual_seed(5)
    c1 = dk.q_sample(x0, 999, sched, generator=gen, backend="triton")
    gen.manual_seed(5)
    torch.testing.assert_close(dk.q_sample(x0, 999, sched, generator=gen, backend="triton"), c1, rtol=0, atol=0)


def test_given_noise_draws_no_random_numbers(device):
    x0 = torch.randn(2, 8, device=device)
    noise = torch.randn_like(x0)
    torch.manual_seed(3)
    before = torch.random.get_rng_state()
    dk.q_sample(x0, 1, dk.NoiseSchedule.linear(), noise, backend="triton")
    assert torch.equal(torch.random.get_rng_state(), before)
