"""The compiled CPU loops of the noise stream (numba; imported only where the [cpu] extra is installed).

Module-level functions, so numba caches their machine code on disk: a process pays the compile
(a few seconds) once per installation, not once per run. Each loop has a serial body over a range
of work, which LLVM vectorises (unsigned indices: no negative-index wraparound test), and a parallel
driver that spreads ranges over threads; small tensors call the body directly, since waking the
threads costs more than their work.
"""
import numba
import numpy as np

from .cpu_jit import MASK32, SHIFT32, f32, float32_at, int64_at, jit, one, three, two, u32

@jit(inline="always")
def philox_round(c0, c1, c2, c3, k0, k1):
    pa = np.uint64(c0) * np.uint64(0xD2511F53)
    pb = np.uint64(c2) * np.uint64(0xCD9E8D57)
    # numba widens uint32 arithmetic to 64 bits; every value here already fits in 32.
    return (u32(u32(pb >> np.uint64(32)) ^ c1 ^ k0), u32(pb & np.uint64(0xFFFFFFFF)),
            u32(u32(pa >> np.uint64(32)) ^ c3 ^ k1), u32(pa & np.uint64(0xFFFFFFFF)))

@jit(inline="always")
def philox(c0, c1, c2, c3, k0, k1):
    # The ten rounds written out: a loop-free body is what lets LLVM vectorise the loop over quads.
    ka, kb = u32(0x9E3779B9), u32(0xBB67AE85)
    c0, c1, c2, c3 = philox_round(c0, c1, c2, c3, k0, k1)
    c0, c1, c2, c3 = philox_round(c0, c1, c2, c3, u32(k0 + ka), u32(k1 + kb))
    c0, c1, c2, c3 = philox_round(c0, c1, c2, c3, u32(k0 + u32(2) * ka), u32(k1 + u32(2) * kb))
    c0, c1, c2, c3 = philox_round(c0, c1, c2, c3, u32(k0 + u32(3) * ka), u32(k1 + u32(3) * kb))
    c0, c1, c2, c3 = philox_round(c0, c1, c2, c3, u32(k0 + u32(4) * ka), u32(k1 + u32(4) * kb))
    c0, c1, c2, c3 = philox_round(c0, c1, c2, c3, u32(k0 + u32(5) * ka), u32(k1 + u32(5) * kb))
    c0, c1, c2, c3 = philox_round(c0, c1, c2, c3, u32(k0 + u32(6) * ka), u32(k1 + u32(6) * kb))
    c0, c1, c2, c3 = philox_round(c0, c1, c2, c3, u32(k0 + u32(7) * ka), u32(k1 + u32(7) * kb))
    c0, c1, c2, c3 = philox_round(c0, c1, c2, c3, u32(k0 + u32(8) * ka), u32(k1 + u32(8) * kb))
    return philox_round(c0, c1, c2, c3, u32(k0 + u32(9) * ka), u32(k1 + u32(9) * kb))


@jit(inline="always")
def ln(u):
    # kernels/box_muller.py::ln_poly: u = (1 + f)·2**e, 1 + f in [sqrt(1/2), sqrt(2)), 2·atanh(f/(2+f))
    bits = np.int32(np.float32(u).view(np.int32))
    e = (bits >> 23) - 127
    m_bits = (bits & 0x7FFFFF) | 0x3F800000
    high = m_bits > 0x3FB504F3  # selects, not branches: the loop stays vectorisable
    m_bits = m_bits - 0x800000 if high else m_bits
    e = e + 1 if high else e
    f = np.int32(m_bits).view(np.float32) - f32(1.0)
    s = f / (f + f32(2.0))  # the exact quotient, where the AMD kernel takes a 1-ulp hardware reciprocal
    s2 = s * s
    p = (((s2 * f32(2.0 / 9.0) + f32(2.0 / 7.0)) * s2 + f32(2.0 / 5.0)) * s2 + f32(2.0 / 3.0)) * s2 + f32(2.0)
    return f32(e) * f32(0.6931471805599453) + s * p

