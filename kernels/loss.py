"""The diffusion loss against the noise stream, regenerating ε from its seed instead of reading a stored tensor.

Per element the residual is r = prediction − target with target = ce[row]·ε + cx[row]·x0: the
objective's coefficients per row (ε: 1, 0; x0: 0, 1; v: sqrt(ᾱ), −sqrt(1 − ᾱ); flow: 1, −1).
The forward writes each program's Σ r² (programs never straddle rows, so the host adds them per
row: per-sample losses without atomics, in a fixed order); the backward writes scale[row]·r, the
weighting, the reduction and the upstream gradient folded into one per-row factor on the device.
ε comes from the same tile geometry and stream as q_sample's (rows = entries of t, for the
per-row offset noise), so it is bit-identical to what the noising kernel drew.

Switches: HAS_EPS (the target has ε: an x0 target draws nothing), EPS_SCALED (ce is a table, else 1),
HAS_X0 (the target reads x0 with the cx table).
"""
import triton
import triton.language as tl

from .convert import to_output
from .philox_normal import channels_last_noise, draw_noise, load_seed
from .tiles import WHOLE_TILES, channels_last_tile, noise_row, offset_like, row_tile, strided_offset, unravel

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


@triton.jit
def _target(eps, x0, ce_ptr, cx_ptr, row, HAS_EPS: tl.constexpr, EPS_SCALED: tl.constexpr,
            HAS_X0: tl.constexpr):
    """ce[row]·ε + cx[row]·x0, the terms the objective has."""
    target = tl.zeros_like(x0)
    if HAS_EPS:
        if EPS_SCALED:
            target = tl.load(ce_ptr + row) * eps
        else:
            target = eps
    if HAS_X0:
        target += tl.load(cx_ptr + row) * x0
    return target


@triton.jit
def _strided_residual(pred_ptr, x0_ptr, ce_ptr, cx_ptr, pos, mask, row, orow, first_quad, seed, stream,
                      offset_strength,
                      NDIM: tl.constexpr, SHARED_LAYOUT: tl.constexpr, ps0, ps1, ps2, ps3, ps4,
                      xs0, xs1, xs2, xs3, xs4, HAS_OFFSET: tl.constexpr, HAS_EPS: tl.constexpr,
                      EPS_SCALED: tl.constexpr, HAS_X0: tl.constexpr, BLOCK: tl.constexpr, MATH: tl.constexpr,
                      PAIRED: tl.constexpr, ALIGNED: tl.constexpr):
    """(prediction − target, the prediction's offsets), zero on masked lanes; ``orow`` the row of t whose
    offset normal the row draws (tiles.noise_row); ALIGNED: the tile starts at a multiple of BLOCK quads
    (philox_normal.tile_quads)."""
    pred_off = strided_offset(pos, NDIM, ps0, ps1, ps2, ps3, ps4)
    pred = tl.load(pred_ptr + pred_off, mask=mask, other=0.0, eviction_policy="evict_first").to(tl.float32)
    eps = pred
    if HAS_EPS:
        eps = draw_noise(seed, first_quad, stream, 0, orow, offset_strength, BLOCK, PAIRED, HAS_OFFSET, MATH,
                         ALIGNED)
    x0 = pred
    if HAS_X0:
        x0 = tl.load(x0_ptr + offset_like(pred_off, pos, NDIM, SHARED_LAYOUT, xs0, xs1, xs2, xs3, xs4),
                     mask=mask, other=0.0, eviction_policy="evict_first").to(tl.float32)
    target = _target(eps, x0, ce_ptr, cx_ptr, row, HAS_EPS, EPS_SCALED, HAS_X0)
    return tl.where(mask, pred - target, 0.0), pred_off


