"""The fused noising kernels: out = a[t]·x0 + b[t]·ε, and optionally v = c[t]·x0 + d[t]·ε.

One family serves every noising form: DDPM's q_sample (a, b = sqrt(ᾱ),
sqrt(1 − ᾱ)), one forward step (sqrt(α), sqrt(β)), flow matching (1 − σ, σ),
EDM (1, σ), the v-target (c, d = −sqrt(1 − ᾱ), sqrt(ᾱ)) and the posterior
mean of guided-diffusion (ε replaced by x_t). The coefficients are per row
(per entry of ``t``), gathered once per program.

Arithmetic is float32 whatever the I/O dtype; loads are converted up and
stores rounded once, at the end.
"""
import triton
import triton.language as tl

from .convert import load_bf16_words, to_output
from .philox_normal import PERTURB_STEP, channels_last_noise, channels_last_normals, draw_noise, load_seed, tile_normals
from .tiles import (WHOLE_RUNS, WHOLE_TILES, channels_last_tile, noise_row, offset_like, row_coefficients, row_tile,
                    strided_offset, tile_in_row, tiles_in_row, unravel)

# Quads (4 elements) per program and warps per program. A drawn-noise kernel
# in bf16 is bound by instruction issue, not memory (Philox alone is ~10
# instructions per element), and each program also pays ~100 instructions of
# setup (row, coefficients, masks, addresses, the Philox key schedule), so
# more elements per thread leave fewer instructions per element (sm_90 cubin,
# tests/gpu_compile_check.py, training batch, drawn noise):
#   16 per thread (512 quads at 4 warps): ~32 per element, 32-50 registers;
#   32 per thread (1024 quads):          ~29 per element, 56-70 registers.
# 2-byte I/O moves half the bytes per element, so it takes the larger tile;
# 4-byte I/O, with twice the time per element to spend, keeps the smaller tile
# and full occupancy. The choice never changes the noise stream (see
# philox_normal.py).
BLOCK_QUADS = 512
BLOCK_QUADS_PAIRED = 1024  # 2-byte I/O (philox_normal.tile_normals' PAIRED layout)
# A strided layout addresses every element on its own (a 64-bit pointer per
# element and tensor, held from the loads to the stores): at the tiles above
# that takes 160-255 registers and spills. 8 elements per thread keep it in
# registers.
BLOCK_QUADS_STRIDED = 256
NUM_WARPS = 4
# Triton's CPU interpreter pays per operation, not per element: there one
# program takes up to this many quads (shrunk to what a row needs).
INTERPRETER_BLOCK_QUADS = 4096

# Values that change from call to call: specialising on them (== 1, % 16)
# would only multiply compiled variants.
_PER_CALL_CONTIGUOUS = ["row_divisor", "seed_lo", "seed_hi", "stream", "step", "offset_strength"]
_PER_CALL_ARGS = _PER_CALL_CONTIGUOUS + ["d1", "d2", "d3", "d4"]