@jit(inline="always")
def cos_sin(rb):
    # kernels/box_muller.py::cos_sin_poly: quadrant of theta = 2 pi r, Taylor on [-pi/4, pi/4]
    r = f32(rb >> u32(8)) * f32(5.9604644775390625e-08) - f32(0.5)
    q = np.floor(r * f32(4.0) + f32(0.5))
    x = (r - q * f32(0.25)) * f32(6.283185307179586)
    x2 = x * x
    s = x2 * x * (((x2 * f32(1.0 / 362880.0) - f32(1.0 / 5040.0)) * x2 + f32(1.0 / 120.0)) * x2
                  - f32(1.0 / 6.0)) + x
    c = ((((x2 * f32(-1.0 / 3628800.0) + f32(1.0 / 40320.0)) * x2 - f32(1.0 / 720.0)) * x2
          + f32(1.0 / 24.0)) * x2 - f32(0.5)) * x2 + f32(1.0)
    quarter = np.int32(q) & 3
    swap = (quarter & 1) == 1  # odd quarter turns exchange sin and cos
    cos_t = s if swap else c
    sin_t = c if swap else s
    cos_t = -cos_t if (quarter == 1 or quarter == 2) else cos_t
    sin_t = -sin_t if quarter >= 2 else sin_t
    return cos_t, sin_t

@jit(inline="always")
def pair(ra, rb):
    u1 = f32(ra >> u32(9)) * f32(2.0**-23) + f32(2.0**-24)
    radius = np.sqrt(f32(-2.0) * ln(u1))
    c, s = cos_sin(rb)
    return radius * c, radius * s


@jit(inline="always")
def quad_normals(q, first_quad, k0, k1, stream, step):
    quad = np.uint64(first_quad + q)
    r0, r1, r2, r3 = philox(u32(quad & MASK32), u32(quad >> SHIFT32), stream, step, k0, k1)
    n0, n1 = pair(r0, r1)
    n2, n3 = pair(r2, r3)
    return n0, n1, n2, n3


@jit()
def normals_range(out, lo, hi, first_quad, k0, k1, stream, step):
    """out[4q … 4q + 3] = the four normals of quad first_quad + q, for q in [lo, hi)."""
    for q in range(lo, hi):
        n0, n1, n2, n3 = quad_normals(q, first_quad, k0, k1, stream, step)
        j = np.uint64(4 * q)
        out[j] = n0
        out[j + one] = n1
        out[j + two] = n2
        out[j + three] = n3


