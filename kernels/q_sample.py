"""Fused q_sample: x_t = sqrt(ᾱ[t])·x0 + sqrt(1 − ᾱ[t])·ε, forward and backward.

Arithmetic is float32 whatever the I/O dtype; loads are converted up and
stores rounded once, at the end.
"""
import triton
import triton.language as tl

from .convert import to_output
from .philox_normal import lane_select, load_seed, quad_normals
from .tiles import row_coefficients, row_tile, strided_offset

# Quads (4 elements) per program and warps per program. 256 quads = 1024
# elements: 8 per thread at 4 warps, enough in flight to cover HBM latency
# while the Box–Muller math hides behind the loads. The choice never changes
# the noise stream (see philox_normal.py).
BLOCK_QUADS = 256
NUM_WARPS = 4
# Triton's CPU interpreter pays per operation, not per element: there one
# program takes up to this many quads (shrunk to what a row needs).
INTERPRETER_BLOCK_QUADS = 4096

_RNG_ARGS = ["seed_lo", "seed_hi", "stream", "step"]


@triton.jit(do_not_specialize=_RNG_ARGS)
def q_sample_fwd_kernel(
    x0_ptr, noise_ptr, out_ptr, eps_ptr,
    t_ptr, a_ptr, b_ptr, T,
    row_len, chunks_per_row, elem_offset,
    seed_lo, seed_hi, seed_ptr, stream, step,
    z1, z2, z3, z4,
    xs0, xs1, xs2, xs3, xs4,
    ns0, ns1, ns2, ns3, ns4,
    os0, os1, os2, os3, os4,
    es0, es1, es2, es3, es4,
    NDIM: tl.constexpr, HAS_NOISE: tl.constexpr, WRITE_NOISE: tl.constexpr,
    SEED_FROM_PTR: tl.constexpr, BLOCK: tl.constexpr, SOFT_BF16: tl.constexpr,
):
    pid, row, quad, lane, idx, mask = row_tile(chunks_per_row, row_len, elem_offset, BLOCK)
    a, b = row_coefficients(t_ptr, a_ptr, b_ptr, row, T)

    x0 = tl.load(
        x0_ptr + strided_offset(idx, NDIM, z1, z2, z3, z4, xs0, xs1, xs2, xs3, xs4),
        mask=mask, other=0.0, eviction_policy="evict_first",
    ).to(tl.float32)
    if HAS_NOISE:
        eps = tl.load(
            noise_ptr + strided_offset(idx, NDIM, z1, z2, z3, z4, ns0, ns1, ns2, ns3, ns4),
            mask=mask, other=0.0, eviction_policy="evict_first",
        ).to(tl.float32)
    else:
        n0, n1, n2, n3 = quad_normals(load_seed(seed_lo, seed_hi, seed_ptr, SEED_FROM_PTR), quad, stream, step)
        eps = lane_select(n0, n1, n2, n3, lane)

    out = a * x0 + b * eps
    tl.store(
        out_ptr + strided_offset(idx, NDIM, z1, z2, z3, z4, os0, os1, os2, os3, os4),
        to_output(out, out_ptr.dtype.element_ty, SOFT_BF16), mask=mask,
    )
    if WRITE_NOISE:
        tl.store(
            eps_ptr + strided_offset(idx, NDIM, z1, z2, z3, z4, es0, es1, es2, es3, es4),
            to_output(eps, eps_ptr.dtype.element_ty, SOFT_BF16), mask=mask,
        )


@triton.jit(do_not_specialize=_RNG_ARGS)
def q_sample_bwd_kernel(
    g_ptr, x0_ptr, noise_ptr, gx_ptr, gn_ptr, partial_ptr,
    t_ptr, a_ptr, b_ptr, T,
    row_len, chunks_per_row, elem_offset,
    seed_lo, seed_hi, seed_ptr, stream, step,
    z1, z2, z3, z4,
    gs0, gs1, gs2, gs3, gs4,
    xs0, xs1, xs2, xs3, xs4,
    ns0, ns1, ns2, ns3, ns4,
    gxs0, gxs1, gxs2, gxs3, gxs4,
    gns0, gns1, gns2, gns3, gns4,
    NDIM: tl.constexpr, HAS_NOISE: tl.constexpr,
    NEED_GX: tl.constexpr, NEED_GN: tl.constexpr, NEED_PARTIALS: tl.constexpr,
    SEED_FROM_PTR: tl.constexpr, BLOCK: tl.constexpr, SOFT_BF16: tl.constexpr,
):
    """d x_t/d x0 = sqrt(ᾱ[t]), d x_t/d ε = sqrt(1 − ᾱ[t]).

    For a differentiable ᾱ table the gradient of row r's coefficients is
    Σ g·x0 and Σ g·ε over the row; each program writes its two partial sums to
    ``partial_ptr[pid]`` and the host adds them per timestep (deterministic,
    no atomics). ε is regenerated from the seed when it was not given, so the
    forward never has to keep it.
    """
    pid, row, quad, lane, idx, mask = row_tile(chunks_per_row, row_len, elem_offset, BLOCK)
    a, b = row_coefficients(t_ptr, a_ptr, b_ptr, row, T)

    g = tl.load(
        g_ptr + strided_offset(idx, NDIM, z1, z2, z3, z4, gs0, gs1, gs2, gs3, gs4),
        mask=mask, other=0.0, eviction_policy="evict_first",
    ).to(tl.float32)
    if NEED_GX:
        tl.store(
            gx_ptr + strided_offset(idx, NDIM, z1, z2, z3, z4, gxs0, gxs1, gxs2, gxs3, gxs4),
            to_output(a * g, gx_ptr.dtype.element_ty, SOFT_BF16), mask=mask,
        )
    if NEED_GN:
        tl.store(
            gn_ptr + strided_offset(idx, NDIM, z1, z2, z3, z4, gns0, gns1, gns2, gns3, gns4),
            to_output(b * g, gn_ptr.dtype.element_ty, SOFT_BF16), mask=mask,
        )
    if NEED_PARTIALS:
        x0 = tl.load(
            x0_ptr + strided_offset(idx, NDIM, z1, z2, z3, z4, xs0, xs1, xs2, xs3, xs4),
            mask=mask, other=0.0,
        ).to(tl.float32)
        if HAS_NOISE:
            eps = tl.load(
                noise_ptr + strided_offset(idx, NDIM, z1, z2, z3, z4, ns0, ns1, ns2, ns3, ns4),
                mask=mask, other=0.0,
            ).to(tl.float32)
        else:
            n0, n1, n2, n3 = quad_normals(load_seed(seed_lo, seed_hi, seed_ptr, SEED_FROM_PTR), quad, stream, step)
            eps = tl.where(mask, lane_select(n0, n1, n2, n3, lane), 0.0)
        tl.store(partial_ptr + pid * 2, tl.sum(tl.sum(g * x0, axis=1), axis=0))
        tl.store(partial_ptr + pid * 2 + 1, tl.sum(tl.sum(g * eps, axis=1), axis=0))
