"""Standard normals from Philox4x32-10, four per counter, in registers.

The noise stream (the contract shared with ``diffusion_kernels.reference``):

* key     = the 64-bit seed, split into (low 32 bits, high 32 bits);
* counter = (q mod 2**32, q div 2**32, stream, step), where q = i // 4 is the
  "quad" of the element at logical row-major position i;
* the four 32-bit outputs (r0, r1, r2, r3) of that counter give four normals by
  two Box–Muller transforms, (r0, r1) -> (n0, n1) and (r2, r3) -> (n2, n3);
* element i takes lane i % 4: n0, n1, n2 or n3.

Nothing here depends on a block size, a launch grid or a memory layout, so the
value drawn for an element is a pure function of (seed, stream, step, i).
"""
import triton
import triton.language as tl

from .box_muller import MATH_NVIDIA, box_muller

# Philox4x32-10 constants (Salmon et al. 2011; the same as curand's and
# Triton's tl.philox).
PHILOX_ROUND_A = tl.constexpr(0xD2511F53)
PHILOX_ROUND_B = tl.constexpr(0xCD9E8D57)
PHILOX_KEY_A = tl.constexpr(0x9E3779B9)
PHILOX_KEY_B = tl.constexpr(0xBB67AE85)
PHILOX_ROUNDS = tl.constexpr(10)


# $0, $1 = the high and low words of $2·$3 (mov.b64 unpacks the low word first).
MUL_WIDE_PTX = tl.constexpr("{ .reg .u64 t; mul.wide.u32 t, $2, $3; mov.b64 {$1, $0}, t; }")


@triton.jit
def mul_wide(a, M: tl.constexpr, MATH: tl.constexpr):
    """The high and low words of the 64-bit product a·M (``a`` uint32, M a 32-bit constant).

    On NVIDIA GPUs one mul.wide.u32 (IMAD.WIDE.U32) in inline PTX: written as a 64-bit product, LLVM
    (Triton 3.9's; not 3.6's) may split it into a low multiply and a 64-bit one for the high word, two
    multiplies and an add where one wide multiply gives both words."""
    if MATH == MATH_NVIDIA:
        hi, lo = tl.inline_asm_elementwise(MUL_WIDE_PTX, "=r,=r,r,r", [a, tl.full([], M, tl.uint32)],
                                           dtype=(tl.uint32, tl.uint32), is_pure=True, pack=1)
    else:
        p = a.to(tl.uint64) * M
        hi, lo = (p >> 32).to(tl.uint32), p.to(tl.uint32)
    return hi, lo


@triton.jit
def philox4x32(seed, c0, c1, c2, c3, MATH: tl.constexpr):
    """The four 32-bit outputs of Philox4x32-10 for uint32 counter blocks and a uint64 key.

    The same function as tl.philox, written with one 32×32→64-bit product per
    multiplier: the product's two halves are the round's mulhi and mullo, so
    the GPU issues one wide multiply (IMAD.WIDE.U32) where mul.hi + mul.lo
    would cost two. Philox is most of a bf16 kernel's instructions, and a bf16
    kernel is bound by instruction issue, not by memory, when its Philox is
    not lean.
    """
    k0 = (seed & 0xFFFFFFFF).to(tl.uint32)
    k1 = (seed >> 32).to(tl.uint32)
    return philox_rounds(c0, c1, c2, c3, k0, k1, PHILOX_ROUNDS, MATH)


@triton.jit
def philox_rounds(c0, c1, c2, c3, k0, k1, ROUNDS: tl.constexpr, MATH: tl.constexpr):
    """ROUNDS Philox4x32 rounds on the counter words from the round keys (k0, k1); MATH says the target
    (mul_wide)."""
    for _ in tl.static_range(ROUNDS):
        pa_hi, pa_lo = mul_wide(c0, PHILOX_ROUND_A, MATH)
        pb_hi, pb_lo = mul_wide(c2, PHILOX_ROUND_B, MATH)
        c0 = pb_hi ^ c1 ^ k0
        c2 = pa_hi ^ c3 ^ k1
        c1 = pb_lo
        c3 = pa_lo
        # The key schedule wraps modulo 2**32 by design: exempt from debug-mode overflow checks.
        k0 = tl.add(k0, PHILOX_KEY_A, sanitize_overflow=False)
        k1 = tl.add(k1, PHILOX_KEY_B, sanitize_overflow=False)
    return c0, c1, c2, c3