@jit(parallel=True)
def normals_parallel(out, chunk, first_quad, k0, k1, stream, step):
    quads = out.shape[0] // 4
    for block in numba.prange((quads + chunk - 1) // chunk):
        normals_range(out, block * chunk, min((block + 1) * chunk, quads), first_quad, k0, k1, stream, step)


@jit(parallel=True)
def normals_runs(out, starts, length, k0, k1, stream, step):
    """out[i·length … (i+1)·length) = the normals at global positions starts[i] … starts[i] + length: the runs
    of a shard (sharding.Units), each drawn on whole quads into a buffer and cut to its lanes."""
    for i in numba.prange(starts.shape[0]):
        s = starts[i]
        q0 = s // 4
        quads = (s + length + 3) // 4 - q0
        buf = np.empty(4 * quads, dtype=np.float32)
        normals_range(buf, 0, quads, q0, k0, k1, stream, step)
        skip = s - 4 * q0
        for j in range(length):
            out[i * length + j] = buf[skip + j]


@jit(parallel=True)
def words(out, first_quad, k0, k1, stream, step):
    for q in numba.prange(out.shape[0]):
        quad = np.uint64(first_quad + q)
        r = philox(u32(quad & MASK32), u32(quad >> SHIFT32), stream, step, k0, k1)
        for lane in range(4):
            out[q, lane] = r[lane]


@jit()
def edge_quad(q, x, out, eps, lo, hi, ar, br, orow, k0, k1, stream, write_eps):
    n0, n1, n2, n3 = quad_normals(q, 0, k0, k1, stream, u32(0))
    j = 4 * q
    for lane, value in ((0, n0), (1, n1), (2, n2), (3, n3)):
        if lo <= j + lane < hi:
            e = value + orow
            out[j + lane] = ar * x[j + lane] + br * e
            if write_eps:
                eps[j + lane] = e


@jit()
def affine_item(item, chunks, chunk, x, out, eps, row_len, t, a, b, off, has_off, k0, k1, stream, write_eps):
    """Work item ``item`` = (row, chunk of that row's quads) of out = a[t[row]]·x + b[t[row]]·(ε + off[row])
(off[row] only ``has_off``). t is clamped into the tables, as the kernels clamp it: a checked t is in range.

    Quads wholly inside the row store without a test, so their loop vectorises; the (at most two)
    quads at the row's ends keep only their own lanes. A quad that straddles two rows is drawn by
    both, as the GPU tiles do.
    """
    r = item // chunks
    lo, hi = r * row_len, (r + 1) * row_len
    q_start = lo // 4 + (item - r * chunks) * chunk
    q_end = min(q_start + chunk, (hi + 3) // 4)
    row = min(max(t[r], 0), a.shape[0] - 1)
    ar, br = a[row], b[row]
    orow = off[r] if has_off else f32(0.0)
    body_lo = min(max(q_start, (lo + 3) // 4), q_end)
    body_hi = max(min(q_end, hi // 4), body_lo)
    for q in range(q_start, body_lo):
        edge_quad(q, x, out, eps, lo, hi, ar, br, orow, k0, k1, stream, write_eps)
    if write_eps:
        for q in range(body_lo, body_hi):
            n0, n1, n2, n3 = quad_normals(q, 0, k0, k1, stream, u32(0))
            j = np.uint64(4 * q)
            e0, e1, e2, e3 = n0 + orow, n1 + orow, n2 + orow, n3 + orow
            eps[j], eps[j + one], eps[j + two], eps[j + three] = e0, e1, e2, e3
            out[j] = ar * x[j] + br * e0
            out[j + one] = ar * x[j + one] + br * e1
            out[j + two] = ar * x[j + two] + br * e2
            out[j + three] = ar * x[j + three] + br * e3
    else:
        for q in range(body_lo, body_hi):
            n0, n1, n2, n3 = quad_normals(q, 0, k0, k1, stream, u32(0))
            j = np.uint64(4 * q)
            out[j] = ar * x[j] + br * (n0 + orow)
            out[j + one] = ar * x[j + one] + br * (n1 + orow)
            out[j + two] = ar * x[j + two] + br * (n2 + orow)
            out[j + three] = ar * x[j + three] + br * (n3 + orow)
    for q in range(body_hi, q_end):
        edge_quad(q, x, out, eps, lo, hi, ar, br, orow, k0, k1, stream, write_eps)


@jit()
def affine_serial(x_at, out_at, eps_at, n, row_len, chunk, t_at, rows, a_at, b_at, T, off_at, has_off, k0, k1,
                  stream, write_eps):
    """out = a[t[row]]·x + b[t[row]]·(ε + off[row]) over ``n`` float32 elements at ``x_at`` (rows of
    ``row_len``; ``rows`` int64 entries of t, T float32 entries of each table), ε also to ``eps_at``
    with ``write_eps``."""
    x, out = numba.carray(float32_at(x_at), (n,)), numba.carray(float32_at(out_at), (n,))
    eps = numba.carray(float32_at(eps_at), (n,))
    t, off = numba.carray(int64_at(t_at), (rows,)), numba.carray(float32_at(off_at), (rows if has_off else 1,))
    a, b = numba.carray(float32_at(a_at), (T,)), numba.carray(float32_at(b_at), (T,))
    key0, key1, word = u32(k0), u32(k1), u32(stream)
    chunks = ((row_len + 3) // 4 + chunk) // chunk
    for item in range(rows * chunks):
        affine_item(item, chunks, chunk, x, out, eps, row_len, t, a, b, off, has_off, key0, key1, word, write_eps)


@jit(parallel=True)
def affine_parallel(x_at, out_at, eps_at, n, row_len, chunk, t_at, rows, a_at, b_at, T, off_at, has_off, k0, k1,
                    stream, write_eps):
    """:func:`affine_serial`, its work items spread over threads."""
    x, out = numba.carray(float32_at(x_at), (n,)), numba.carray(float32_at(out_at), (n,))
    eps = numba.carray(float32_at(eps_at), (n,))
    t, off = numba.carray(int64_at(t_at), (rows,)), numba.carray(float32_at(off_at), (rows if has_off else 1,))
    a, b = numba.carray(float32_at(a_at), (T,)), numba.carray(float32_at(b_at), (T,))
    key0, key1, word = u32(k0), u32(k1), u32(stream)
    chunks = ((row_len + 3) // 4 + chunk) // chunk
    for item in numba.prange(rows * chunks):
        affine_item(item, chunks, chunk, x, out, eps, row_len, t, a, b, off, has_off, key0, key1, word, write_eps)
