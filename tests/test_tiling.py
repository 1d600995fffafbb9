"""The launch tiling: the multiply-shift division the kernels use to find a program's row."""
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from diffusion_kernels.launch import divisor_magic, tiling
from diffusion_kernels.backend import kernels_module

PID_MAX = 2**31 - 1


def quotient(n: int, d: int) -> int:
    """What the kernel computes: the 64-bit product of the 32-bit words, shifted."""
    m, s = divisor_magic(d)
    return (n * (m % 2**32)) >> s


@settings(max_examples=2000, deadline=None)
@given(d=st.integers(1, PID_MAX), n=st.integers(0, PID_MAX))
def test_multiply_shift_equals_integer_division(d, n):
    assert quotient(n, d) == n // d


@pytest.mark.parametrize("d", [1, 2, 3, 7, 16, 37, 1000, 2**16 + 1, 2**30, 2**30 + 1, 2**31 - 1])
def test_multiply_shift_is_exact_at_the_edges(d):
    for n in {0, 1, d - 1, d, d + 1, 2 * d - 1, PID_MAX - 1, PID_MAX, (PID_MAX // d) * d, (PID_MAX // d) * d - 1}:
        if 0 <= n <= PID_MAX:
            assert quotient(n, d) == n // d, (n, d)


def test_multiplier_fits_a_32_bit_word():
    for d in [1, 2, 3, 5, 2**20 + 3, 2**31 - 1]:
        m, s = divisor_magic(d)
        assert -(2**31) <= m < 2**31 and 31 <= s <= 62


@pytest.mark.parametrize("d", [0, -1, 2**31])
def test_divisor_out_of_range_is_refused(d):
    with pytest.raises(ValueError, match="divisor"):
        divisor_magic(d)


@pytest.mark.parametrize("n, rows", [(1, 1), (7, 1), (64 * 4096, 64), (3 * 5 * 29, 3)])
def test_grid_covers_every_row(n, rows):
    tile = tiling(kernels_module().q_sample, n, rows)
    assert tile.grid == (rows * tile.chunks,)
    assert tile.chunks * tile.block * 4 >= tile.row_len
