"""Where a local tensor sits in a global one (``global_shape=``, ``global_offset=``).

The noise stream is a function of the logical row-major position in the tensor a call sees. A call on a
block ``x[o0:o0+n0, o1:o1+n1, ...]`` of a global tensor of ``global_shape`` draws, for each local element,
the normal of its *global* position, so any split of a batch over processes (data, context or sequence
parallel) draws exactly the values one process draws for the whole batch.

The local block is a set of *units*: runs of consecutive global positions, each inside one row of ``t``
(the kernels' rows). With k the last dim the block cuts and m the number of dims ``t`` covers, units are
enumerated by the dims before u = max(k, m) and hold ∏_{d ≥ u} n_d elements each; unit i starts at global
position Σ_d o_d·G_d + Σ_{d<u} i_d·G_d (G the global row-major strides). A block cut only along the batch
is one run per row; a context-parallel cut along frames is one run per (sample, channel).
"""
from __future__ import annotations

import dataclasses
import functools
import math
from collections.abc import Sequence

import torch

from . import checks
from .launch.tiling import takes_narrow


@dataclasses.dataclass(frozen=True)
class Block:
    """A local tensor of ``shape`` at ``offset`` in a global tensor of ``global_shape`` (all tuples of ints)."""

    shape: tuple[int, ...]
    global_shape: tuple[int, ...]
    offset: tuple[int, ...]

    @property
    def global_strides(self) -> tuple[int, ...]:
        strides, step = [], 1
        for size in reversed(self.global_shape):
            strides.append(step)
            step *= size
        return tuple(reversed(strides))

    @property
    def whole(self) -> bool:
        """The block is the whole global tensor: its noise is the plain call's (on stream 0 by default)."""
        return self.shape == self.global_shape

    @property
    def base(self) -> int:
        """The global position of the local element (0, …, 0)."""
        return sum(o * g for o, g in zip(self.offset, self.global_strides))

    def leading(self, ndim: int) -> Block:
        """The block of the first ``ndim`` dims: where a per-sample t or σ of that rank sits."""
        return Block(self.shape[:ndim], self.global_shape[:ndim], self.offset[:ndim])


def _ints(value: object, name: str) -> tuple[int, ...]:
    if isinstance(value, torch.Tensor) or not isinstance(value, Sequence):
        raise TypeError(f"{name} must be a sequence of ints (a tuple or torch.Size), got {type(value).__name__}")
    return tuple(checks.check_int(v, name) for v in value)


def block_of(shape: Sequence[int], global_shape: object, global_offset: object) -> Block | None:
    """The checked Block of a local tensor of ``shape``, or None when no global tensor is named. A block that
    is the whole global tensor (``Block.whole``) draws as the plain call does, on stream 0 by default."""
    if global_shape is None and global_offset is None:
        return None
    if global_shape is None or global_offset is None:
        raise ValueError("pass global_shape and global_offset together: where the local tensor sits needs both")
    shape = tuple(int(s) for s in shape)
    sizes = _ints(global_shape, "global_shape")
    offset = _ints(global_offset, "global_offset")
    if len(sizes) != len(shape) or len(offset) != len(shape):
        raise ValueError(f"global_shape {sizes} and global_offset {offset} need one entry per dim of the local "
                         f"tensor of shape {shape}")
    for d, (n, size, o) in enumerate(zip(shape, sizes, offset)):
        if size < 0 or o < 0 or o + n > size:
            raise ValueError(f"the local tensor of shape {shape} at global_offset {offset} does not fit in "
                             f"global_shape {sizes}: dim {d} covers [{o}, {o + n}) of {size}")
    if math.prod(sizes) >= 2**62:
        raise ValueError(f"global_shape {sizes} has {math.prod(sizes)} elements; positions must stay below 2**62")
    return Block(shape, sizes, offset)