@triton.jit
def load_seed(seed_lo, seed_hi, seed_ptr, SEED_FROM_PTR: tl.constexpr):
    """The 64-bit Philox key as a uint64 scalar.

    From the two int32 arguments (the seed's halves: one kernel signature for
    every seed value), or, with SEED_FROM_PTR, from an int64 in device memory,
    so a captured CUDA graph reads a seed that changes between replays.
    """
    if SEED_FROM_PTR:
        seed = tl.load(seed_ptr).to(tl.uint64, bitcast=True)
    else:
        seed = (seed_hi.to(tl.uint32, bitcast=True).to(tl.uint64) << 32) | seed_lo.to(
            tl.uint32, bitcast=True
        ).to(tl.uint64)
    return seed


@triton.jit
def quad_normals(seed, quad, stream, step, MATH: tl.constexpr):
    """The four normals of each quad in ``quad`` (an int64 block) for a uint64 ``seed``."""
    return counter_normals(seed, (quad & 0xFFFFFFFF).to(tl.uint32), (quad >> 32).to(tl.uint32), stream, step, MATH)


@triton.jit
def counter_normals(seed, c0, c1, stream, step, MATH: tl.constexpr):
    """The four normals of the quads whose counters' low words are ``c0`` (a uint32 block) and high words
    ``c1`` (a block like it, or one word for all of them)."""
    # stream and step are int32 words (runtime values or constexprs); their bits are the counter's.
    zero = tl.zeros_like(c0).to(tl.int32)
    c1 = (zero.to(tl.uint32, bitcast=True) + c1)
    c2 = (zero + stream).to(tl.uint32, bitcast=True)
    c3 = (zero + step).to(tl.uint32, bitcast=True)
    r0, r1, r2, r3 = philox4x32(seed, c0, c1, c2, c3, MATH)
    n0, n1 = box_muller(r0, r1, MATH)
    n2, n3 = box_muller(r2, r3, MATH)
    return n0, n1, n2, n3


@triton.jit
def philox4x32_one_varying_word(seed, c0, c1, c2, c3, MATH: tl.constexpr):
    """philox4x32 for counters whose words c1, c2, c3 are one word each (scalars) for the whole block c0.

    The first three rounds then have scalar parts, written out so that the scalar products and the scalar
    words each round XORs in are combined once (uniform registers on a GPU: an instruction reads at most
    one, so a word left to combine per quad would be copied to a vector register per quad), and each
    quad's part of rounds 1 and 2 is one wide multiply and one or two XORs; rounds 4 to 10 are
    philox4x32's. The words are philox4x32's: the XORs are only regrouped.
    """
    k0 = (seed & 0xFFFFFFFF).to(tl.uint32)
    k1 = (seed >> 32).to(tl.uint32)
    # Round 1: pa = c0·A varies, pb = c2·B is a scalar.
    pa_hi, v3 = mul_wide(c0, PHILOX_ROUND_A, MATH)  # v3: the new c3
    pb = c2.to(tl.uint64) * PHILOX_ROUND_B
    s0 = (pb >> 32).to(tl.uint32) ^ c1 ^ k0  # the new c0: a scalar
    v2 = pa_hi ^ (c3 ^ k1)  # the new c2
    s1 = pb.to(tl.uint32)  # the new c1: a scalar
    k0 = tl.add(k0, PHILOX_KEY_A, sanitize_overflow=False)
    k1 = tl.add(k1, PHILOX_KEY_B, sanitize_overflow=False)
    # Round 2: pa = s0·A is a scalar, pb = v2·B varies.
    pa2 = s0.to(tl.uint64) * PHILOX_ROUND_A
    pb2_hi, c1 = mul_wide(v2, PHILOX_ROUND_B, MATH)
    c0 = pb2_hi ^ (s1 ^ k0)
    c2 = ((pa2 >> 32).to(tl.uint32) ^ k1) ^ v3
    s3 = pa2.to(tl.uint32)  # the new c3: a scalar
    k0 = tl.add(k0, PHILOX_KEY_A, sanitize_overflow=False)
    k1 = tl.add(k1, PHILOX_KEY_B, sanitize_overflow=False)
    # Round 3: c3 is still a scalar, XORed in with the key.
    pa_hi, pa_lo = mul_wide(c0, PHILOX_ROUND_A, MATH)
    pb_hi, pb_lo = mul_wide(c2, PHILOX_ROUND_B, MATH)
    c0 = pb_hi ^ c1 ^ k0
    c2 = pa_hi ^ (s3 ^ k1)
    c1 = pb_lo
    c3 = pa_lo
    k0 = tl.add(k0, PHILOX_KEY_A, sanitize_overflow=False)
    k1 = tl.add(k1, PHILOX_KEY_B, sanitize_overflow=False)
    return philox_rounds(c0, c1, c2, c3, k0, k1, PHILOX_ROUNDS - 3, MATH)


