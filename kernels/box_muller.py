"""Box–Muller in float32: two standard normals from two 32-bit Philox outputs, with each target's
special functions (philox_normal.py draws the words; reference.philox_normal is the contract)."""
import triton
import triton.language as tl
from triton.language.extra import libdevice


# Box–Muller in float32. The radius uses 23 bits of r0 placed at the centre of
# their bucket, u1 = (k + 0.5) * 2**-23 for k = r0 >> 9, which lies in (0, 1),
# so log(u1) is finite and the largest |z| drawn is sqrt(-2 ln 2**-24) ~ 5.77.
# u1 is formed without an int→float conversion: k written under the exponent
# of 1.0 is the float 1 + k * 2**-23 (one shift-and-add), and subtracting
# 1 - 2**-24 leaves (2k + 1) * 2**-24, exact in float32. The angle uses 24
# bits of r1, u2 = k * 2**-24 in [0, 1), and is centred to [-pi, pi) where
# sin/cos are accurate without a long argument reduction.
#
# MATH picks the special functions per target (diffusion_kernels.launch.tiling.math_mode):
#
# MATH_NVIDIA uses the hardware approximations sin.approx, cos.approx and
# lg2.approx: one special-function instruction each instead of the math
# library's polynomial and range-reduction code, which would make a bf16
# kernel bound by instruction issue rather than memory. Their constants are
# folded to one instruction each: -2 ln(u1) = lg2(u1) * (-2 ln 2), and
# theta = r1 * (2 pi 2**-32) - pi in one FMA from the whole word converted
# (rounded to its 24 leading bits), which spares the shift to k: r1 / 2**32
# lies within 2**-24 (+ 2**-26 of rounding) above k 2**-24, an angle at most
# ~4.7e-7 larger, ~2.7e-6 on a normal at the largest radius (5.77).
# Accuracy against the math library: sin/cos.approx are within 2**-20.9
# absolute in [-pi, pi], ~3e-6 on a normal after the radius (at most 5.77).
# lg2.approx is within 2**-22 absolute on [0.5, 2], which is no relative
# accuracy at all as u1 -> 1 where log(u1) -> 0: a radius near 0 could be off
# by up to ~6e-4. So for u1 > 1 - 2**-8 the kernel takes -2 ln(1 + w),
# w = u1 - 1 (exact there), from its series to w**2, (w - 2) w: two
# instructions; the truncation, under (2/3)|w|**3 <= 2**-24.6 on r**2 >= 2|w|,
# moves the radius by at most ~2.3e-7. Elsewhere r**2 >= 2**-7 and lg2's error
# moves the radius by at most ~2e-6. A normal is thus within ~8e-6 of the math-library value
# (diffusion_kernels.tolerances.NOISE_ATOL = 1e-5; tests/test_box_muller.py, the instructions at their
# worst-case errors: 7.1e-6 over every angle at the largest radius).
#
# MATH_POLY (AMD GPUs) builds log, sin and cos from float32 multiply-adds and
# one hardware reciprocal, so its accuracy depends on no vendor's
# transcendental error bound and the CPU suite checks it exhaustively (the
# reciprocal at its error bound): Triton's AMD libdevice has no fast_log2f /
# fast_sinf / fast_cosf, and its accurate sin/cos cost ~300 instructions each.
# ln u1 = e ln 2 + 2 atanh(f / (2 + f)) with u1 = (1 + f) 2**e, 1 + f in
# [sqrt(1/2), sqrt(2)) (the atanh series to s**9, |s| <= 0.172: truncation
# < 1e-9, and relative accuracy kept as u1 -> 1, where e = 0 and f = u1 - 1
# exactly). sin and cos of theta = 2 pi r, r = u2 - 1/2, by quadrant,
# q = round(4r), and Taylor polynomials of x = 2 pi (r - q/4) in
# [-pi/4, pi/4] (to x**9 and x**10: truncation < 2e-9); r and r - q/4 are
# exact. About 30 instructions per pair, all full-rate ALU ops but the reciprocal.
#
# MATH_LIBRARY (Triton's CPU interpreter, which has none of the instructions)
# runs the math library's functions.
MATH_LIBRARY = tl.constexpr(0)
MATH_NVIDIA = tl.constexpr(1)
MATH_POLY = tl.constexpr(2)
ONE_BITS = tl.constexpr(0x3F800000)
ONE_MINUS_TWO_POW_M24 = tl.constexpr(0.99999994039535522)
TWO_POW_M24 = tl.constexpr(5.9604644775390625e-08)
TWO_PI = tl.constexpr(6.283185307179586)
TWO_PI_POW_M32 = tl.constexpr(6.283185307179586 * 2.0**-32)
PI = tl.constexpr(3.141592653589793)
MINUS_TWO_LN2 = tl.constexpr(-1.3862943611198906)
LN2 = tl.constexpr(0.6931471805599453)
SQRT2_BITS = tl.constexpr(0x3FB504F3)  # the float32 just below sqrt(2)
SIGN_BIT = tl.constexpr(-0x80000000)  # a float32's sign bit, as an int32
SERIES_BELOW = tl.constexpr(-0.00390625)  # -2**-8: w above it takes the series
SQRT_TWO_LN2 = tl.constexpr(1.1774100225154747)  # sqrt(2 ln 2): -2 ln u1 = 2 ln 2 · (-lg2 u1)
HALF_OVER_LN2 = tl.constexpr(0.7213475204444817)  # 1 / (2 ln 2)