def leading_block(shape: Sequence[int], global_shape: object, global_offset: object) -> Block | None:
    """:func:`block_of` for a per-sample tensor (t, σ) of ``shape``, which may be given the data's global
    shape and offset: their first len(shape) entries are its own."""
    if global_shape is not None and global_offset is not None:
        ndim = len(tuple(shape))
        global_shape = _ints(global_shape, "global_shape")
        global_offset = _ints(global_offset, "global_offset")
        if len(global_shape) > ndim and len(global_offset) == len(global_shape):
            global_shape, global_offset = global_shape[:ndim], global_offset[:ndim]
    return block_of(shape, global_shape, global_offset)


@dataclasses.dataclass(frozen=True, eq=False)
class Units:
    """The runs of a block as the kernels take them: ``count`` runs of ``length`` elements, ``per_row`` of
    them in each local row of t; ``starts`` (count,) global positions of their first elements and
    ``rows`` (count,) the global index of their row of t (what offset noise is drawn at), int64 on the CPU."""

    count: int
    length: int
    per_row: int
    starts: torch.Tensor
    rows: torch.Tensor
    block: Block
    rows_ndim: int
    aligned: bool  # every run starts on a Philox quad and holds whole quads (the kernels' vector accesses)
    narrow: bool  # positions below 2**34, runs within 2**31 − 2**20 (launch.tiling.takes_narrow: 32-bit math)

    def table(self, device: torch.device) -> torch.Tensor:
        """(count, 2) int64 on ``device``: each run's start and global row, as the kernels read them."""
        return _table(self, torch.device(device))


@functools.lru_cache(maxsize=64)
def _table(units: Units, device: torch.device) -> torch.Tensor:
    return torch.stack([units.starts, units.rows], dim=1).contiguous().to(device)


def partial(block: Block | None) -> Block | None:
    """``block`` where it is a part of its global tensor; None for the whole (drawn as the plain call)."""
    return None if block is None or block.whole else block


def positions(block: Block, device: torch.device | str | None = None) -> torch.Tensor:
    """The global row-major position of every local element: an int64 tensor of the local shape."""
    total = torch.zeros((), dtype=torch.int64, device=device)
    ndim = len(block.shape)
    for d, (n, o, g) in enumerate(zip(block.shape, block.offset, block.global_strides)):
        axis = (torch.arange(n, dtype=torch.int64, device=device) + o) * g
        total = total + axis.reshape((n,) + (1,) * (ndim - d - 1))
    return total.expand(block.shape) if ndim else total


def row_positions(block: Block, rows_ndim: int) -> torch.Tensor:
    """The global index of each local row of t (t covering the first ``rows_ndim`` dims), flattened."""
    return positions(block.leading(rows_ndim)).reshape(-1)


@functools.lru_cache(maxsize=64)
def units_of(block: Block, rows_ndim: int) -> Units:
    """The runs of ``block`` for a t of ``rows_ndim`` dims (see the module's docstring)."""
    cut = [d for d, (n, size) in enumerate(zip(block.shape, block.global_shape)) if n != size]
    u = max(cut[-1] if cut else 0, rows_ndim)
    length = math.prod(block.shape[u:])
    per_row = math.prod(block.shape[rows_ndim:u])
    head = block.leading(u)
    rest = sum(o * g for o, g in zip(block.offset[u:], block.global_strides[u:]))
    # Global position of run i = Σ_{d<u} (o_d + i_d)·G_d + Σ_{d>=u} o_d·G_d: the head's positions in
    # the global head (strides G_d / ∏_{e>=u} N_e) scaled back up.
    inner = math.prod(block.global_shape[u:])
    starts = positions(head).reshape(-1) * inner + rest
    rows = row_positions(block, rows_ndim).repeat_interleave(per_row) if rows_ndim else \
        torch.zeros(starts.numel(), dtype=torch.int64)
    # Every start Σ_d o_d·G_d + Σ_{d<u} i_d·G_d is a multiple of 4 when the first is and each stride a run
    # index steps by is (ints: no tensor value is read, so a compiled graph holds no data-dependent guard).
    aligned = length % 4 == 0 and block.base % 4 == 0 and all(
        g % 4 == 0 for n, g in zip(block.shape[:u], block.global_strides[:u]) if n > 1)
    narrow = takes_narrow(math.prod(block.global_shape), length)
    return Units(starts.numel(), length, per_row, starts, rows, block, rows_ndim, aligned, narrow)
