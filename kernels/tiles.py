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


# row_tile's UNITS: rows of one tensor; a shard's runs that all start on a quad and hold whole quads;
# a shard's runs that start anywhere (diffusion_kernels/launch/tiling.py: units_mode).
NO_UNITS = tl.constexpr(0)
UNITS_ALIGNED = tl.constexpr(1)
UNITS_ANY = tl.constexpr(2)
# Rows of one tensor that are each a whole number of tiles, from element 0: program p owns quads
# p·BLOCK … (p + 1)·BLOCK − 1, every lane in bounds (no mask to compute or apply).
WHOLE_TILES = tl.constexpr(3)
# Added to NO_UNITS, UNITS_ALIGNED or UNITS_ANY: every quad the launch draws lies below 2**32 (a tensor,
# or a shard's global tensor, of at most 2**34 elements), so the counters' high word is 0, and a row holds
# fewer than 2**31 − 2**20 elements, so its bounds are compared in 32 bits; the rows are cut as the mode's.
NARROW = tl.constexpr(4)
NARROW_ALIGNED = tl.constexpr(5)  # UNITS_ALIGNED + NARROW
NARROW_ANY = tl.constexpr(6)  # UNITS_ANY + NARROW
# NARROW_ALIGNED runs that are each a whole number of tiles: a run's tiles follow one another from its start,
# every lane in bounds (no mask to compute or apply), as WHOLE_TILES rows do.
WHOLE_RUNS = tl.constexpr(7)
# From WHOLE_TILES up a tile's in-bounds quads share one counter high word, so it draws with 32-bit
# counters (philox_normal.tile_quads, ALIGNED): the kernels pass UNITS >= WHOLE_TILES.


@triton.jit
def magic_divide(n, divisor):
    """n // d for int32 0 <= n < 2**31, ``divisor`` being d packed by the launcher (launch.packed_divisor).

    A runtime integer division costs a GPU some 30 instructions (64-bit: ~70);
    this is three 32-bit ones. The low word of ``divisor`` is a multiplier
    m < 2**32 and the high word k + 1 for a shift k with n // d = (n·m) >> (31 + k),
    which for 2n < 2**32 is mulhi(2n, m) >> k.
    """
    m = (divisor & 0xFFFFFFFF).to(tl.uint32)
    k = (divisor >> 32).to(tl.uint32) - 1
    return (tl.umulhi(n.to(tl.uint32) << 1, m) >> k).to(tl.int32)


@triton.jit
def row_tile(row_len, chunks_per_row, row_divisor, elem_offset, units_ptr, BLOCK: tl.constexpr,
             UNITS: tl.constexpr, TILES: tl.constexpr = 1):
    """Program id, row index, the tile's first quad, its 4·BLOCK local logical indices and their mask.

    The row is pid // chunks_per_row (``row_divisor`` packs that divisor).
    ``elem_offset`` shifts the logical index the noise stream sees; the memory
    index stays ``row * row_len + j``. Quads are anchored to the global index,
    so a row that does not start on a multiple of 4 shares its edge quads with
    its neighbours and each side masks off the other's lanes.

    UNITS (a shard of a global tensor, diffusion_kernels/sharding.py): row r is
    a run of consecutive global positions starting at ``units_ptr[2r]``, one
    uniform load per program instead of ``elem_offset + r * row_len``. With
    UNITS_ALIGNED every run starts on a quad and holds whole quads, so the
    tile's local indices are a multiple of 4 plus its lane, as in the
    contiguous tile (vector accesses); UNITS_ANY takes runs that start anywhere.

    WHOLE_TILES (rows of one tensor, each a whole number of tiles, from element 0): the tiles follow one
    another, so program p's first quad is p·BLOCK and every lane is in bounds; the mask is a constant the
    compiler drops, with its int64 compares and the predicated accesses.

    A program may run TILES consecutive tiles of its row (WHOLE_TILES and the NARROW modes; the launcher's
    chunks_per_row then counts programs): this returns its first tile, and with it ``s``, that tile's first
    element less the row's (int32; NARROW modes only, else 0), from which :func:`tiles_in_row` and
    :func:`tile_in_row` find the others.
    """
    pid32 = tl.program_id(0)
    pid = pid32.to(tl.int64)
    row = magic_divide(pid32, row_divisor).to(tl.int64)
    chunk = pid - row * chunks_per_row
    lanes32 = tl.arange(0, 4 * BLOCK)  # element k of the tile is lane k % 4 of quad k // 4
    lanes = lanes32.to(tl.int64)
    s = 0
    if UNITS == WHOLE_TILES:
        first_quad = pid * (TILES * BLOCK)
        idx = first_quad * 4 + lanes
        mask = tl.full([4 * BLOCK], 1, tl.int1)  # a constant: the loads and stores compile unmasked
    elif UNITS == UNITS_ALIGNED or UNITS == NARROW_ALIGNED or UNITS == WHOLE_RUNS:
        first_quad = (tl.load(units_ptr + 2 * row) >> 2) + chunk * (TILES * BLOCK)
        start = chunk * (TILES * 4 * BLOCK)  # the tile's first element, from its row's
        if UNITS == WHOLE_RUNS:
            mask = tl.full([4 * BLOCK], 1, tl.int1)
        elif UNITS == NARROW_ALIGNED:
            s = start.to(tl.int32)
            mask = tile_in_row(s, row_len, 0, BLOCK)
        else:
            mask = start + lanes < row_len
        # A scalar plus the lanes: AMD's compiler then addresses the tile from one base (buffer accesses).
        idx = (row * row_len + start) + lanes
    else:
        if UNITS == UNITS_ANY or UNITS == NARROW_ANY:
            row_start = tl.load(units_ptr + 2 * row)
        else:
            row_start = elem_offset + row * row_len
        first_quad = (row_start >> 2) + chunk * (TILES * BLOCK)
        start = first_quad * 4 - row_start
        if UNITS >= NARROW:
            s = start.to(tl.int32)
            mask = tile_in_row(s, row_len, 0, BLOCK)
        else:
            j = start + lanes
            mask = (j >= 0) & (j < row_len)
        if UNITS == UNITS_ANY or UNITS == NARROW_ANY:
            idx = (row * row_len + start) + lanes
        else:
            idx = (first_quad * 4 - elem_offset) + lanes
    return pid, row, first_quad, idx, mask, s