@triton.jit(do_not_specialize=_PER_CALL_ARGS)
def noising_fwd_kernel(
    x0_ptr, noise_ptr, out_ptr, eps_ptr, v_ptr,
    t_ptr, a_ptr, b_ptr, c_ptr, d_ptr, T,
    row_len, chunks_per_row, row_divisor, elem_offset, units_ptr,
    seed_lo, seed_hi, seed_ptr, stream, step, offset_strength, perturbation,
    z1, z2, z3, z4, d1, d2, d3, d4,
    xs0, xs1, xs2, xs3, xs4,
    ns0, ns1, ns2, ns3, ns4,
    os0, os1, os2, os3, os4,
    es0, es1, es2, es3, es4,
    vs0, vs1, vs2, vs3, vs4,
    NDIM: tl.constexpr, SHARED_LAYOUT: tl.constexpr, HAS_NOISE: tl.constexpr, WRITE_NOISE: tl.constexpr,
    WRITE_V: tl.constexpr, HAS_OFFSET: tl.constexpr, SEED_FROM_PTR: tl.constexpr, BLOCK: tl.constexpr,
    SOFT_BF16: tl.constexpr, MATH: tl.constexpr, PAIRED: tl.constexpr, PERTURB: tl.constexpr,
    UNITS: tl.constexpr, TILES: tl.constexpr,
):
    """PERTURB (drawn ε only): x_t from ε + perturbation·ε′ while ε and v keep ε (input perturbation).
    TILES (WHOLE_TILES rows and the NARROW modes): the program runs that many consecutive tiles of its row
    (those that reach into it), one after the other, so the row's coefficients, the Philox key schedule and
    the addressing are set up once for them."""
    pid, row, first_quad, idx, first_mask, s = row_tile(row_len, chunks_per_row, row_divisor, elem_offset, units_ptr,
                                                        BLOCK, UNITS, TILES)
    a, b = row_coefficients(t_ptr, a_ptr, b_ptr, row, T)
    # A masked row's last program may run fewer tiles than TILES (tiles_in_row); the test is a constant
    # true, folded away, where every program runs all of them.
    runs = tiles_in_row(s, row_len, BLOCK, UNITS, TILES)
    every_tile: tl.constexpr = UNITS == WHOLE_TILES or UNITS == WHOLE_RUNS or TILES == 1
    # Drawn ε that is only ever scaled by b[t] (not written, not in v, no offset or perturbation).
    X_T_ONLY: tl.constexpr = not (HAS_NOISE or WRITE_NOISE or WRITE_V or HAS_OFFSET or PERTURB)
    for k in tl.range(0, TILES):
        if (k < runs) | every_tile:
            tile_quad = first_quad + k * BLOCK
            tile_idx = idx + k * (4 * BLOCK)
            mask = first_mask
            if UNITS != WHOLE_TILES and UNITS != WHOLE_RUNS and TILES > 1:
                mask = tile_in_row(s, row_len, k, BLOCK)
            pos = unravel(tile_idx, NDIM, z1, z2, z3, z4, d1, d2, d3, d4)
            x0_off = strided_offset(pos, NDIM, xs0, xs1, xs2, xs3, xs4)
            if UNITS == WHOLE_TILES and NDIM == 1 and PAIRED and x0_ptr.dtype.element_ty == tl.bfloat16:
                x0 = load_bf16_words(x0_ptr, tile_quad * 4, 4 * BLOCK)
            else:
                x0 = tl.load(
                    x0_ptr + x0_off,
                    mask=mask, other=0.0, eviction_policy="evict_first",
                ).to(tl.float32)
            if HAS_NOISE:
                eps = tl.load(
                    noise_ptr + offset_like(x0_off, pos, NDIM, SHARED_LAYOUT, ns0, ns1, ns2, ns3, ns4),
                    mask=mask, other=0.0, eviction_policy="evict_first",
                ).to(tl.float32)
            elif X_T_ONLY:
                # x_t alone: b[t]·ε drawn as one product per pair (box_muller's scale).
                scaled = tile_normals(load_seed(seed_lo, seed_hi, seed_ptr, SEED_FROM_PTR), tile_quad, stream, step,
                                      BLOCK, PAIRED, MATH, UNITS >= WHOLE_TILES, b)
            else:
                seed = load_seed(seed_lo, seed_hi, seed_ptr, SEED_FROM_PTR)
                eps = draw_noise(seed, tile_quad, stream, step, noise_row(row, units_ptr, UNITS), offset_strength,
                                 BLOCK, PAIRED, HAS_OFFSET, MATH, UNITS >= WHOLE_TILES)
            if X_T_ONLY:
                x_t = a * x0 + scaled
            else:
                noised = eps
                if PERTURB:
                    perturb_seed = load_seed(seed_lo, seed_hi, seed_ptr, SEED_FROM_PTR)
                    noised = eps + perturbation * tile_normals(perturb_seed, tile_quad, stream, PERTURB_STEP, BLOCK,
                                                               PAIRED, MATH, UNITS >= WHOLE_TILES)
                x_t = a * x0 + b * noised

            tl.store(
                out_ptr + offset_like(x0_off, pos, NDIM, SHARED_LAYOUT, os0, os1, os2, os3, os4),
                to_output(x_t, out_ptr.dtype.element_ty, SOFT_BF16, MATH), mask=mask,
            )
            if WRITE_NOISE:
                tl.store(
                    eps_ptr + offset_like(x0_off, pos, NDIM, SHARED_LAYOUT, es0, es1, es2, es3, es4),
                    to_output(eps, eps_ptr.dtype.element_ty, SOFT_BF16, MATH, True), mask=mask,
                )
            if WRITE_V:
                c, d = row_coefficients(t_ptr, c_ptr, d_ptr, row, T)
                tl.store(
                    v_ptr + offset_like(x0_off, pos, NDIM, SHARED_LAYOUT, vs0, vs1, vs2, vs3, vs4),
                    to_output(c * x0 + d * eps, v_ptr.dtype.element_ty, SOFT_BF16, MATH), mask=mask,
                )


