"""Per-sample draws for a training step (timesteps, noise levels): Philox words and normals of the
noise stream at its own step word, so they never coincide with any ε a noising call draws.

Element i takes lane i % 4 of quad i // 4 at counter (q mod 2**32, q div 2**32, stream, SAMPLING_STEP):
its 32-bit word (a uniform integer) and the stream's normal of that element (philox_normal.tile_normals).
"""
import triton
import triton.language as tl

from .philox_normal import SAMPLING_STEP, load_seed, philox4x32, tile_normals

BLOCK_QUADS = 256
NUM_WARPS = 4


@triton.jit
def sampling_draws_kernel(words_ptr, normals_ptr, n, seed_lo, seed_hi, seed_ptr, stream,
                          SEED_FROM_PTR: tl.constexpr, BLOCK: tl.constexpr, MATH: tl.constexpr):
    """words[i] (int32 bits of the uint32 word) and normals[i] (float32) for i < n."""
    seed = load_seed(seed_lo, seed_hi, seed_ptr, SEED_FROM_PTR)
    first_quad = tl.program_id(0).to(tl.int64) * BLOCK
    quad = first_quad + tl.arange(0, BLOCK).to(tl.int64)
    zero = tl.zeros_like(quad).to(tl.int32)
    c2 = (zero + stream).to(tl.uint32, bitcast=True)
    c3 = (zero + SAMPLING_STEP).to(tl.uint32, bitcast=True)
    r0, r1, r2, r3 = philox4x32(seed, (quad & 0xFFFFFFFF).to(tl.uint32), (quad >> 32).to(tl.uint32), c2, c3, MATH)
    words = tl.interleave(tl.interleave(r0, r2), tl.interleave(r1, r3))  # lane k of quad q at 4q + k
    normals = tile_normals(seed, first_quad, stream, SAMPLING_STEP, BLOCK, False, MATH)
    offs = first_quad * 4 + tl.arange(0, 4 * BLOCK).to(tl.int64)
    mask = offs < n
    tl.store(words_ptr + offs, words.to(tl.int32, bitcast=True), mask=mask)
    tl.store(normals_ptr + offs, normals, mask=mask)
