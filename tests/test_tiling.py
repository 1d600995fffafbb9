"""The launch tiling: the multiply-shift division the kernels use to find a program's row and an
element's coordinates in a strided layout."""
import sys

import pytest
import torch
import triton
import triton.language as tl
from hypothesis import given, settings
from hypothesis import strategies as st

from diffusion_kernels.kernels.tiles import magic_divide
from diffusion_kernels.launch import divisor_magic, packed_divisor, tiling
from diffusion_kernels.kernels import noising as noising_kernels

PID_MAX = 2**31 - 1


def quotient(n: int, d: int) -> int:
    """What the kernel computes (tiles.magic_divide): mulhi(2n, m) >> k, all in 32-bit words."""
    packed = packed_divisor(d)
    m, k = packed & 0xFFFFFFFF, (packed >> 32) - 1
    assert 2 * n < 2**32 and m < 2**32 and 0 <= k < 32
    return ((2 * n * m) >> 32) >> k


@settings(max_examples=2000, deadline=None)
@given(d=st.integers(1, PID_MAX), n=st.integers(0, PID_MAX))
def test_multiply_shift_equals_integer_division(d, n):
    assert quotient(n, d) == n // d


@pytest.mark.parametrize("d", [1, 2, 3, 7, 16, 37, 1000, 2**16 + 1, 2**30, 2**30 + 1, 2**31 - 1])
def test_multiply_shift_is_exact_at_the_edges(d):
    for n in {0, 1, d - 1, d, d + 1, 2 * d - 1, PID_MAX - 1, PID_MAX, (PID_MAX // d) * d, (PID_MAX // d) * d - 1}:
        if 0 <= n <= PID_MAX:
            assert quotient(n, d) == n // d, (n, d)


def test_multiplier_fits_a_32_bit_word():
    for d in [1, 2, 3, 5, 2**20 + 3, 2**31 - 1]:
        m, s = divisor_magic(d)
        assert 2**31 <= m < 2**32 and 31 <= s <= 62
        assert 2**32 <= packed_divisor(d) < 2**63  # an int64 kernel argument on every backend


@pytest.mark.parametrize("d", [0, -1, 2**31])
def test_divisor_out_of_range_is_refused(d):
    with pytest.raises(ValueError, match="divisor"):
        divisor_magic(d)


@pytest.mark.parametrize("n, rows", [(1, 1), (7, 1), (64 * 4096, 64), (3 * 5 * 29, 3)])
def test_grid_covers_every_row(n, rows):
    tile = tiling(noising_kernels, n, rows)
    assert tile.grid == (rows * tile.chunks,)
    assert tile.chunks * tile.block * 4 >= tile.row_len


@triton.jit
def divide_kernel(n_ptr, out_ptr, divisor, N: tl.constexpr):
    offs = tl.arange(0, N)
    tl.store(out_ptr + offs, magic_divide(tl.load(n_ptr + offs), divisor))


def test_kernel_division_matches_python(device):
    """tiles.magic_divide itself, run as a kernel (through the interpreter on CPU)."""
    n = torch.tensor([0, 1, 2, 3, 6, 7, 100, 4095, 2**20 + 7, 2**30, 2**31 - 2, 2**31 - 1] + [5] * 4,
                     dtype=torch.int32, device=device)
    for d in [1, 2, 3, 7, 16, 1000, 2**16 + 1, 2**31 - 1]:
        out = torch.empty_like(n)
        divide_kernel[(1,)](n, out, packed_divisor(d), N=16)
        assert out.tolist() == [v // d for v in n.tolist()], d


def test_strided_tensor_past_the_32_bit_index_goes_through_contiguous_copies(device, monkeypatch):
    """Above MAX_STRIDED_NUMEL the launcher copies to contiguous buffers (here the limit is lowered)."""
    import diffusion_kernels as dk
    from diffusion_kernels import launch

    schedule = dk.NoiseSchedule.linear()
    x0 = torch.randn(2, 3, 4, 5, device=device).to(memory_format=torch.channels_last)
    t = torch.tensor([10, 900])
    expected = dk.q_sample(x0.contiguous(), t, schedule, seed=3, return_noise=True, backend="triton")
    monkeypatch.setattr(launch.layout, "MAX_STRIDED_NUMEL", 16)
    assert launch.layout_of(x0.shape, [x0]) is None
    x_t, eps = dk.q_sample(x0, t, schedule, seed=3, return_noise=True, backend="triton")
    assert x_t.is_contiguous(memory_format=torch.channels_last)
    assert torch.equal(x_t, expected[0]) and torch.equal(eps, expected[1])


def test_layout_shares_one_address_computation_only_when_strides_agree():
    from diffusion_kernels import launch

    cl = torch.randn(2, 3, 4, 5).to(memory_format=torch.channels_last)
    layout = launch.layout_of(cl.shape, [cl, None, torch.empty_like(cl), torch.empty_like(cl), None])
    assert not layout.contiguous and layout.shared  # outputs made like a channels_last input
    sliced = torch.randn(2, 6, 4, 5)[:, :3]
    layout = launch.layout_of(sliced.shape, [sliced, None, torch.empty_like(sliced), None, None])
    assert not layout.contiguous and not layout.shared  # a sliced view's outputs come out contiguous
    flat = torch.randn(2, 3)
    assert launch.layout_of(flat.shape, [flat, None, torch.empty_like(flat)]).contiguous


@pytest.mark.parametrize("units,fewest", [(132, 1), (304, 2), (108, 1)])
@pytest.mark.parametrize("n", [262144, 1048576, 4194304, 16777216])
@pytest.mark.parametrize("paired", [False, True])
def test_a_launch_sized_to_the_gpu_starts_two_programs_per_sm(units, fewest, n, paired):
    """From 256K elements, two programs per SM (CU) (on an H100 always; elsewhere unless the tile is down to one
    16-byte vector per thread of the fewest warps), each thread still at least one 16-byte vector; the tuned
    tile wherever it already does that (large tensors). Warps are cut first: each thread keeps the tuned
    tile's elements until the program is down to ``fewest`` warps (one on NVIDIA, one 64-lane wavefront on
    AMD)."""
    from diffusion_kernels.launch.tiling import filling_tile

    tuned = noising_kernels.BLOCK_QUADS_PAIRED if paired else noising_kernels.BLOCK_QUADS
    block, warps = filling_tile(tuned, noising_kernels.NUM_WARPS, n, units, paired, fewest)
    per_thread = 2 if paired else 1
    at_floor = block == 32 * warps * per_thread and warps == fewest
    assert -(-n // (4 * block)) >= 2 * units or at_floor
    if units == 132:
        assert -(-n // (4 * block)) >= 264
    assert block >= 32 * warps * per_thread and fewest <= warps <= noising_kernels.NUM_WARPS
    if warps > fewest:
        assert block // warps == tuned // noising_kernels.NUM_WARPS
    if -(-n // (4 * tuned)) >= 2 * units:
        assert (block, warps) == (tuned, noising_kernels.NUM_WARPS)


def test_a_tiny_launch_stops_at_one_warp_or_one_amd_wavefront():
    """One warp on NVIDIA; two warps of 32 lanes, one 64-lane wavefront, on AMD: fewer would leave an AMD
    wavefront's lanes idle. Each thread keeps one 16-byte vector."""
    from diffusion_kernels.launch.tiling import filling_tile

    assert filling_tile(512, 4, 768, 132, False, 2) == (64, 2)
    assert filling_tile(1024, 4, 768, 132, True, 2) == (128, 2)
    assert filling_tile(512, 4, 768, 132, False, 1) == (32, 1)
    assert filling_tile(1024, 4, 768, 132, True, 1) == (64, 1)


def test_warps_are_cut_before_each_threads_elements():
    """262,144 float32 elements on an H100: one warp of the tuned tile's 16 elements per thread (512
    programs), not four warps of 4 each; bfloat16, whose one warp of 32 per thread would start 256, takes 16."""
    from diffusion_kernels.launch.tiling import filling_tile

    assert filling_tile(512, 4, 262144, 132, False, 1) == (128, 1)
    assert filling_tile(1024, 4, 262144, 132, True, 1) == (128, 1)
    assert filling_tile(1024, 4, 1048576, 132, True, 1) == (512, 2)


def test_a_sized_tile_that_keeps_its_warps_cuts_each_threads_elements(monkeypatch):
    """SIZED_WARPS (bench --sized-warps) at the tuned 4: each thread's elements are cut first, down to one
    16-byte vector, then the warps: 4 float32 elements per thread at 4 warps, a pair of quads per thread at 2
    warps in bfloat16, both 512 programs at 262,144 elements."""
    from diffusion_kernels.launch.tiling import filling_tile

    # launch.tiling is the function of that name; its module is read from sys.modules.
    monkeypatch.setattr(sys.modules["diffusion_kernels.launch.tiling"], "SIZED_WARPS", 4)
    assert filling_tile(512, 4, 262144, 132, False, 1) == (128, 4)
    assert filling_tile(1024, 4, 262144, 132, True, 1) == (128, 2)
    assert filling_tile(512, 4, 16777216, 132, False, 1) == (512, 4)


def test_no_gpu_means_no_sizing():
    from diffusion_kernels.launch.tiling import gpu_units

    assert gpu_units(torch.device("cpu")) is None and gpu_units("meta") is None


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
@pytest.mark.parametrize("shape", [(4, 3, 8, 8), (3, 5, 7), (1,)])
def test_a_tile_sized_to_the_gpu_draws_the_same_noise(monkeypatch, device, dtype, shape):
    """The launcher's tile sized for a GPU of 132 SMs (here, smaller tiles and fewer warps than the default)
    gives bit for bit what the default tile gives: the noise is a function of position."""
    import diffusion_kernels as dk
    from diffusion_kernels.noising import launcher as noising_launcher
    from diffusion_kernels.noising import plans

    schedule = dk.NoiseSchedule.linear()
    x0 = torch.randn(shape).to(dtype).to(device)
    t = torch.tensor([7, 500, 999, 0][:shape[0]], device=device)
    expected = [dk.q_sample(x0, t, schedule, seed=11, return_noise=True, backend="triton", stream=s) for s in (0, None)]
    monkeypatch.setattr(noising_launcher, "gpu_units", lambda device: 132)
    monkeypatch.setattr(plans, "_PLANS", {})
    noising_launcher._launch_settings.cache_clear()
    try:
        for (out, eps), stream in zip(expected, (0, None)):
            got_out, got_eps = dk.q_sample(x0, t, schedule, seed=11, return_noise=True, backend="triton", stream=stream)
            assert torch.equal(got_out, out) and torch.equal(got_eps, eps)
    finally:
        noising_launcher._launch_settings.cache_clear()


@pytest.mark.parametrize("shape", [(2, 4, 64, 64), (4, 3, 8, 8)])
def test_bfloat16_read_as_words_gives_what_a_misaligned_view_gives(device, shape):
    """A bf16 batch whose rows are whole tiles is read as 32-bit words; the same values in a view that starts
    2 bytes into its buffer (which may not be read so) give the same x_t and ε bit for bit."""
    import diffusion_kernels as dk
    from diffusion_kernels.noising import plans

    schedule = dk.NoiseSchedule.linear()
    x0 = torch.randn(shape).to(torch.bfloat16).to(device)
    buffer = torch.empty(x0.numel() + 1, dtype=torch.bfloat16, device=device)
    shifted = buffer[1:].view(shape)
    shifted.copy_(x0)
    assert shifted.data_ptr() % 4 == 2 and x0.data_ptr() % 4 == 0
    t = torch.tensor([7, 500, 999, 0][:shape[0]], device=device)
    for plan in ({}, None):  # the plain path's plan, learnt on the aligned batch, then the full path
        if plan is not None:
            plans._PLANS.clear()
        aligned = dk.q_sample(x0, t, schedule, seed=5, return_noise=True, backend="triton")
        misaligned = dk.q_sample(shifted, t, schedule, seed=5, return_noise=True, backend="triton")
        assert torch.equal(aligned[0], misaligned[0]) and torch.equal(aligned[1], misaligned[1])


def _loss_and_grad(x0, t):
    """The ε loss of a fixed prediction against x0 noised at t (seed 11), and the prediction's gradient."""
    import diffusion_kernels as dk

    _, handle = dk.q_sample(x0, t, dk.NoiseSchedule.linear(), seed=11, return_noise="seed", backend="triton")
    pred = torch.linspace(-1, 1, x0.numel()).reshape(x0.shape).to(x0.dtype).to(x0.device).requires_grad_()
    loss = dk.diffusion_loss(pred, handle, backend="triton")
    loss.backward()
    return loss.detach(), pred.grad


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_a_loss_sized_to_the_gpu_gives_the_same_gradient_and_loss(monkeypatch, device, dtype):
    """The loss's tiles sized for a GPU of 132 SMs: the gradient (one element per element) bit for bit the
    default tile's, the loss the same up to the order its row sums add the programs' partial sums."""
    from diffusion_kernels.loss import launcher as loss_launcher

    x0 = torch.randn(4, 3, 8, 8).to(dtype).to(device)
    t = torch.tensor([7, 500, 999, 0], device=device)
    expected = _loss_and_grad(x0, t)
    monkeypatch.setattr(loss_launcher, "gpu_units", lambda device: 132)
    got = _loss_and_grad(x0, t)
    torch.testing.assert_close(got[0], expected[0], rtol=1e-6, atol=0)
    assert torch.equal(got[1], expected[1])


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_a_loss_whose_rows_fewer_warps_make_whole_runs_unmasked_with_the_same_gradient(monkeypatch, device, dtype):
    """Rows of 768 elements (3·256): on a GPU the loss takes a quarter of its tile at one warp, whose tiles the
    rows are (launch.tiling.whole_row_tile), and runs them unmasked; the gradient comes out bit for bit the
    default tile's, the loss the same up to the order its row sums add the programs' partial sums."""
    from diffusion_kernels.launch.tiling import WHOLE_TILES, row_mode
    from diffusion_kernels.loss import launcher as loss_launcher

    x0 = torch.randn(2, 3, 16, 16).to(dtype).to(device)
    t = torch.tensor([7, 999], device=device)
    expected = _loss_and_grad(x0, t)
    tiles = []
    real = loss_launcher._mse_setup
    monkeypatch.setattr(loss_launcher, "gpu_units", lambda device: 1)
    monkeypatch.setattr(loss_launcher, "fewest_warps", lambda sms: 1)
    monkeypatch.setattr(loss_launcher, "_mse_setup", lambda *args: tiles.append(real(*args)[1]) or real(*args))
    got = _loss_and_grad(x0, t)
    assert len(tiles) == 2  # the forward and the backward
    for tile in tiles:
        assert tile.warps == 1 and 768 % (4 * tile.block) == 0 and row_mode(tile, 0, 0) == WHOLE_TILES
    torch.testing.assert_close(got[0], expected[0], rtol=1e-6, atol=0)
    assert torch.equal(got[1], expected[1])


@pytest.mark.parametrize("check_t", [False, True])
def test_a_compiled_launch_fuses_multiply_adds_and_an_interpreted_one_takes_no_compile_options(monkeypatch,
                                                                                               check_t):
    """Every compiled launch asks for fused multiply-adds (the kernels' instruction counts and one-rounding
    forms assume them; Triton's default, left unset, is to turn to unfused), a checked one the device-side
    assertion as well; under Triton's interpreter a launch takes its warps alone."""
    module = sys.modules["diffusion_kernels.launch.tiling"]  # launch.tiling is the function of that name
    monkeypatch.setattr(module, "interpreter_active", lambda: False)
    compiled = module.launch_options(noising_kernels, "cpu", 2, check_t)
    assert compiled["num_warps"] == 2 and compiled["enable_fp_fusion"] is True
    assert compiled.get("debug", False) == check_t
    monkeypatch.setattr(module, "interpreter_active", lambda: True)
    assert module.launch_options(noising_kernels, "cpu", 2, check_t) == {"num_warps": 2}