@triton.jit(do_not_specialize=_PER_CALL_ARGS)
def noising_bwd_kernel(
    g_ptr, gv_ptr, x0_ptr, noise_ptr, gx_ptr, gn_ptr, partial_ptr,
    t_ptr, a_ptr, b_ptr, c_ptr, d_ptr, T,
    row_len, chunks_per_row, row_divisor, elem_offset, units_ptr,
    seed_lo, seed_hi, seed_ptr, stream, step, offset_strength,
    z1, z2, z3, z4, d1, d2, d3, d4,
    gs0, gs1, gs2, gs3, gs4,
    gvs0, gvs1, gvs2, gvs3, gvs4,
    xs0, xs1, xs2, xs3, xs4,
    ns0, ns1, ns2, ns3, ns4,
    gxs0, gxs1, gxs2, gxs3, gxs4,
    gns0, gns1, gns2, gns3, gns4,
    NDIM: tl.constexpr, SHARED_LAYOUT: tl.constexpr, HAS_NOISE: tl.constexpr, HAS_GV: tl.constexpr,
    NEED_GX: tl.constexpr, NEED_GN: tl.constexpr, NEED_PARTIALS: tl.constexpr,
    HAS_OFFSET: tl.constexpr, SEED_FROM_PTR: tl.constexpr, BLOCK: tl.constexpr,
    SOFT_BF16: tl.constexpr, MATH: tl.constexpr, PAIRED: tl.constexpr, UNITS: tl.constexpr,
):
    """Gradients of (out, v) with upstream (g, gv).

    d/dx0 = a·g + c·gv and d/dε = b·g + d·gv. For differentiable tables the
    row's coefficient gradients are Σ g·x0, Σ g·ε, Σ gv·x0, Σ gv·ε; each
    program writes its four partial sums to ``partial_ptr[pid]`` and the host
    adds them per row (deterministic, no atomics). ε is regenerated from the
    seed when it was not given, so the forward never has to keep it.
    """
    pid, row, first_quad, idx, mask, _ = row_tile(row_len, chunks_per_row, row_divisor, elem_offset, units_ptr,
                                                  BLOCK, UNITS)
    pos = unravel(idx, NDIM, z1, z2, z3, z4, d1, d2, d3, d4)
    a, b = row_coefficients(t_ptr, a_ptr, b_ptr, row, T)

    g_off = strided_offset(pos, NDIM, gs0, gs1, gs2, gs3, gs4)
    g = tl.load(
        g_ptr + g_off,
        mask=mask, other=0.0, eviction_policy="evict_first",
    ).to(tl.float32)
    gx = a * g
    gn = b * g
    if HAS_GV:
        c, d = row_coefficients(t_ptr, c_ptr, d_ptr, row, T)
        gv = tl.load(
            gv_ptr + offset_like(g_off, pos, NDIM, SHARED_LAYOUT, gvs0, gvs1, gvs2, gvs3, gvs4),
            mask=mask, other=0.0, eviction_policy="evict_first",
        ).to(tl.float32)
        gx += c * gv
        gn += d * gv
    if NEED_GX:
        tl.store(
            gx_ptr + offset_like(g_off, pos, NDIM, SHARED_LAYOUT, gxs0, gxs1, gxs2, gxs3, gxs4),
            to_output(gx, gx_ptr.dtype.element_ty, SOFT_BF16, MATH), mask=mask,
        )
    if NEED_GN:
        tl.store(
            gn_ptr + offset_like(g_off, pos, NDIM, SHARED_LAYOUT, gns0, gns1, gns2, gns3, gns4),
            to_output(gn, gn_ptr.dtype.element_ty, SOFT_BF16, MATH), mask=mask,
        )
    if NEED_PARTIALS:
        x0 = tl.load(
            x0_ptr + offset_like(g_off, pos, NDIM, SHARED_LAYOUT, xs0, xs1, xs2, xs3, xs4),
            mask=mask, other=0.0,
        ).to(tl.float32)
        if HAS_NOISE:
            eps = tl.load(
                noise_ptr + offset_like(g_off, pos, NDIM, SHARED_LAYOUT, ns0, ns1, ns2, ns3, ns4),
                mask=mask, other=0.0,
            ).to(tl.float32)
        else:
            seed = load_seed(seed_lo, seed_hi, seed_ptr, SEED_FROM_PTR)
            eps = draw_noise(seed, first_quad, stream, step, noise_row(row, units_ptr, UNITS), offset_strength, BLOCK,
                             PAIRED, HAS_OFFSET, MATH, UNITS >= WHOLE_TILES)
            eps = tl.where(mask, eps, 0.0)
        tl.store(partial_ptr + pid * 4, tl.sum(g * x0, axis=0))
        tl.store(partial_ptr + pid * 4 + 1, tl.sum(g * eps, axis=0))
        if HAS_GV:
            tl.store(partial_ptr + pid * 4 + 2, tl.sum(gv * x0, axis=0))
            tl.store(partial_ptr + pid * 4 + 3, tl.sum(gv * eps, axis=0))
        else:
            tl.store(partial_ptr + pid * 4 + 2, 0.0)
            tl.store(partial_ptr + pid * 4 + 3, 0.0)


