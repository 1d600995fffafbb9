"""Test-side use of the package's one tolerance table (diffusion_kernels.tolerances)."""
import torch

from diffusion_kernels.tolerances import TOLERANCE, to_reference

__all__ = ["TOLERANCE", "assert_close", "to_reference"]


def assert_close(actual: torch.Tensor, expected: torch.Tensor, dtype: torch.dtype | None = None):
    """actual (any device, I/O dtype) against a float64 expected value, by the table entry of ``dtype``."""
    tol = TOLERANCE[dtype or actual.dtype]
    torch.testing.assert_close(to_reference(actual), to_reference(expected), equal_nan=True, **tol)
