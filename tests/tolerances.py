"""Test-side use of the package's one tolerance table (diffusion_kernels.tolerances)."""
import torch

from diffusion_kernels.tolerances import LOSS_ATOL, LOSS_RTOL, NOISE_ATOL, TOLERANCE, to_reference

__all__ = ["LOSS_ATOL", "LOSS_RTOL", "NOISE_ATOL", "TOLERANCE", "assert_close", "assert_grad_close",
           "assert_loss_close", "assert_noise_close", "to_reference"]


def assert_close(actual: torch.Tensor, expected: torch.Tensor, dtype: torch.dtype | None = None):
    """actual (any device, I/O dtype) against a float64 expected value, by the table entry of ``dtype``."""
    tol = TOLERANCE[dtype or actual.dtype]
    torch.testing.assert_close(to_reference(actual), to_reference(expected), equal_nan=True, **tol)


def assert_noise_close(actual: torch.Tensor, expected: torch.Tensor):
    """Drawn normals against the reference stream, to the kernel's fast-math tolerance."""
    torch.testing.assert_close(to_reference(actual), to_reference(expected), rtol=0, atol=NOISE_ATOL)


def assert_loss_close(actual: torch.Tensor, expected: torch.Tensor):
    """A loss (or per-sample losses) against its float64 reference."""
    torch.testing.assert_close(to_reference(actual), to_reference(expected), rtol=LOSS_RTOL, atol=LOSS_ATOL)


def assert_grad_close(actual: torch.Tensor, expected: torch.Tensor, dtype: torch.dtype):
    """A loss's gradient against its float64 reference, relative to the gradient's largest entry (a
    loss's gradient is scaled by 1/numel and the weights, so absolute terms are relative to that)."""
    scale = float(to_reference(expected).abs().max()) or 1.0
    tol = dict(TOLERANCE[dtype])
    # A small gradient in a 2-byte dtype lies among its subnormals, whose spacing is absolute.
    info = torch.finfo(dtype)
    tol["atol"] += info.smallest_normal * info.eps / scale
    torch.testing.assert_close(actual.detach().double().cpu() / scale, to_reference(expected) / scale, **tol)
