"""The step-by-step forward process, fused: x_s = sqrt(α_s)·x_{s−1} + sqrt(β_s)·ε_s for s = 0 … t_end.

The sample stays in registers across all steps; only x0 is read and only
x_{t_end} (plus any requested snapshots) is written. Step s draws its noise
from the same stream layout as q_sample with the counter's step word set to
s, so every step's ε is independent and ``reference.philox_normal(...,
step=s)`` recomputes it.
"""
import triton
import triton.language as tl

from .convert import to_output
from .philox_normal import load_seed, tile_normals
from .tiles import WHOLE_TILES, row_tile

# Quads per program. The loop body is Philox + Box–Muller + one FMA per
# element per step, compute-bound: a smaller tile than q_sample's keeps more
# programs resident to hide the loop's latency.
BLOCK_QUADS = 128
NUM_WARPS = 4
# One quad per thread: the loop is bound by its arithmetic, not by its one
# load and one store, and pairing 128 quads over 128 threads would leave half
# the threads repeating the other half's Philox calls.
PAIRED = False
# See q_sample.py: the interpreter wants few, large programs.
INTERPRETER_BLOCK_QUADS = 4096


@triton.jit(do_not_specialize=["row_divisor", "seed_lo", "seed_hi", "stream", "t_end"])
def forward_trajectory_kernel(
    x0_ptr, out_ptr, snap_ptr, snap_index_ptr,
    sqrt_alpha_ptr, sqrt_beta_ptr, t_end, numel, row_len, chunks, row_divisor, units_ptr,
    seed_lo, seed_hi, seed_ptr, stream,
    HAS_SNAPSHOTS: tl.constexpr, SEED_FROM_PTR: tl.constexpr,
    BLOCK: tl.constexpr, SOFT_BF16: tl.constexpr, MATH: tl.constexpr, PAIRED: tl.constexpr, UNITS: tl.constexpr,
):
    # One row (the whole contiguous tensor; a shard's runs with UNITS): t_end is shared by every element.
    pid, row, first_quad, idx, mask, _ = row_tile(row_len, chunks, row_divisor, 0, units_ptr, BLOCK, UNITS)
    seed = load_seed(seed_lo, seed_hi, seed_ptr, SEED_FROM_PTR)
    x = tl.load(x0_ptr + idx, mask=mask, other=0.0).to(tl.float32)
    # A while loop rather than range(t_end + 1): the interpreter cannot take a
    # runtime bound in range(); on the GPU both lower to one scf loop. The
    # counter starts as an int32 tensor so its type is the same on every trip.
    s = tl.full((), 0, tl.int32)
    while s <= t_end:
        a = tl.load(sqrt_alpha_ptr + s)
        b = tl.load(sqrt_beta_ptr + s)
        x = a * x + b * tile_normals(seed, first_quad, stream, s, BLOCK, PAIRED, MATH, UNITS >= WHOLE_TILES)
        if HAS_SNAPSHOTS:
            # k = the snapshot slot of step s, or -1: a predicated store, no branch.
            # The test is made per element (idx * 0 + k): Triton 3.9's interpreter types a block mask
            # combined with a scalar condition as int32 and refuses it as a mask.
            k = tl.load(snap_index_ptr + s).to(tl.int64)
            tl.store(snap_ptr + k * numel + idx, to_output(x, snap_ptr.dtype.element_ty, SOFT_BF16, MATH),
                     mask=mask & (idx * 0 + k >= 0))
        s += 1
    tl.store(out_ptr + idx, to_output(x, out_ptr.dtype.element_ty, SOFT_BF16, MATH), mask=mask)
