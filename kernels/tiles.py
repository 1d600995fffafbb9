"""Tile geometry shared by the q_sample kernels.

A launch covers R "rows" (one per timestep entry: the samples, frames or
tokens that ``t`` indexes) of ``row_len`` elements each. Program ``pid`` works
on one row only, so the row's ᾱ coefficients are loaded once per program and
no element ever divides to find its row. Inside the row the program owns
BLOCK consecutive Philox quads (4 elements each) of the global logical index:
a 1-D tile of 4·BLOCK consecutive elements. The quads' normals are joined
into that tile (philox_normal.tile_normals), which keeps each quad's 4
elements in one thread: every Philox output is used once, never recomputed,
and contiguous memory is read and written in 128-bit vectors.
"""
import triton
import triton.language as tl


@triton.jit
def row_tile(row_len, chunks_per_row, row_magic, row_shift, elem_offset, BLOCK: tl.constexpr):
    """Program id, row index, the tile's first quad, its 4·BLOCK local logical indices and their mask.

    The row is pid // chunks_per_row, computed as a multiply and a shift with
    the launcher's (row_magic, row_shift) for that divisor: a runtime integer
    division costs a GPU some 30 instructions per program, a noticeable share
    of a bf16 tile's budget. ``elem_offset`` shifts the logical index the noise
    stream sees; the memory index stays ``row * row_len + j``. Quads are
    anchored to the global index, so a row that does not start on a multiple
    of 4 shares its edge quads with its neighbours and each side masks off the
    other's lanes.
    """
    pid32 = tl.program_id(0)
    pid = pid32.to(tl.int64)
    magic = row_magic.to(tl.uint32, bitcast=True).to(tl.uint64)
    row = ((pid32.to(tl.uint32).to(tl.uint64) * magic) >> row_shift.to(tl.uint64)).to(tl.int64)
    chunk = pid - row * chunks_per_row
    row_start = elem_offset + row * row_len
    first_quad = (row_start >> 2) + chunk * BLOCK
    e = first_quad * 4 + tl.arange(0, 4 * BLOCK).to(tl.int64)  # element k of the tile is lane k % 4 of quad k // 4
    j = e - row_start
    mask = (j >= 0) & (j < row_len)
    return pid, row, first_quad, e - elem_offset, mask


@triton.jit
def strided_offset(idx, NDIM: tl.constexpr, z1, z2, z3, z4, s0, s1, s2, s3, s4):
    """Memory offset of logical row-major index ``idx`` in a tensor of up to 5 dims.

    The dims are collapsed by the launcher and right-aligned: the innermost is
    (z4, s4), the outermost takes whatever is left of the index with stride s0.
    With NDIM == 1 this is ``idx * s0``, which Triton folds to ``idx`` when the
    stride is 1.
    """
    off = idx * 0
    rem = idx
    if NDIM >= 2:
        off += (rem % z4) * s4
        rem = rem // z4
    if NDIM >= 3:
        off += (rem % z3) * s3
        rem = rem // z3
    if NDIM >= 4:
        off += (rem % z2) * s2
        rem = rem // z2
    if NDIM >= 5:
        off += (rem % z1) * s1
        rem = rem // z1
    return off + rem * s0


@triton.jit
def row_coefficients(t_ptr, a_ptr, b_ptr, row, T):
    """sqrt(ᾱ[t]) and sqrt(1 - ᾱ[t]) of one row, as float32 scalars.

    A launch compiled with ``debug=True`` (a t that lives on the GPU and was
    asked to be checked) stops with a device-side assertion on a t outside
    [0, T), as PyTorch's own indexing does; otherwise the assertion compiles to
    nothing. Either way the index is clamped, so the tables are never read out
    of bounds.
    """
    tidx = tl.load(t_ptr + row)
    tl.device_assert((tidx >= 0) & (tidx < T), "diffusion_kernels: t outside [0, T) of the schedule")
    tidx = tl.minimum(tl.maximum(tidx, 0), T - 1)
    a = tl.load(a_ptr + tidx).to(tl.float32)
    b = tl.load(b_ptr + tidx).to(tl.float32)
    return a, b