# Contiguous entry points. Every tensor of the call contiguous (the common case)
# needs no sizes, divisors or strides; leaving those 33 arguments out of the
# signature saves the host a few microseconds per launch in Triton's argument
# binding, which a small batch feels. The bodies are the kernels above, inlined
# with one dim of stride 1.
@triton.jit(do_not_specialize=_PER_CALL_CONTIGUOUS)
def noising_fwd_contiguous_kernel(
    x0_ptr, noise_ptr, out_ptr, eps_ptr, v_ptr,
    t_ptr, a_ptr, b_ptr, c_ptr, d_ptr, T,
    row_len, chunks_per_row, row_divisor, elem_offset, units_ptr,
    seed_lo, seed_hi, seed_ptr, stream, step, offset_strength, perturbation,
    HAS_NOISE: tl.constexpr, WRITE_NOISE: tl.constexpr, WRITE_V: tl.constexpr,
    HAS_OFFSET: tl.constexpr, SEED_FROM_PTR: tl.constexpr, BLOCK: tl.constexpr,
    SOFT_BF16: tl.constexpr, MATH: tl.constexpr, PAIRED: tl.constexpr, PERTURB: tl.constexpr,
    UNITS: tl.constexpr, TILES: tl.constexpr,
):
    noising_fwd_kernel(
        x0_ptr, noise_ptr, out_ptr, eps_ptr, v_ptr, t_ptr, a_ptr, b_ptr, c_ptr, d_ptr, T,
        row_len, chunks_per_row, row_divisor, elem_offset, units_ptr, seed_lo, seed_hi, seed_ptr, stream, step,
        offset_strength,
        perturbation,
        1, 1, 1, 1, 0, 0, 0, 0, 1, 0, 0, 0, 0, 1, 0, 0, 0, 0, 1, 0, 0, 0, 0, 1, 0, 0, 0, 0, 1, 0, 0, 0, 0,
        1, True, HAS_NOISE, WRITE_NOISE, WRITE_V, HAS_OFFSET, SEED_FROM_PTR, BLOCK, SOFT_BF16, MATH, PAIRED,
        PERTURB, UNITS, TILES,
    )