@triton.jit
def tile_quads(seed, first_quad, offsets, stream, step, ALIGNED: tl.constexpr, MATH: tl.constexpr, scale=None):
    """The four normals of quads first_quad + offsets (offsets an int32 block, from 0 to under BLOCK). An
    ALIGNED tile's quads that are drawn for its lanes in bounds share one high word, first_quad's: the
    tile starts at a multiple of its power-of-two BLOCK, so it never crosses a multiple of 2**32 quads,
    or every quad of the launch lies below 2**32 (tiles.py, NARROW). Its counters' high word is then
    one word for the whole tile (philox4x32_one_varying_word) and the low words are 32-bit adds (a lane
    past the row's end may wrap; it is masked off). With ``scale``, the four times scale (box_muller)."""
    if ALIGNED:
        lo = (first_quad & 0xFFFFFFFF).to(tl.uint32)
        hi = (first_quad >> 32).to(tl.uint32)
        # stream and step are int32 words (runtime values or constexprs); their bits are the counter's.
        r0, r1, r2, r3 = philox4x32_one_varying_word(seed, lo + offsets.to(tl.uint32), hi,
                                                     (tl.zeros([], tl.int32) + stream).to(tl.uint32, bitcast=True),
                                                     (tl.zeros([], tl.int32) + step).to(tl.uint32, bitcast=True),
                                                     MATH)
        n0, n1 = box_muller(r0, r1, MATH, scale)
        n2, n3 = box_muller(r2, r3, MATH, scale)
        return n0, n1, n2, n3
    else:
        n0, n1, n2, n3 = quad_normals(seed, first_quad + offsets.to(tl.int64), stream, step, MATH)
        if scale is not None:
            n0, n1, n2, n3 = scale * n0, scale * n1, scale * n2, scale * n3
        return n0, n1, n2, n3


