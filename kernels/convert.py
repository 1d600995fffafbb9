"""Rounding of float32 results to the output dtype."""
import triton
import triton.language as tl


@triton.jit
def float32_to_bf16_rtne(x):
    """float32 -> bfloat16, round to nearest even, in integer ops.

    The hardware conversion rounds this way; Triton's CPU interpreter
    truncates instead, so the launcher selects this path there (SOFT_BF16) to
    keep interpreter results bit-identical to the GPU's. NaNs stay NaN (the
    rounding carry could otherwise turn a NaN with low payload bits into Inf).
    """
    bits = x.to(tl.uint32, bitcast=True)
    rounded = (bits + 0x7FFF + ((bits >> 16) & 1)) >> 16
    nan = (bits >> 16) | 0x0040
    out = tl.where(x != x, nan, rounded)
    return out.to(tl.uint16).to(tl.bfloat16, bitcast=True)


@triton.jit
def to_output(x, dtype: tl.constexpr, SOFT_BF16: tl.constexpr):
    """Round a float32 block once to the output element type."""
    if SOFT_BF16 and dtype == tl.bfloat16:
        return float32_to_bf16_rtne(x)
    else:
        return x.to(dtype)
