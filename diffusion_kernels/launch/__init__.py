"""Host launchers for the fused kernels: layout, allocation, grid, one module per job.

- ``layout``: how a call's tensors are addressed (collapsed dims, strides, channels-last planes);
- ``tiling``: quads per program, programs per row, packed divisors;
- ``registry``: a launch's scope and seed arguments, and the ``torch.library`` op registration;
- ``noising`` (the noise_affine family), ``trajectory``, ``noise_mse``: the launchers of each kernel family.

The names below are the ones the rest of the package (and its tests) use.
"""
from .layout import MAX_DIMS, MAX_STRIDED_NUMEL, Layout, Planes, collapse_dims, channels_last_planes, packed, paired, concrete, layout_of, prepare  # noqa: F401
from .tiling import Tiling, next_power_of_2, block_quads, divisor_magic, packed_divisor, tiling, chunks_per_row, channels_last_tiling, math_mode, MATH_LIBRARY, MATH_NVIDIA, MATH_POLY, row_tiling  # noqa: F401
from .registry import seed_parts  # noqa: F401
from .noising import noise_affine, noise_affine_backward, q_sample_forward, channels_last_draw  # noqa: F401
from .trajectory import forward_trajectory  # noqa: F401
from .noise_mse import Target, loss_grad, loss_sums, noise_mse_forward, noise_mse_backward  # noqa: F401
from .sampling import sampling_draws  # noqa: F401

__all__ = ["MAX_DIMS", "MAX_STRIDED_NUMEL", "Layout", "Planes", "collapse_dims", "channels_last_planes", "packed",
           "paired", "concrete", "Tiling", "next_power_of_2", "block_quads", "divisor_magic", "packed_divisor",
           "tiling", "chunks_per_row", "channels_last_tiling", "math_mode", "MATH_LIBRARY", "MATH_NVIDIA",
           "MATH_POLY", "seed_parts", "noise_affine", "noise_affine_backward", "q_sample_forward",
           "forward_trajectory", "Target", "loss_grad", "loss_sums", "noise_mse_forward", "noise_mse_backward",
           "sampling_draws"]
