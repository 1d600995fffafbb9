"""Test-side use of the package's one tolerance table (diffusion_kernels.tolerances)."""
import torch

from diffusion_kernels.tolerances import NOISE_ATOL, TOLERANCE, to_reference

__all__ = ["NOISE_ATOL", "TOLERANCE", "assert_close", "assert_noise_close", "to_reference"]


def assert_close(actual: torch.Tensor, expected: torch.Tensor, dtype: torch.dtype | None = None):
    """actual (any device, I/O dtype) against a float64 expected value, by the table entry of ``dtype``."""
    tol = TOLERANCE[dtype or actual.dtype]
    torch.testing.assert_close(to_reference(actual), to_reference(expected), equal_nan=True, **tol)


def assert_noise_close(actual: torch.Tensor, expected: torch.Tensor):
    """Drawn normals against the reference stream, to the kernel's fast-math tolerance."""
    torch.testing.assert_close(to_reference(actual), to_reference(expected), rtol=0, atol=NOISE_ATOL)
