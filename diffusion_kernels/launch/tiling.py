"""How a launch cuts its rows into programs: quads per program, programs per row, and the packed
divisors the kernels use instead of integer division."""
from __future__ import annotations

import functools
from typing import NamedTuple, Optional

from ..dispatch import interpreter_active


def next_power_of_2(n: int) -> int:
    return 1 << max(0, (n - 1).bit_length())


def block_quads(kernel_module, row_len: int, paired: bool = False, strided: bool = False) -> int:
    """Quads per program: the kernel's tuned constant on a GPU (its own for 2-byte I/O and for
    strided layouts); under the interpreter, large tiles (fewer, bigger numpy operations) cut to the row.

    The noise stream does not depend on this choice.
    """
    if not interpreter_active():
        if strided:
            return kernel_module.BLOCK_QUADS_STRIDED
        return kernel_module.BLOCK_QUADS_PAIRED if paired else kernel_module.BLOCK_QUADS
    needed = next_power_of_2((row_len + 6) // 4)
    return max(16, min(kernel_module.INTERPRETER_BLOCK_QUADS, needed))


class Planes(NamedTuple):
    """A call whose tensors are channels-last: logical (samples, channels, plane) stored as
    (samples, plane, channels), as channels_last and channels_last_3d are (layout.channels_last_planes
    finds them; channels_last_tiling tiles them)."""
    samples: int
    channels: int
    plane: int


class Tiling(NamedTuple):
    """How a launch cuts ``rows`` rows of ``row_len`` elements into programs."""
    rows: int
    row_len: int
    block: int  # quads per program
    chunks: int  # programs per row
    divisor: int  # chunks as a packed divisor: the kernels find a program's row with a multiply and a shift
    warps: Optional[int] = None  # warps of 32 lanes per program (launch_warps); None: the kernel's NUM_WARPS
    tiles: int = 1  # consecutive tiles of its row per program (grouped_tiles); ``chunks`` counts programs

    @property
    def grid(self) -> tuple[int]:
        return (self.rows * self.chunks,)

    @property
    def row_args(self) -> tuple[int, int, int]:
        """The kernels' (row_len, chunks_per_row, row_divisor) arguments."""
        return self.row_len, self.chunks, self.divisor


def divisor_magic(d: int) -> tuple[int, int]:
    """(m, s) with n // d == (n · m) >> s for every 0 <= n < 2**31, and 2**31 <= m < 2**32.

    Granlund & Montgomery (1994), Theorem 4.2, for 31-bit dividends: with
    k = ceil(log2 d) and m = ceil(2**(31 + k) / d), 0 <= m·d − 2**(31 + k) < d <= 2**k,
    which makes the quotient exact (tiles.magic_divide evaluates it in 32-bit
    words).
    """
    if not 1 <= d < 2**31:
        raise ValueError(f"divisor must be in [1, 2**31), got {d}")
    k = (d - 1).bit_length()
    return -(-(1 << (31 + k)) // d), 31 + k


def packed_divisor(d: int) -> int:
    """d as the kernels take it (tiles.magic_divide): the multiplier in the low word, shift − 30 in the high.

    The high word is at least 1, so the value is at least 2**32 and always an
    int64 argument (Triton's interpreter holds ints in [2**31, 2**32) as uint32).
    """
    m, shift = divisor_magic(d)
    return (shift - 30) << 32 | m


def tiling(kernel_module, n: int, rows: int, elem_offset: int = 0, paired: bool = False,
           strided: bool = False, units: Optional[int] = None) -> Tiling:
    """The tiling of n elements in ``rows`` rows for ``kernel_module``'s kernels (``paired``: contiguous
    2-byte I/O, ``strided``: a strided layout; see block_quads), sized to fill ``units`` SMs (CUs) where
    given (:func:`filling_tile`)."""
    row_len = n // rows
    block = block_quads(kernel_module, row_len, paired, strided)
    if not units:
        return row_tiling(rows, row_len, block, elem_offset)
    block, warps = filling_tile(block, kernel_module.NUM_WARPS, n, units, paired, fewest_warps(units))
    return row_tiling(rows, row_len, block, elem_offset, warps)


# A launch of fewer programs than this per SM (CU) leaves part of the GPU idle, and each program's dependent
# loads (t, then ᾱ[t], then x0) exposed: at the sizes people train at (256K–4M elements) the tuned tile
# starts only 64–512 programs on a GPU of 132 SMs.
PROGRAMS_PER_UNIT = 2
# The warps a sized tile keeps before each thread's elements are cut (filling_tile): one, so that each thread
# keeps the tuned tile's elements (a bench may raise it to compare the warps in flight).
SIZED_WARPS = 1
# The fewest 32-lane warps a tile takes on AMD: one 64-lane wavefront, whose lanes a smaller tile would leave
# idle (launch_warps). NVIDIA's floor is one warp (fewest_warps).
MIN_WARPS = 2


def filling_tile(block: int, warps: int, n: int, units: int, paired: bool, fewest: int) -> tuple[int, int]:
    """(quads per program, warps) for n elements on a GPU of ``units`` SMs (CUs): the tuned tile (``block``
    quads, ``warps`` warps), halved until the launch starts PROGRAMS_PER_UNIT programs per SM. Warps go
    first, down to SIZED_WARPS (and no fewer than ``fewest``, fewest_warps): each thread keeps the tuned
    tile's elements, and with them its instructions per element (a program's setup — coefficients, key
    schedule, addressing — is paid per thread, over its elements). Then each thread's elements, down to one
    16-byte vector (a quad, or a pair of quads for 2-byte I/O); then the warps again, down to ``fewest``.
    The noise does not depend on the tile (kernels/philox_normal.py: a function of position)."""
    per_thread = 2 if paired else 1
    kept = max(SIZED_WARPS, fewest)
    while -(-n // (4 * block)) < PROGRAMS_PER_UNIT * units:
        if warps > kept:
            block, warps = block // 2, warps // 2
        elif block > 32 * warps * per_thread:
            block //= 2
        elif warps > fewest:
            block, warps = block // 2, warps // 2
        else:
            break
    return block, warps


def gpu_units(device) -> Optional[int]:
    """The SMs (CUs) of ``device``'s GPU, which :func:`filling_tile` fills; None where no GPU runs the
    launch (a CPU tensor, Triton's interpreter). Read once per device."""
    import torch

    device = device if type(device) is torch.device else torch.device(device)
    if device.type != "cuda" or interpreter_active():
        return None
    return _multiprocessors(device.index if device.index is not None else torch.cuda.current_device())


@functools.lru_cache(maxsize=None)
def _multiprocessors(index: int) -> int:
    import torch

    return torch.cuda.get_device_properties(index).multi_processor_count


@functools.lru_cache(maxsize=256)
def row_tiling(rows: int, row_len: int, block: int, elem_offset: int, warps: Optional[int] = None) -> Tiling:
    # A training loop repeats one shape: the divisor arithmetic is done once per shape.
    chunks = chunks_per_row(row_len, elem_offset, block)
    return Tiling(rows, row_len, block, chunks, packed_divisor(chunks), warps)


# kernels/tiles.py's row_tile modes: rows of one tensor, a shard's quad-aligned runs, runs starting anywhere,
# rows of one tensor that are each a whole number of tiles, rows of one tensor whose quads lie below 2**32.
NO_UNITS, UNITS_ALIGNED, UNITS_ANY, WHOLE_TILES = 0, 1, 2, 3
# Added to NO_UNITS, UNITS_ALIGNED or UNITS_ANY where every quad of the launch lies below 2**32: the
# elements (offset included) of a tensor, or a shard's global tensor, up to NARROW_ELEMENTS; and where its
# rows (a shard's runs) hold at most NARROW_ROW_LEN elements, so that a tile's position in its row and the
# row's bounds, seen from the tile, are int32 (a tile holds at most 2**16 elements).
NARROW = 4
NARROW_ROWS = NO_UNITS + NARROW
NARROW_ALIGNED = UNITS_ALIGNED + NARROW
# A shard's NARROW_ALIGNED runs that are each a whole number of tiles: unmasked, as WHOLE_TILES rows.
WHOLE_RUNS = 7
NARROW_ELEMENTS = 2**34
NARROW_ROW_LEN = 2**31 - 2**20


def takes_narrow(elements: int, row_len: int) -> bool:
    """Whether a launch over ``elements`` global positions (offset included) in rows of ``row_len`` takes
    NARROW."""
    return elements <= NARROW_ELEMENTS and row_len <= NARROW_ROW_LEN


def units_mode(units, aligned: bool, narrow: bool = False) -> int:
    """row_tile's UNITS for a launch: a shard's run table (``units``) whose runs all start on a quad and hold
    whole quads (``aligned``, sharding.Units.aligned) takes the contiguous tile's vector accesses; one
    whose global tensor has at most NARROW_ELEMENTS (``narrow``, sharding.Units.narrow) 32-bit counters."""
    if units is None:
        return NO_UNITS
    return (UNITS_ALIGNED if aligned else UNITS_ANY) + (NARROW if narrow else 0)


def whole_tiles(tile: Tiling, elem_offset: int) -> bool:
    """Whether every row is a whole number of ``tile``'s tiles from element 0 (a 16×4×64×64 batch is): the
    kernels then need no mask (kernels/tiles.py, WHOLE_TILES)."""
    return elem_offset == 0 and tile.row_len % (4 * tile.block) == 0


def row_mode(tile: Tiling, elem_offset: int, mode: int, words_aligned: bool = True) -> int:
    """row_tile's UNITS for a launch of ``tile`` whose units_mode is ``mode``: for rows of one tensor,
    WHOLE_TILES where they are whole tiles (:func:`whole_tiles`) whose 2-byte input starts on a 4-byte
    boundary (``words_aligned``: the kernel reads it as 32-bit words, kernels/convert.load_bf16_words),
    else NARROW_ROWS where every quad lies below 2**32 and every row fits 32-bit bounds (:func:`takes_narrow`);
    for a shard's NARROW_ALIGNED runs, WHOLE_RUNS where each is a whole number of tiles; else ``mode``."""
    if mode == NARROW_ALIGNED and tile.row_len % (4 * tile.block) == 0:
        return WHOLE_RUNS
    if mode != NO_UNITS:
        return mode
    if words_aligned and whole_tiles(tile, elem_offset):
        return WHOLE_TILES
    return NARROW_ROWS if takes_narrow(elem_offset + tile.rows * tile.row_len, tile.row_len) else NO_UNITS


# A launch of whole-tile rows that starts at least this many programs per SM (CU) with one tile each has
# programs to spare: a GPU holds about as many at once (8–12 of the tuned tiles per SM). Each program then
# runs up to MAX_TILES_PER_PROGRAM consecutive tiles of its row, so the setup that does not depend on the
# tile (the row's coefficients, the Philox key schedule, the addressing: ~2.5 instructions per element of a
# bf16 tile) is paid once for them.
RESIDENT_PROGRAMS_PER_UNIT = 4
MAX_TILES_PER_PROGRAM = 4


def fewest_warps(sms: Optional[int]) -> Optional[int]:
    """The fewest 32-lane warps :func:`filling_tile` and :func:`whole_row_tile` take a program down to on a GPU
    of ``sms`` SMs (CUs, :func:`gpu_units`): one on NVIDIA, MIN_WARPS (one 64-lane wavefront) on AMD;
    None where no GPU runs the launch."""
    import torch

    if sms is None:
        return None
    return MIN_WARPS if torch.version.hip else 1


def whole_row_tile(tile: Tiling, elem_offset: int, mode: int, fewest: Optional[int]) -> Tiling:
    """``tile``, or, for rows of one tensor (``mode`` NO_UNITS) or a shard's aligned runs (NARROW_ALIGNED)
    that are not whole tiles but would be with fewer warps, that tile: quads and warps halved together, down
    to ``fewest`` warps (None: no GPU, no change). Each thread keeps its elements, so the instructions per
    element stay the tuned tile's, and the rows run unmasked (WHOLE_TILES, WHOLE_RUNS): a 4×80×80 latent per
    sample, 25,600 elements, is 25 tiles of a quarter of the bfloat16 tile."""
    if fewest is None or mode not in (NO_UNITS, NARROW_ALIGNED) or whole_tiles(tile, elem_offset):
        return tile
    block, warps = tile.block, tile.warps
    while warps is not None and warps > fewest:
        block, warps = block // 2, warps // 2
        if elem_offset == 0 and tile.row_len % (4 * block) == 0:
            return row_tiling(tile.rows, tile.row_len, block, elem_offset, warps)
    return tile


def grouping_units(sms: Optional[int]) -> Optional[int]:
    """The SMs whose programs :func:`grouped_tiles` counts on a GPU of ``sms`` SMs (CUs, :func:`gpu_units`):
    an NVIDIA GPU's; None (one tile per program) on AMD, whose per-tile setup runs on the scalar unit beside
    the vector instructions: on gfx942 a bfloat16 program of several tiles issues as many vector
    instructions per element as one tile does, and holds more VGPRs."""
    import torch

    return None if torch.version.hip else sms


def grouped_tiles(tile: Tiling, units: Optional[int], mode: int) -> Tiling:
    """``tile`` with each program running ``tiles`` consecutive tiles of its row: the most, up to
    MAX_TILES_PER_PROGRAM, that still start RESIDENT_PROGRAMS_PER_UNIT programs per SM of a GPU of ``units``
    SMs (none without a GPU), and no more than a row holds. Rows and runs of whole tiles (``mode``
    WHOLE_TILES, WHOLE_RUNS) take a number that divides a row's tiles (each program runs them all); the other
    NARROW modes' rows any (a row's last program runs the tiles left, kernels/tiles.tiles_in_row); the other
    modes one."""
    if mode != WHOLE_TILES and mode < NARROW:
        return tile
    whole = mode in (WHOLE_TILES, WHOLE_RUNS)
    tiles = 1
    while (units and 2 * tiles <= MAX_TILES_PER_PROGRAM and tile.chunks >= 2 * tiles
           and (not whole or tile.chunks % (2 * tiles) == 0)
           and tile.rows * -(-tile.chunks // (2 * tiles)) >= RESIDENT_PROGRAMS_PER_UNIT * units):
        tiles *= 2
    if tiles == 1:
        return tile
    chunks = -(-tile.chunks // tiles)
    return tile._replace(chunks=chunks, divisor=packed_divisor(chunks), tiles=tiles)


def run_alignment(elem_offset: int, units, aligned: bool) -> int:
    """The ``elem_offset`` that sizes a launch's tiles: a shard's runs that may start anywhere in a quad are
    tiled as misaligned rows (an offset of 1)."""
    if units is None:
        return elem_offset
    return 0 if aligned else 1


def chunks_per_row(row_len: int, elem_offset: int, block: int) -> int:
    if row_len % 4 == 0 and elem_offset % 4 == 0:
        quads = row_len // 4
    else:
        # A misaligned row of L elements straddles at most (L + 2) // 4 + 1 quads.
        quads = (row_len + 6) // 4
    return -(-quads // block)


def channels_last_tiling(kernel_module, planes: Planes, element_size: int, elem_offset: int = 0) -> Optional[Tiling]:
    """The tiling of a draw through the channels-last tile (kernels/tiles.channels_last_tile): the
    contiguous tile's quads per program, BLOCK_J = block // channels columns of them. None where the
    tile does not apply: a channel count that is not a power of two in [2, CHANNELS_LAST_MAX_C],
    planes that are not whole quads, a stream that does not start at element 0."""
    from ..kernels import tiles

    C = planes.channels
    if (C & (C - 1) or not 2 <= C <= tiles.CHANNELS_LAST_MAX_C or planes.plane % 4
            or elem_offset != 0):
        return None
    row_len = C * planes.plane
    block = max(block_quads(kernel_module, row_len, paired=element_size == 2), C)
    return row_tiling(planes.samples, row_len, block, 0)


# The Box–Muller special functions per target (kernels/box_muller.py, MATH).
MATH_LIBRARY, MATH_NVIDIA, MATH_POLY = 0, 1, 2


def math_mode(device) -> int:
    """Decided per launch: NVIDIA GPUs take their special-function instructions, AMD GPUs (a ROCm
    build of torch, whose GPUs are all "cuda" devices) the multiply-add polynomials, and Triton's
    interpreter, which has no such instructions, the math library's functions."""
    import torch

    if interpreter_active() or (device if type(device) is torch.device else torch.device(device)).type != "cuda":
        return MATH_LIBRARY
    return MATH_POLY if torch.version.hip else MATH_NVIDIA


def launch_warps(kernel_module, device, warps: Optional[int] = None) -> int:
    """Triton's num_warps for a launch of ``warps`` warps of 32 lanes (default the kernel's NUM_WARPS; a
    Tiling's ``warps``): as many on NVIDIA; on AMD, whose wavefronts have 64 lanes, half as many, so each
    thread takes the same quads (kernels/tiles.py)."""
    import torch

    warps = kernel_module.NUM_WARPS if warps is None else warps
    if torch.version.hip and torch.device(device).type == "cuda" and not interpreter_active():
        from ..kernels import tiles

        return max(1, warps * 32 // tiles.AMD_WAVEFRONT)
    return warps


# Compile options of every compiled launch: multiply-adds fused, as the kernels are written for (their
# instruction counts, and a·x + b taken as one rounding); Triton 3.9 warns that its default, left unset,
# turns to unfused in 3.10. A launch that checks t on the device also compiles its device_assert (debug)
# and keeps off the overflow sanitiser that debug would add.
_COMPILED = {"enable_fp_fusion": True}
_CHECKED = {**_COMPILED, "debug": True, "sanitize_overflow": False}


def launch_options(kernel_module, device, warps: Optional[int] = None, check_t: bool = False) -> dict:
    """The options of a launch of ``kernel_module``'s kernels: its warps (:func:`launch_warps`) and, for a
    compiled kernel, the compile options (``check_t``: the device-side check of t compiled in). Triton's
    interpreter takes none of them (some versions refuse the keywords) and runs assertions by its own debug
    setting."""
    options = {"num_warps": launch_warps(kernel_module, device, warps)}
    if not interpreter_active():
        options.update(_CHECKED if check_t else _COMPILED)
    return options