@triton.jit(do_not_specialize=_PER_CALL_ARGS)
def loss_fwd_kernel(
    pred_ptr, x0_ptr, ce_ptr, cx_ptr, partial_ptr,
    row_len, chunks_per_row, row_divisor, units_ptr,
    seed_lo, seed_hi, seed_ptr, stream, offset_strength,
    z1, z2, z3, z4, d1, d2, d3, d4, ps0, ps1, ps2, ps3, ps4, xs0, xs1, xs2, xs3, xs4,
    NDIM: tl.constexpr, SHARED_LAYOUT: tl.constexpr, HAS_OFFSET: tl.constexpr, SEED_FROM_PTR: tl.constexpr,
    HAS_EPS: tl.constexpr, EPS_SCALED: tl.constexpr, HAS_X0: tl.constexpr, BLOCK: tl.constexpr,
    MATH: tl.constexpr, PAIRED: tl.constexpr, UNITS: tl.constexpr,
):
    pid, row, first_quad, idx, mask, _ = row_tile(row_len, chunks_per_row, row_divisor, 0, units_ptr, BLOCK, UNITS)
    pos = unravel(idx, NDIM, z1, z2, z3, z4, d1, d2, d3, d4)
    seed = load_seed(seed_lo, seed_hi, seed_ptr, SEED_FROM_PTR)
    diff, _ = _strided_residual(pred_ptr, x0_ptr, ce_ptr, cx_ptr, pos, mask, row,
                                noise_row(row, units_ptr, UNITS), first_quad, seed, stream, offset_strength, NDIM,
                                SHARED_LAYOUT, ps0, ps1, ps2, ps3, ps4, xs0, xs1, xs2, xs3, xs4, HAS_OFFSET, HAS_EPS,
                                EPS_SCALED, HAS_X0, BLOCK, MATH, PAIRED, UNITS >= WHOLE_TILES)
    tl.store(partial_ptr + pid, tl.sum(diff * diff, axis=0))


@triton.jit(do_not_specialize=_PER_CALL_ARGS)
def loss_bwd_kernel(
    pred_ptr, x0_ptr, ce_ptr, cx_ptr, grad_ptr, scale_ptr,
    row_len, chunks_per_row, row_divisor, units_ptr,
    seed_lo, seed_hi, seed_ptr, stream, offset_strength,
    z1, z2, z3, z4, d1, d2, d3, d4, ps0, ps1, ps2, ps3, ps4, xs0, xs1, xs2, xs3, xs4, gs0, gs1, gs2, gs3, gs4,
    NDIM: tl.constexpr, SHARED_LAYOUT: tl.constexpr, HAS_OFFSET: tl.constexpr, SEED_FROM_PTR: tl.constexpr,
    HAS_EPS: tl.constexpr, EPS_SCALED: tl.constexpr, HAS_X0: tl.constexpr, BLOCK: tl.constexpr,
    SOFT_BF16: tl.constexpr, MATH: tl.constexpr, PAIRED: tl.constexpr, UNITS: tl.constexpr,
):
    """grad = scale[row]·(prediction − target); scale (2·weight·reduction·upstream) is read on the device."""
    pid, row, first_quad, idx, mask, _ = row_tile(row_len, chunks_per_row, row_divisor, 0, units_ptr, BLOCK, UNITS)
    pos = unravel(idx, NDIM, z1, z2, z3, z4, d1, d2, d3, d4)
    seed = load_seed(seed_lo, seed_hi, seed_ptr, SEED_FROM_PTR)
    diff, pred_off = _strided_residual(pred_ptr, x0_ptr, ce_ptr, cx_ptr, pos, mask, row,
                                       noise_row(row, units_ptr, UNITS), first_quad, seed, stream, offset_strength,
                                       NDIM, SHARED_LAYOUT, ps0, ps1, ps2, ps3, ps4, xs0, xs1, xs2, xs3, xs4,
                                       HAS_OFFSET, HAS_EPS, EPS_SCALED, HAS_X0, BLOCK, MATH, PAIRED,
                                       UNITS >= WHOLE_TILES)
    factor = tl.load(scale_ptr + row)
    tl.store(grad_ptr + offset_like(pred_off, pos, NDIM, SHARED_LAYOUT, gs0, gs1, gs2, gs3, gs4),
             to_output(factor * diff, grad_ptr.dtype.element_ty, SOFT_BF16, MATH), mask=mask)


