"""MSE against the noise stream, regenerating ε from its seed instead of reading a stored tensor.

loss = Σ (prediction − ε)² (the host divides for the mean); the gradient is
2·(prediction − ε)·scale. ε comes from the same tile geometry and stream as
q_sample's (rows = entries of t, for the per-row offset noise), so it is
bit-identical to what the noising kernel drew.
"""
import triton
import triton.language as tl

from .convert import to_output
from .philox_normal import channels_last_noise, draw_noise, load_seed
from .tiles import channels_last_tile, offset_like, row_tile, strided_offset, unravel

# Same tiling as q_sample.py, for the same reason: the same Philox work per element.
BLOCK_QUADS = 512
BLOCK_QUADS_PAIRED = 1024
BLOCK_QUADS_STRIDED = 256
NUM_WARPS = 4
INTERPRETER_BLOCK_QUADS = 4096

# Values that change from call to call: specialising on them (== 1, % 16)
# would only multiply compiled variants.
_PER_CALL_CHANNELS_LAST = ["row_divisor", "seed_lo", "seed_hi", "stream", "offset_strength"]
_PER_CALL_ARGS = _PER_CALL_CHANNELS_LAST + ["d1", "d2", "d3", "d4"]


@triton.jit(do_not_specialize=_PER_CALL_ARGS)
def noise_mse_fwd_kernel(
    pred_ptr, partial_ptr,
    row_len, chunks_per_row, row_divisor,
    seed_lo, seed_hi, seed_ptr, stream, offset_strength,
    z1, z2, z3, z4, d1, d2, d3, d4, ps0, ps1, ps2, ps3, ps4,
    NDIM: tl.constexpr, HAS_OFFSET: tl.constexpr, SEED_FROM_PTR: tl.constexpr, BLOCK: tl.constexpr,
    MATH: tl.constexpr, PAIRED: tl.constexpr,
):
    pid, row, first_quad, idx, mask = row_tile(row_len, chunks_per_row, row_divisor, 0, BLOCK)
    pos = unravel(idx, NDIM, z1, z2, z3, z4, d1, d2, d3, d4)
    seed = load_seed(seed_lo, seed_hi, seed_ptr, SEED_FROM_PTR)
    eps = draw_noise(seed, first_quad, stream, 0, row, offset_strength, BLOCK, PAIRED, HAS_OFFSET, MATH)
    pred = tl.load(pred_ptr + strided_offset(pos, NDIM, ps0, ps1, ps2, ps3, ps4),
                   mask=mask, other=0.0, eviction_policy="evict_first").to(tl.float32)
    diff = tl.where(mask, pred - eps, 0.0)
    tl.store(partial_ptr + pid, tl.sum(diff * diff, axis=0))


@triton.jit(do_not_specialize=_PER_CALL_ARGS)
def noise_mse_bwd_kernel(
    pred_ptr, grad_ptr, upstream_ptr, scale,
    row_len, chunks_per_row, row_divisor,
    seed_lo, seed_hi, seed_ptr, stream, offset_strength,
    z1, z2, z3, z4, d1, d2, d3, d4, ps0, ps1, ps2, ps3, ps4, gs0, gs1, gs2, gs3, gs4,
    NDIM: tl.constexpr, SHARED_LAYOUT: tl.constexpr, HAS_OFFSET: tl.constexpr, SEED_FROM_PTR: tl.constexpr,
    BLOCK: tl.constexpr, SOFT_BF16: tl.constexpr, MATH: tl.constexpr, PAIRED: tl.constexpr,
):
    """grad = 2·scale·upstream·(prediction − ε); the upstream gradient is read on the device (no sync)."""
    pid, row, first_quad, idx, mask = row_tile(row_len, chunks_per_row, row_divisor, 0, BLOCK)
    pos = unravel(idx, NDIM, z1, z2, z3, z4, d1, d2, d3, d4)
    seed = load_seed(seed_lo, seed_hi, seed_ptr, SEED_FROM_PTR)
    eps = draw_noise(seed, first_quad, stream, 0, row, offset_strength, BLOCK, PAIRED, HAS_OFFSET, MATH)
    pred_off = strided_offset(pos, NDIM, ps0, ps1, ps2, ps3, ps4)
    pred = tl.load(pred_ptr + pred_off, mask=mask, other=0.0, eviction_policy="evict_first").to(tl.float32)
    factor = 2.0 * scale * tl.load(upstream_ptr).to(tl.float32)
    tl.store(grad_ptr + offset_like(pred_off, pos, NDIM, SHARED_LAYOUT, gs0, gs1, gs2, gs3, gs4),
             to_output(factor * (pred - eps), grad_ptr.dtype.element_ty, SOFT_BF16), mask=mask)


# A channels-last prediction (channels_last, channels_last_3d): ε regenerated in
# memory order on whole quads, as q_sample's channels-last kernel draws it.
@triton.jit(do_not_specialize=_PER_CALL_CHANNELS_LAST)
def noise_mse_fwd_channels_last_kernel(
    pred_ptr, partial_ptr, t_stride,
    plane_quads, chunks_per_row, row_divisor,
    seed_lo, seed_hi, seed_ptr, stream, offset_strength,
    C: tl.constexpr, HAS_OFFSET: tl.constexpr, SEED_FROM_PTR: tl.constexpr, BLOCK_J: tl.constexpr,
    MATH: tl.constexpr,
):
    pid, sample, j0, offset, mask = channels_last_tile(plane_quads, chunks_per_row, row_divisor, C, BLOCK_J)
    seed = load_seed(seed_lo, seed_hi, seed_ptr, SEED_FROM_PTR)
    eps = channels_last_noise(seed, sample, sample * t_stride, j0, plane_quads, stream, 0, offset_strength, C,
                              BLOCK_J, HAS_OFFSET, MATH)
    pred = tl.load(pred_ptr + offset, mask=mask, other=0.0, eviction_policy="evict_first").to(tl.float32)
    diff = tl.where(mask, pred - eps, 0.0)
    tl.store(partial_ptr + pid, tl.sum(diff * diff, axis=0))


@triton.jit(do_not_specialize=_PER_CALL_CHANNELS_LAST)
def noise_mse_bwd_channels_last_kernel(
    pred_ptr, grad_ptr, upstream_ptr, scale, t_stride,
    plane_quads, chunks_per_row, row_divisor,
    seed_lo, seed_hi, seed_ptr, stream, offset_strength,
    C: tl.constexpr, HAS_OFFSET: tl.constexpr, SEED_FROM_PTR: tl.constexpr, BLOCK_J: tl.constexpr,
    SOFT_BF16: tl.constexpr, MATH: tl.constexpr,
):
    pid, sample, j0, offset, mask = channels_last_tile(plane_quads, chunks_per_row, row_divisor, C, BLOCK_J)
    seed = load_seed(seed_lo, seed_hi, seed_ptr, SEED_FROM_PTR)
    eps = channels_last_noise(seed, sample, sample * t_stride, j0, plane_quads, stream, 0, offset_strength, C,
                              BLOCK_J, HAS_OFFSET, MATH)
    pred = tl.load(pred_ptr + offset, mask=mask, other=0.0, eviction_policy="evict_first").to(tl.float32)
    factor = 2.0 * scale * tl.load(upstream_ptr).to(tl.float32)
    tl.store(grad_ptr + offset, to_output(factor * (pred - eps), grad_ptr.dtype.element_ty, SOFT_BF16), mask=mask)