@triton.jit
def tile_in_row(s, row_len, k, BLOCK: tl.constexpr):
    """The mask of the lanes of a program's tile k that lie in its row, from ``s`` (row_tile; NARROW modes):
    the row's bounds seen from the tile's first element, two 32-bit compares per access against the lane,
    where the row's bounds in 64 bits take five."""
    lanes = tl.arange(0, 4 * BLOCK)
    first = s + k * (4 * BLOCK)
    return (lanes >= -first) & (lanes < row_len - first)


@triton.jit
def tiles_in_row(s, row_len, BLOCK: tl.constexpr, UNITS: tl.constexpr, TILES: tl.constexpr):
    """How many of its TILES tiles a program runs: all of them in WHOLE_TILES rows; in a NARROW mode's row
    those up to its last tile."""
    if UNITS == WHOLE_TILES or UNITS == WHOLE_RUNS or TILES == 1:
        return TILES
    return tl.minimum((row_len - s + (4 * BLOCK - 1)) // (4 * BLOCK), TILES)


@triton.jit
def noise_row(row, units_ptr, UNITS: tl.constexpr):
    """The row of t whose offset normal a row draws: its global index for a run of a shard, else itself."""
    if (UNITS == UNITS_ALIGNED or UNITS == UNITS_ANY or UNITS == NARROW_ALIGNED or UNITS == NARROW_ANY
            or UNITS == WHOLE_RUNS):
        return tl.load(units_ptr + 2 * row + 1)
    return row


# The channel counts the channels-last tile takes: powers of two up to this
# (a program then still spans at least two quad columns of a 4-byte tile).
CHANNELS_LAST_MAX_C = 256


@triton.jit
def channels_last_tile(plane_quads, chunks_per_row, row_divisor, C: tl.constexpr, BLOCK_J: tl.constexpr):
    """Program id, sample, the tile's first quad column, its memory offsets and their mask, for a
    channels-last layout: logical (N, C, P) stored as (N, P, C) (channels_last, channels_last_3d).

    A program covers BLOCK_J quad columns (4 consecutive plane positions) of
    all C channels of one sample: 4·C·BLOCK_J consecutive memory elements
    that hold C·BLOCK_J whole quads of the noise stream
    (philox_normal.channels_last_normals draws them). The sample is
    pid // chunks_per_row (``row_divisor`` packs the divisor).
    """
    pid32 = tl.program_id(0)
    pid = pid32.to(tl.int64)
    sample = magic_divide(pid32, row_divisor).to(tl.int64)
    j0 = (pid - sample * chunks_per_row) * BLOCK_J
    m = tl.arange(0, 4 * C * BLOCK_J)
    offset = (sample * plane_quads + j0) * (4 * C) + m
    mask = j0 + m // (4 * C) < plane_quads
    return pid, sample, j0, offset, mask


@triton.jit
def divmod_by(n, z, divisor):
    """(n // z, n % z) for int32 0 <= n < 2**31, ``divisor`` being z packed (magic_divide)."""
    q = magic_divide(n, divisor)
    return q, n - q * z


@triton.jit
def unravel(idx, NDIM: tl.constexpr, z1, z2, z3, z4, d1, d2, d3, d4):
    """The coordinates (c0, …, c4) of logical row-major index ``idx`` in up to 5 collapsed dims.

    The dims are collapsed by the launcher and right-aligned: the innermost has
    size z4 (packed divisor d4), the outermost takes whatever is left of the
    index. A launch with NDIM > 1 has fewer than 2**31 − 2**16 elements (larger
    strided tensors are copied to contiguous ones first), so the coordinates
    are int32 and every step is a 32-bit multiply-shift division. With
    NDIM == 1 this is (idx, 0, 0, 0, 0), idx int64.
    """
    if NDIM == 1:
        zero = idx * 0
        c0, c1, c2, c3, c4 = idx, zero, zero, zero, zero
    else:
        # Lanes masked off at a row edge can lie just outside [0, numel); clamped, their (unused)
        # coordinates stay in int32 range, which also keeps debug-mode overflow checks quiet.
        rem = tl.maximum(idx, 0).to(tl.int32)
        zero = rem * 0
        c1, c2, c3 = zero, zero, zero
        rem, c4 = divmod_by(rem, z4, d4)
        if NDIM >= 3:
            rem, c3 = divmod_by(rem, z3, d3)
        if NDIM >= 4:
            rem, c2 = divmod_by(rem, z2, d2)
        if NDIM >= 5:
            rem, c1 = divmod_by(rem, z1, d1)
        c0 = rem
    return c0, c1, c2, c3, c4


@triton.jit
def strided_offset(pos, NDIM: tl.constexpr, s0, s1, s2, s3, s4):
    """Memory offset (int64) of the coordinates ``pos`` (from unravel) for strides s0 … s4.

    With NDIM == 1 this is ``pos[0] * s0``, which Triton folds to the index
    itself when the stride is 1.
    """
    off = pos[0].to(tl.int64) * s0
    if NDIM >= 2:
        off += pos[4].to(tl.int64) * s4
    if NDIM >= 3:
        off += pos[3].to(tl.int64) * s3
    if NDIM >= 4:
        off += pos[2].to(tl.int64) * s2
    if NDIM >= 5:
        off += pos[1].to(tl.int64) * s1
    return off


@triton.jit
def offset_like(first, pos, NDIM: tl.constexpr, SHARED_LAYOUT: tl.constexpr, s0, s1, s2, s3, s4):
    """The offset for strides s0 … s4, or ``first`` (the call's first tensor's) when SHARED_LAYOUT
    says every tensor of the call has the same strides: outputs made like their input usually do, and
    a strided element's address is then computed once, not once per tensor.
    """
    off = first
    if not SHARED_LAYOUT:
        off = strided_offset(pos, NDIM, s0, s1, s2, s3, s4)
    return off


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
    tidx = clamped_step(tidx, T)
    a = tl.load(a_ptr + tidx).to(tl.float32)
    b = tl.load(b_ptr + tidx).to(tl.float32)
    return a, b


@triton.jit
def clamped_step(tidx, T):
    """An int64 t clamped to [0, T − 1], as int32 (a schedule's T is below 2**31), from its two words: where
    the high word is 0 the low word, unsigned, is at most T − 1; any other high word puts t below 0
    (negative) or above 2**32 − 1 (positive). One unsigned minimum and two selects, where the
    64-bit minimum and maximum took two compares and two selects each, and the tables are indexed in
    32 bits."""
    tl.static_assert(tidx.dtype == tl.int64, "t is read as int64 (forms.py: the index)")
    high = (tidx >> 32).to(tl.int32)
    low = tl.minimum(tidx.to(tl.uint32), (T - 1).to(tl.uint32)).to(tl.int32)
    return tl.where(high == 0, low, tl.where(high < 0, 0, T - 1))


# Every kernel's NUM_WARPS counts NVIDIA warps of 32 lanes. An AMD wavefront has
# 64 lanes, so an AMD launch takes NUM_WARPS * 32 // AMD_WAVEFRONT wavefronts: the
# same threads per program, each drawing the same quads with the same
# instructions per element, and the register budget per thread that the NVIDIA
# tiles were sized for fits AMD's too (CDNA's 512 VGPRs per lane per SIMD give 4
# waves per SIMD at up to 128; tests/gpu_compile_check.py gfx942 reports them).
AMD_WAVEFRONT = 64