@triton.jit
def ln_poly(u):
    """ln u for a normal float32 u > 0 from multiply-adds (MATH_POLY)."""
    bits = u.to(tl.int32, bitcast=True)
    e = (bits >> 23) - 127
    m_bits = (bits & 0x7FFFFF) | ONE_BITS  # u = m 2**e, m in [1, 2)
    high = m_bits > SQRT2_BITS  # m > sqrt(2): take m / 2 (exact) and e + 1
    m_bits = tl.where(high, m_bits - 0x800000, m_bits)
    e = tl.where(high, e + 1, e)
    f = m_bits.to(tl.float32, bitcast=True) - 1.0  # exact (Sterbenz)
    # The hardware reciprocal (v_rcp_f32, within 1 ulp) times f: the IEEE division costs ~10 instructions
    # per pair. s is then within a few ulp, ln u1 within ~1e-7 absolute and still relative as u1 -> 1.
    s = libdevice.fast_dividef(f, f + 2.0)
    s2 = s * s
    # 2 atanh(s) = s (2 + 2/3 s**2 + 2/5 s**4 + 2/7 s**6 + 2/9 s**8)
    p = tl.fma(tl.fma(tl.fma(tl.fma(s2, 2.0 / 9.0, 2.0 / 7.0), s2, 2.0 / 5.0), s2, 2.0 / 3.0), s2, 2.0)
    return tl.fma(e.to(tl.float32), LN2, s * p)


@triton.jit
def cos_sin_poly(rb):
    """cos and sin of theta = 2 pi (k 2**-24 - 1/2), k = rb >> 8, from multiply-adds (MATH_POLY)."""
    r = (rb >> 8).to(tl.float32) * TWO_POW_M24 - 0.5
    q = tl.floor(tl.fma(r, 4.0, 0.5))  # nearest quarter turn, in -2 … 2
    x = (r - q * 0.25) * TWO_PI  # in [-pi/4, pi/4]
    x2 = x * x
    s = tl.fma(x2 * x, tl.fma(tl.fma(tl.fma(x2, 1.0 / 362880.0, -1.0 / 5040.0), x2, 1.0 / 120.0), x2,
                              -1.0 / 6.0), x)
    c = tl.fma(tl.fma(tl.fma(tl.fma(tl.fma(x2, -1.0 / 3628800.0, 1.0 / 40320.0), x2, -1.0 / 720.0), x2,
                             1.0 / 24.0), x2, -0.5), x2, 1.0)
    quarter = q.to(tl.int32)  # theta = x + quarter · pi/2: (cos, sin) = (c, s), (−s, c), (−c, −s), (s, −c)
    # One compare: an odd quarter swaps c and s; then the sign bits flip by XOR, cos's in quarters 1 and 2
    # ((quarter + 1) & 2), sin's in 2 and 3 (quarter & 2). Nested selects held three compare masks per
    # pair in scalar registers, which spilled there on a tile of whole rows.
    odd = (quarter & 1) != 0
    first = tl.where(odd, s, c).to(tl.int32, bitcast=True)
    second = tl.where(odd, c, s).to(tl.int32, bitcast=True)
    cos_t = (first ^ (((quarter + 1) << 30) & SIGN_BIT)).to(tl.float32, bitcast=True)
    sin_t = (second ^ ((quarter << 30) & SIGN_BIT)).to(tl.float32, bitcast=True)
    return cos_t, sin_t


@triton.jit
def box_muller(ra, rb, MATH: tl.constexpr, scale=None):
    """Two independent N(0, 1) from two uint32 blocks; with ``scale`` (a float32 scalar: x_t's b[t] where
    ε itself is not written) the two times scale.

    Scaled on NVIDIA GPUs, the radius comes from −lg2(u1) (the series divided by 2 ln 2 near u1 = 1) and
    the constant sqrt(2 ln 2) joins the scale: scale·radius is one multiply per pair where b·ε took one per
    element. The products round differently from scale·(radius·cos θ), by a few float32 ulps of the result.
    """
    u1 = ((ra >> 9) + ONE_BITS).to(tl.float32, bitcast=True) - ONE_MINUS_TWO_POW_M24
    if MATH == MATH_NVIDIA:
        theta = tl.fma(rb.to(tl.float32), TWO_PI_POW_M32, -PI)
        w = u1 - 1.0
        if scale is None:
            radius = tl.sqrt(tl.where(w > SERIES_BELOW, (w - 2.0) * w, libdevice.fast_log2f(u1) * MINUS_TWO_LN2))
        else:
            # lg2(u1) < 0, or the series over 2 ln 2 > 0: the square root takes the magnitude (an operand
            # modifier), the select is the predicated lg2.
            lg2 = tl.where(w > SERIES_BELOW, tl.fma(w, HALF_OVER_LN2, -2.0 * HALF_OVER_LN2) * w,
                           libdevice.fast_log2f(u1))
            radius = (scale * SQRT_TWO_LN2) * tl.sqrt(tl.abs(lg2))
        n0, n1 = radius * libdevice.fast_cosf(theta), radius * libdevice.fast_sinf(theta)
    else:
        if MATH == MATH_POLY:
            radius = tl.sqrt(-2.0 * ln_poly(u1))
            cos_t, sin_t = cos_sin_poly(rb)
            n0, n1 = radius * cos_t, radius * sin_t
        else:
            theta = (rb >> 8).to(tl.float32) * TWO_POW_M24 * TWO_PI - PI
            radius = tl.sqrt(-2.0 * tl.log(u1))
            n0, n1 = radius * tl.cos(theta), radius * tl.sin(theta)
        if scale is not None:
            n0, n1 = scale * n0, scale * n1
    return n0, n1