@triton.jit(do_not_specialize=_PER_CALL_CONTIGUOUS)
def noising_bwd_contiguous_kernel(
    g_ptr, gv_ptr, x0_ptr, noise_ptr, gx_ptr, gn_ptr, partial_ptr,
    t_ptr, a_ptr, b_ptr, c_ptr, d_ptr, T,
    row_len, chunks_per_row, row_divisor, elem_offset, units_ptr,
    seed_lo, seed_hi, seed_ptr, stream, step, offset_strength,
    HAS_NOISE: tl.constexpr, HAS_GV: tl.constexpr,
    NEED_GX: tl.constexpr, NEED_GN: tl.constexpr, NEED_PARTIALS: tl.constexpr,
    HAS_OFFSET: tl.constexpr, SEED_FROM_PTR: tl.constexpr, BLOCK: tl.constexpr,
    SOFT_BF16: tl.constexpr, MATH: tl.constexpr, PAIRED: tl.constexpr, UNITS: tl.constexpr,
):
    noising_bwd_kernel(
        g_ptr, gv_ptr, x0_ptr, noise_ptr, gx_ptr, gn_ptr, partial_ptr, t_ptr, a_ptr, b_ptr, c_ptr, d_ptr, T,
        row_len, chunks_per_row, row_divisor, elem_offset, units_ptr, seed_lo, seed_hi, seed_ptr, stream, step,
        offset_strength,
        1, 1, 1, 1, 0, 0, 0, 0, 1, 0, 0, 0, 0, 1, 0, 0, 0, 0, 1, 0, 0, 0, 0, 1, 0, 0, 0, 0, 1, 0, 0, 0, 0,
        1, 0, 0, 0, 0,
        1, True, HAS_NOISE, HAS_GV, NEED_GX, NEED_GN, NEED_PARTIALS, HAS_OFFSET, SEED_FROM_PTR, BLOCK, SOFT_BF16,
        MATH, PAIRED, UNITS,
    )


# Drawn noise into a channels-last layout (channels_last, channels_last_3d).
# The strided kernel would address every element on its own in logical order,
# ~85 instructions per element; this tile works in memory order on whole quads
# (tiles.channels_last_tile) at the contiguous kernel's cost. A program takes
# the contiguous tile's quads per program, BLOCK_J = quads // C columns. The
# launcher takes this path for a power-of-two C up to tiles.CHANNELS_LAST_MAX_C
# and P % 4 == 0; calls that draw no noise run the contiguous kernels in memory
# order instead, and other layouts the strided kernel.
@triton.jit(do_not_specialize=_PER_CALL_CONTIGUOUS)
def noising_fwd_channels_last_kernel(
    x0_ptr, out_ptr, eps_ptr, v_ptr,
    t_ptr, t_stride, a_ptr, b_ptr, c_ptr, d_ptr, T,
    plane_quads, chunks_per_row, row_divisor,
    seed_lo, seed_hi, seed_ptr, stream, step, offset_strength, perturbation,
    C: tl.constexpr, WRITE_NOISE: tl.constexpr, WRITE_V: tl.constexpr, HAS_OFFSET: tl.constexpr,
    SEED_FROM_PTR: tl.constexpr, BLOCK_J: tl.constexpr, SOFT_BF16: tl.constexpr, MATH: tl.constexpr,
    PERTURB: tl.constexpr,
):
    """noising_fwd_kernel with drawn ε for a channels-last layout; ``t_stride`` is 1 for a t per
    sample and 0 for one t (its row then serves every sample)."""
    pid, sample, j0, offset, mask = channels_last_tile(plane_quads, chunks_per_row, row_divisor, C, BLOCK_J)
    row = sample * t_stride
    a, b = row_coefficients(t_ptr, a_ptr, b_ptr, row, T)
    x0 = tl.load(x0_ptr + offset, mask=mask, other=0.0, eviction_policy="evict_first").to(tl.float32)
    seed = load_seed(seed_lo, seed_hi, seed_ptr, SEED_FROM_PTR)
    eps = channels_last_noise(seed, sample, row, j0, plane_quads, stream, step, offset_strength, C, BLOCK_J,
                              HAS_OFFSET, MATH)
    noised = eps
    if PERTURB:
        noised = eps + perturbation * channels_last_normals(seed, sample, j0, plane_quads, stream, PERTURB_STEP, C,
                                                            BLOCK_J, MATH)
    tl.store(out_ptr + offset, to_output(a * x0 + b * noised, out_ptr.dtype.element_ty, SOFT_BF16, MATH), mask=mask)
    if WRITE_NOISE:
        tl.store(eps_ptr + offset, to_output(eps, eps_ptr.dtype.element_ty, SOFT_BF16, MATH, True), mask=mask)
    if WRITE_V:
        c, d = row_coefficients(t_ptr, c_ptr, d_ptr, row, T)
        tl.store(v_ptr + offset, to_output(c * x0 + d * eps, v_ptr.dtype.element_ty, SOFT_BF16, MATH), mask=mask)
