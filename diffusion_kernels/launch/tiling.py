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
           strided: bool = False) -> Tiling:
    """The tiling of n elements in ``rows`` rows for ``kernel_module``'s kernels (``paired``: contiguous
    2-byte I/O, ``strided``: a strided layout; see block_quads)."""
    row_len = n // rows
    return row_tiling(rows, row_len, block_quads(kernel_module, row_len, paired, strided), elem_offset)


@functools.lru_cache(maxsize=256)
def row_tiling(rows: int, row_len: int, block: int, elem_offset: int) -> Tiling:
    # A training loop repeats one shape: the divisor arithmetic is done once per shape.
    chunks = chunks_per_row(row_len, elem_offset, block)
    return Tiling(rows, row_len, block, chunks, packed_divisor(chunks))


# kernels/tiles.py's row_tile modes: rows of one tensor, a shard's quad-aligned runs, runs starting anywhere.
NO_UNITS, UNITS_ALIGNED, UNITS_ANY = 0, 1, 2


def units_mode(units, aligned: bool) -> int:
    """row_tile's UNITS for a launch: a shard's run table (``units``) whose runs all start on a quad and hold
    whole quads (``aligned``, sharding.Units.aligned) takes the contiguous tile's vector accesses."""
    if units is None:
        return NO_UNITS
    return UNITS_ALIGNED if aligned else UNITS_ANY


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


# The Box–Muller special functions per target (kernels/philox_normal.py, MATH).
MATH_LIBRARY, MATH_NVIDIA, MATH_POLY = 0, 1, 2


def math_mode(device) -> int:
    """Decided per launch: NVIDIA GPUs take their special-function instructions, AMD GPUs (a ROCm
    build of torch, whose GPUs are all "cuda" devices) the multiply-add polynomials, and Triton's
    interpreter, which has no such instructions, the math library's functions."""
    import torch

    if interpreter_active() or (device if type(device) is torch.device else torch.device(device)).type != "cuda":
        return MATH_LIBRARY
    return MATH_POLY if torch.version.hip else MATH_NVIDIA


def launch_warps(kernel_module, device) -> int:
    """Triton's num_warps for a launch: the kernel's NUM_WARPS warps of 32 lanes on NVIDIA; on AMD, whose
    wavefronts have 64 lanes, half as many, so each thread takes the same quads (kernels/tiles.py)."""
    import torch

    if torch.version.hip and torch.device(device).type == "cuda" and not interpreter_active():
        from ..kernels import tiles

        return max(1, kernel_module.NUM_WARPS * 32 // tiles.AMD_WAVEFRONT)
    return kernel_module.NUM_WARPS