# A channels-last prediction (channels_last, channels_last_3d; x0 in the same layout): ε
# regenerated in memory order on whole quads, as q_sample's channels-last kernel draws it.
@triton.jit
def _channels_last_residual(pred_ptr, x0_ptr, ce_ptr, cx_ptr, t_stride, plane_quads, chunks_per_row, row_divisor,
                            seed_lo, seed_hi, seed_ptr, stream, offset_strength, C: tl.constexpr,
                            HAS_OFFSET: tl.constexpr, SEED_FROM_PTR: tl.constexpr, HAS_EPS: tl.constexpr,
                            EPS_SCALED: tl.constexpr, HAS_X0: tl.constexpr, BLOCK_J: tl.constexpr,
                            MATH: tl.constexpr):
    """(pid, row, prediction − target, memory offsets, mask) of a channels-last program."""
    pid, sample, j0, offset, mask = channels_last_tile(plane_quads, chunks_per_row, row_divisor, C, BLOCK_J)
    row = sample * t_stride
    pred = tl.load(pred_ptr + offset, mask=mask, other=0.0, eviction_policy="evict_first").to(tl.float32)
    eps = pred
    if HAS_EPS:
        seed = load_seed(seed_lo, seed_hi, seed_ptr, SEED_FROM_PTR)
        eps = channels_last_noise(seed, sample, row, j0, plane_quads, stream, 0, offset_strength, C, BLOCK_J,
                                  HAS_OFFSET, MATH)
    x0 = pred
    if HAS_X0:
        x0 = tl.load(x0_ptr + offset, mask=mask, other=0.0, eviction_policy="evict_first").to(tl.float32)
    target = _target(eps, x0, ce_ptr, cx_ptr, row, HAS_EPS, EPS_SCALED, HAS_X0)
    return pid, row, tl.where(mask, pred - target, 0.0), offset, mask


@triton.jit(do_not_specialize=_PER_CALL_CHANNELS_LAST)
def loss_fwd_channels_last_kernel(
    pred_ptr, x0_ptr, ce_ptr, cx_ptr, partial_ptr, t_stride,
    plane_quads, chunks_per_row, row_divisor,
    seed_lo, seed_hi, seed_ptr, stream, offset_strength,
    C: tl.constexpr, HAS_OFFSET: tl.constexpr, SEED_FROM_PTR: tl.constexpr, HAS_EPS: tl.constexpr,
    EPS_SCALED: tl.constexpr, HAS_X0: tl.constexpr, BLOCK_J: tl.constexpr, MATH: tl.constexpr,
):
    pid, row, diff, offset, mask = _channels_last_residual(
        pred_ptr, x0_ptr, ce_ptr, cx_ptr, t_stride, plane_quads, chunks_per_row, row_divisor, seed_lo, seed_hi,
        seed_ptr, stream, offset_strength, C, HAS_OFFSET, SEED_FROM_PTR, HAS_EPS, EPS_SCALED, HAS_X0, BLOCK_J, MATH)
    tl.store(partial_ptr + pid, tl.sum(diff * diff, axis=0))


@triton.jit(do_not_specialize=_PER_CALL_CHANNELS_LAST)
def loss_bwd_channels_last_kernel(
    pred_ptr, x0_ptr, ce_ptr, cx_ptr, grad_ptr, scale_ptr, t_stride,
    plane_quads, chunks_per_row, row_divisor,
    seed_lo, seed_hi, seed_ptr, stream, offset_strength,
    C: tl.constexpr, HAS_OFFSET: tl.constexpr, SEED_FROM_PTR: tl.constexpr, HAS_EPS: tl.constexpr,
    EPS_SCALED: tl.constexpr, HAS_X0: tl.constexpr, BLOCK_J: tl.constexpr, SOFT_BF16: tl.constexpr,
    MATH: tl.constexpr,
):
    pid, row, diff, offset, mask = _channels_last_residual(
        pred_ptr, x0_ptr, ce_ptr, cx_ptr, t_stride, plane_quads, chunks_per_row, row_divisor, seed_lo, seed_hi,
        seed_ptr, stream, offset_strength, C, HAS_OFFSET, SEED_FROM_PTR, HAS_EPS, EPS_SCALED, HAS_X0, BLOCK_J, MATH)
    factor = tl.load(scale_ptr + row)
    tl.store(grad_ptr + offset, to_output(factor * diff, grad_ptr.dtype.element_ty, SOFT_BF16, MATH), mask=mask)
