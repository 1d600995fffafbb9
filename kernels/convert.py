"""Conversions between the I/O dtypes and float32: 2-byte inputs read up, results rounded once."""
import triton
import triton.language as tl

from .box_muller import MATH_POLY


@triton.jit
def float32_to_bf16_rtne(x):
    """float32 -> bfloat16, round to nearest even, in integer ops.

    The hardware conversion rounds this way; Triton's CPU interpreter
    truncates instead, so the launcher selects this path there (SOFT_BF16) to
    keep interpreter results bit-identical to the GPU's. NaNs stay NaN (the
    rounding carry could otherwise turn a NaN with low payload bits into Inf).
    """
    nan = ((x.to(tl.uint32, bitcast=True) >> 16) | 0x0040).to(tl.uint16).to(tl.bfloat16, bitcast=True)
    return tl.where(x != x, nan, never_nan_to_bf16_rtne(x))


@triton.jit
def never_nan_to_bf16_rtne(x):
    """float32_to_bf16_rtne for a block that holds no NaN (±inf and overflow round as the hardware's do):
    the rounding add alone, where a GPU without a bfloat16 conversion instruction (gfx942) would also test
    every value for NaN."""
    bits = x.to(tl.uint32, bitcast=True)
    return ((bits + 0x7FFF + ((bits >> 16) & 1)) >> 16).to(tl.uint16).to(tl.bfloat16, bitcast=True)


@triton.jit
def quiet_nan_to_bf16_rtne(x):
    """float32 -> bfloat16, round to nearest even, in integer ops, every NaN made the one quiet NaN
    0x7FC0 (a NaN's payload could otherwise carry the rounding add into the sign, or leave it Inf).

    The NaNs are replaced in the float32 bits, before the rounding add: one compare and one select per
    value. LLVM's own lowering selects after the shift down, so each value is also shifted on its own,
    where the rounding add's high halves are otherwise packed two to a word by one permute."""
    bits = tl.where(x != x, 0x7FC00000, x.to(tl.uint32, bitcast=True))
    return never_nan_to_bf16_rtne(bits.to(tl.float32, bitcast=True))


@triton.jit
def to_output(x, dtype: tl.constexpr, SOFT_BF16: tl.constexpr, MATH: tl.constexpr, NEVER_NAN: tl.constexpr = False):
    """Round a float32 block once to the output element type. A bfloat16 output rounds in integer ops
    under Triton's interpreter (SOFT_BF16) and on a target without a bfloat16 conversion instruction
    (MATH == MATH_POLY: AMD, gfx942), else by the hardware's conversion. NEVER_NAN: the block holds no
    NaN (drawn noise: finite normals times a finite offset strength), so the integer rounding needs no
    NaN test."""
    if dtype == tl.bfloat16 and NEVER_NAN and (SOFT_BF16 or MATH == MATH_POLY):
        return never_nan_to_bf16_rtne(x)
    elif SOFT_BF16 and dtype == tl.bfloat16:
        return float32_to_bf16_rtne(x)
    elif MATH == MATH_POLY and dtype == tl.bfloat16:
        return quiet_nan_to_bf16_rtne(x)
    else:
        return x.to(dtype)


@triton.jit
def load_bf16_words(ptr, start, SIZE: tl.constexpr):
    """SIZE bfloat16 elements from ``ptr + start`` as float32, read as 32-bit words (``ptr + start`` 4-byte
    aligned: the launcher's WHOLE_TILES rows are).

    A bfloat16 is the high half of its float32, so the word's low element is the word shifted up 16 bits
    and its high element the word with its low half cleared: one instruction each, where the conversion of
    a loaded pair spends three (it moves the high element down before shifting it back up).
    """
    words = tl.load(ptr.to(tl.pointer_type(tl.int32)) + start // 2 + tl.arange(0, SIZE // 2),
                    eviction_policy="evict_first")
    low = (words << 16).to(tl.float32, bitcast=True)
    high = (words & -65536).to(tl.float32, bitcast=True)  # 0xFFFF0000
    return tl.reshape(tl.join(low, high), [SIZE])
