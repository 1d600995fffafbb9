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
def row_tile(chunks_per_row, row_len, elem_offset, BLOCK: tl.constexpr):
    """Program id, row index, the tile's first quad, its 4·BLOCK local logical indices and their mask.

    ``elem_offset`` shifts the logical index the noise stream sees; the memory
    index stays ``row * row_len + j``. Quads are anchored to the global index,
    so a row that does not start on a multiple of 4 shares its edge quads with
    its neighbours and each side masks off the other's lanes.
    """
    pid = tl.program_id(0).to(tl.int64)
    row = pid // chunks_per_row
    chunk = pid - row * chunks_per_row
    row_start = elem_offset + row * row_len
    first_quad = row_start // 4 + chunk * BLOCK
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

    The index is clamped so that a caller who skipped the host-side range
    check still never reads outside the tables.
    """
    tidx = tl.load(t_ptr + row)
    tidx = tl.minimum(tl.maximum(tidx, 0), T - 1)
    a = tl.load(a_ptr + tidx).to(tl.float32)
    b = tl.load(b_ptr + tidx).to(tl.float32)
    return a, b
