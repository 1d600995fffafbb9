"""The one tolerance table: a result, cast to float64, against a float64 reference
computed from the same (rounded) inputs.

float32: the kernel forms a·x0 + b·ε in float32 from float32 coefficient
tables, a few ulps of |a·x0| + |b·ε|. float16 / bfloat16: the float32 result
is rounded once to the output dtype, half an ulp (2^-11, 2^-8 relative).
The absolute term covers cancellation of the two products near zero.
"""
import torch

TOLERANCE = {
    torch.float64: dict(rtol=1e-12, atol=1e-12),
    torch.float32: dict(rtol=1.3e-6, atol=1e-5),
    torch.float16: dict(rtol=1e-3, atol=1e-5),
    torch.bfloat16: dict(rtol=8e-3, atol=1e-5),
}


# A drawn normal against reference.philox_normal (same Philox integers, float64 or
# math-library float32 Box–Muller): on a GPU the kernel uses sin.approx/cos.approx
# (within 2**-20.9 absolute in [-pi, pi], times a radius of at most 5.77: ~3e-6)
# of an angle from the whole Philox word (within ~2.7e-6 of the contract's 24 bits)
# and lg2.approx, with a series where u1 -> 1 so the radius stays within ~2e-6
# (kernels/box_muller.py); the rest is float32 rounding.
NOISE_ATOL = 1e-5


def to_reference(x: torch.Tensor) -> torch.Tensor:
    """Upcast to float64 on the CPU, the reference's precision."""
    return x.detach().to(device="cpu", dtype=torch.float64)


def excess_error(actual: torch.Tensor, expected: torch.Tensor, dtype: torch.dtype) -> float:
    """max(|actual − expected| / (atol + rtol·|expected|)); ≤ 1 means within tolerance. NaNs must match."""
    tol = TOLERANCE[dtype]
    a, e = to_reference(actual), to_reference(expected)
    same_nan = torch.isnan(a) == torch.isnan(e)
    if not bool(same_nan.all()):
        return float("inf")
    finite = ~torch.isnan(e)
    if not bool(finite.any()):
        return 0.0
    ratio = (a[finite] - e[finite]).abs() / (tol["atol"] + tol["rtol"] * e[finite].abs())
    return float(ratio.max())


# A loss (a weighted mean or sum of squared residuals) against the float64 reference over the same
# ε: float32 squares added in tree reductions per program and then per row, a few ulps of the
# total, and the drawn ε's NOISE_ATOL, relative to residuals of order 1.
LOSS_RTOL = 1e-5
LOSS_ATOL = 1e-6