@triton.jit
def tile_normals(seed, first_quad, stream, step, BLOCK: tl.constexpr, PAIRED: tl.constexpr,
                 MATH: tl.constexpr, ALIGNED: tl.constexpr = False, scale=None):
    """The 4·BLOCK normals of quads first_quad … first_quad + BLOCK − 1, element 4·q + k = lane k of quad q.

    The tile is assembled with joins, so every value stays in the registers of
    the thread that drew it and no Philox call is repeated. PAIRED gives each
    thread two consecutive quads (8 elements: 16 bytes of bf16/fp16, one
    vector access); unpaired, one quad (16 bytes of float32). ALIGNED: first_quad is a multiple of BLOCK
    (tile_quads). With ``scale``, the normals times scale (box_muller).
    """
    if PAIRED:
        even = 2 * tl.arange(0, BLOCK // 2)
        e0, e1, e2, e3 = tile_quads(seed, first_quad, even, stream, step, ALIGNED, MATH, scale)
        o0, o1, o2, o3 = tile_quads(seed, first_quad, even + 1, stream, step, ALIGNED, MATH, scale)
        # Minor dims, innermost last: (quad of the pair, lane // 2, lane % 2).
        tile = tl.join(tl.join(tl.join(e0, o0), tl.join(e2, o2)), tl.join(tl.join(e1, o1), tl.join(e3, o3)))
        return tl.reshape(tile, [4 * BLOCK])
    else:
        n0, n1, n2, n3 = tile_quads(seed, first_quad, tl.arange(0, BLOCK), stream, step, ALIGNED, MATH, scale)
        return tl.interleave(tl.interleave(n0, n2), tl.interleave(n1, n3))


# The counter's step words, all here (the host's are reference.OFFSET_STEP, SAMPLING_STEP, PERTURB_STEP):
# q_sample draws with step 0 and a trajectory with steps 0 … T−1, so the words from all ones down never
# collide with a schedule's. Offset noise takes all ones.
OFFSET_STEP = tl.constexpr(-1)
# The per-sample draws of a training step (kernels/sampling.py): timesteps and noise levels.
SAMPLING_STEP = tl.constexpr(-2)
# diffusers' --input_perturbation: the second normal ε′ of x_t = a·x0 + b·(ε + γ·ε′), element for element
# the same tile geometry as ε.
PERTURB_STEP = tl.constexpr(-3)


@triton.jit
def row_offset_normal(seed, row, stream, MATH: tl.constexpr):
    """The offset-noise normal of ``row`` (a scalar): element ``row`` of the stream's OFFSET_STEP
    subsequence, i.e. lane row % 4 of quad row // 4."""
    rq = row // 4 + tl.zeros([1], dtype=tl.int64)
    o0, o1, o2, o3 = quad_normals(seed, rq, stream, OFFSET_STEP, MATH)
    r = row % 4
    off = tl.where(r == 0, o0, tl.where(r == 1, o1, tl.where(r == 2, o2, o3)))
    return tl.sum(off, axis=0)


@triton.jit
def draw_noise(seed, first_quad, stream, step, row, offset_strength, BLOCK: tl.constexpr, PAIRED: tl.constexpr,
               HAS_OFFSET: tl.constexpr, MATH: tl.constexpr, ALIGNED: tl.constexpr = False):
    """ε of the tile starting at first_quad; with HAS_OFFSET plus offset_strength × one normal per row.
    ALIGNED as in tile_normals."""
    eps = tile_normals(seed, first_quad, stream, step, BLOCK, PAIRED, MATH, ALIGNED)
    if HAS_OFFSET:
        eps = eps + offset_strength * row_offset_normal(seed, row, stream, MATH)
    return eps


@triton.jit
def channels_last_normals(seed, sample, j0, plane_quads, stream, step, C: tl.constexpr, BLOCK_J: tl.constexpr,
                          MATH: tl.constexpr):
    """ε of a channels-last tile (tiles.channels_last_tile), in memory order.

    Logical (N, C, P) stored as (N, P, C): quad column j of channel c of a
    sample is its logical elements 4j … 4j + 3 of plane c (P % 4 == 0), i.e.
    stream quad (sample·C + c)·P/4 + j. The tile's C·BLOCK_J quads are each
    drawn once, and their lanes are laid out (j, lane, c), the memory order,
    so the tile is 4·C·BLOCK_J consecutive elements: whole quads, vector
    accesses, and the same values the contiguous layout draws.
    """
    j = j0 + tl.arange(0, BLOCK_J).to(tl.int64)
    c = tl.arange(0, C).to(tl.int64)
    quad = (sample * C + c[None, :]) * plane_quads + j[:, None]
    n0, n1, n2, n3 = quad_normals(seed, quad, stream, step, MATH)
    # Minor dims (lane // 2, lane % 2): lane k of quad (j, c) at [j, c, k].
    tile = tl.reshape(tl.join(tl.join(n0, n2), tl.join(n1, n3)), [BLOCK_J, C, 4])
    return tl.reshape(tl.permute(tile, (0, 2, 1)), [4 * C * BLOCK_J])


@triton.jit
def channels_last_noise(seed, sample, row, j0, plane_quads, stream, step, offset_strength, C: tl.constexpr,
                        BLOCK_J: tl.constexpr, HAS_OFFSET: tl.constexpr, MATH: tl.constexpr):
    """draw_noise for a channels-last tile: its ε in memory order; with HAS_OFFSET plus
    offset_strength × the offset normal of ``row`` (the sample's entry of t)."""
    eps = channels_last_normals(seed, sample, j0, plane_quads, stream, step, C, BLOCK_J, MATH)
    if HAS_OFFSET:
        eps = eps + offset_strength * row_offset_normal(seed, row, stream, MATH)
    return eps
