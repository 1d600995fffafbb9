"""How the kernels address a call's tensors.

The noising kernels see a tensor as R rows of ``row_len`` elements in logical
row-major order (row r is the r-th entry of ``t``). Memory layouts are handled
by collapsing the dims that are contiguous with each other in every tensor
involved and passing up to five (size, stride) pairs; a plain contiguous
tensor becomes one dim of stride 1 and indexes with no division at all.
"""
from __future__ import annotations

from typing import NamedTuple, Optional

import torch

from .tiling import Planes, packed_divisor


MAX_DIMS = 5


def concrete(values):
    """Sizes or strides as ints. Traced with dynamic shapes they are SymInts, and the launch
    arithmetic (collapsing dims, tiling, the packed divisors' bit lengths) needs their values: the
    graph then holds this launch for these sizes (a guard on them; another size traces again)."""
    return [int(v) for v in values]


def collapse_dims(shape, *strides):
    """Merge adjacent dims that are contiguous in every stride list; drop size-1 dims.

    Returns (sizes, [strides per tensor]) with at least one dim.
    """
    sizes: list[int] = []
    merged = [[] for _ in strides]
    for d in range(len(shape)):
        if shape[d] == 1:
            continue
        if sizes and all(m[-1] == s[d] * shape[d] for m, s in zip(merged, strides)):
            sizes[-1] *= shape[d]
            for m, s in zip(merged, strides):
                m[-1] = s[d]
        else:
            sizes.append(shape[d])
            for m, s in zip(merged, strides):
                m.append(s[d])
    if not sizes:
        return [1], [[1] for _ in strides]
    return sizes, merged


# A strided launch divides the logical index with 31-bit multiply-shifts
# (tiles.unravel), masked lanes past the end included (a tile is under 2**16
# elements); a larger strided tensor is copied to a contiguous one first.
MAX_STRIDED_NUMEL = 2**31 - 2**16


class Layout(NamedTuple):
    """How the kernels address a call's tensors (tiles.unravel, tiles.strided_offset)."""
    contiguous: bool  # every tensor contiguous: the kernels' short-signature entry points
    ndim: int  # collapsed dims, 1 to MAX_DIMS
    sizes: tuple  # z1 … z4 (right-aligned, the outermost size left out)
    divisors: tuple  # d1 … d4: the sizes as packed divisors
    strides: list  # (s0 … s4) per tensor, zeros for an absent one
    shared: bool  # every present tensor has the same strides: one address computation serves all

    def args(self) -> tuple:
        """The strided kernels' size, divisor and stride arguments."""
        return (*self.sizes, *self.divisors, *_flat(self.strides))


def layout_of(shape, tensors):
    """The Layout of ``tensors`` (``None`` entries are absent: zero strides, pointer unused).

    None past MAX_DIMS, or for a strided layout of more than MAX_STRIDED_NUMEL elements.
    """
    live = [t for t in tensors if t is not None]
    if all(t.is_contiguous() for t in live):
        # The common case, without the general collapse: one dim of stride 1.
        return Layout(True, 1, (1,) * (MAX_DIMS - 1), _UNIT_DIVISORS,
                      [(0 if t is None else 1,) + (0,) * (MAX_DIMS - 1) for t in tensors], True)
    sizes, strides = collapse_dims(concrete(shape), *[concrete(t.stride()) for t in live])
    ndim = len(sizes)
    if ndim > MAX_DIMS or (ndim > 1 and live[0].numel() > MAX_STRIDED_NUMEL):
        return None
    z = [1] * (MAX_DIMS - ndim) + sizes[1:]
    per_tensor = []
    it = iter(strides)
    for t in tensors:
        if t is None:
            per_tensor.append((0,) * MAX_DIMS)
            continue
        s = next(it)
        per_tensor.append((s[0], *([0] * (MAX_DIMS - ndim)), *s[1:]))
    present = [s for t, s in zip(tensors, per_tensor) if t is not None]
    return Layout(False, ndim, tuple(z), tuple(packed_divisor(size) for size in z), per_tensor,
                  all(s == present[0] for s in present))


def entry_point(layout: Layout, strided, contiguous):
    """(kernel, layout arguments, layout keywords) for a call: the short-signature entry point when
    every tensor is contiguous."""
    if layout.contiguous:
        return contiguous, (), {}
    return strided, layout.args(), {"NDIM": layout.ndim, "SHARED_LAYOUT": layout.shared}


def prepare(shape, tensors, outputs):
    """(tensors, outputs, Layout of both); a layout the kernels cannot address falls back to contiguous copies."""
    layout = layout_of(concrete(shape), tensors + outputs)
    if layout is not None:
        return tensors, outputs, layout
    tensors = [t.contiguous() if t is not None else None for t in tensors]
    outputs = [torch.empty(shape, dtype=o.dtype, device=o.device) if o is not None else None for o in outputs]
    return tensors, outputs, layout_of(shape, tensors + outputs)


def channels_last_planes(layout: Layout, n: int, rows: int) -> Optional[Planes]:
    """The call's Planes when every tensor shares one channels-last layout and ``t`` has one entry
    per sample or one in all (a sample's rows are then one block of memory); else None."""
    if layout.contiguous or not layout.shared or layout.ndim not in (2, 3):
        return None
    strides = layout.strides[0]
    plane = layout.sizes[-1]
    if layout.ndim == 3:  # (samples, channels, plane); one sample has its size-1 dim collapsed away
        channels, channel_stride, sample_stride = layout.sizes[-2], strides[3], strides[0]
        if sample_stride != channels * plane:
            return None
    else:
        channels, channel_stride = n // plane, strides[0]
    if channel_stride != 1 or strides[4] != channels:
        return None
    samples = n // (channels * plane)
    return Planes(samples, channels, plane) if rows in (1, samples) else None


def packed(*tensors):
    """Each tensor as a packed (contiguous) one, None kept. The kernels index the row-index and
    coefficient tables as packed arrays (``t_ptr + row``): a strided or expanded (stride-0) view
    would be read as if packed, or past its buffer."""
    return tuple(t if t is None or t.is_contiguous() else t.contiguous() for t in tensors)


def copy_back(pairs):
    for final, used in pairs:
        if final is not None and used is not final:
            final.copy_(used)


def _flat(items):
    return [v for item in items for v in item]


_UNIT_DIVISORS = (packed_divisor(1),) * (MAX_DIMS - 1)


# A channels-last call that draws no noise is elementwise in memory order, where every tensor is
# contiguous: the contiguous kernels run on it as it lies.
MEMORY_ORDER = Layout(True, 1, (1,) * (MAX_DIMS - 1), _UNIT_DIVISORS, [], True)


def paired(tensor: torch.Tensor, layout: Layout) -> bool:
    """Two quads per thread (8 elements) for contiguous 2-byte I/O, so a thread's elements fill one
    16-byte vector. A strided layout accesses elements one by one: pairing would only add a
    shared-memory shuffle between the noise tile and the addresses."""
    return tensor.element_size() == 2 and layout.contiguous
