"""What every op's host launcher shares: layout, tiling, and registration.

- ``layout``: how a call's tensors are addressed (collapsed dims, strides, channels-last planes);
- ``tiling``: quads per program, programs per row, packed divisors, a launch's warps and compile options;
- ``registry``: a launch's scope and seed arguments, and the ``torch.library`` op registration.

Each op's own launcher sits in its folder: ``noising/launcher.py``, ``loss/launcher.py``,
``trajectory/launcher.py``, ``sampling/launcher.py``.
"""
from .layout import MAX_DIMS, MAX_STRIDED_NUMEL, Layout, Planes, collapse_dims, channels_last_planes, packed, paired, concrete, layout_of, prepare  # noqa: F401
from .tiling import Tiling, next_power_of_2, block_quads, divisor_magic, packed_divisor, tiling, chunks_per_row, channels_last_tiling, math_mode, MATH_LIBRARY, MATH_NVIDIA, MATH_POLY, row_tiling  # noqa: F401

__all__ = ["MAX_DIMS", "MAX_STRIDED_NUMEL", "Layout", "Planes", "collapse_dims", "channels_last_planes", "packed",
           "paired", "concrete", "Tiling", "next_power_of_2", "block_quads", "divisor_magic", "packed_divisor",
           "tiling", "chunks_per_row", "channels_last_tiling", "math_mode", "MATH_LIBRARY", "MATH_NVIDIA",
           "MATH_POLY"]
