"""Host launchers for the fused q_sample kernels: layout, allocation, grid.

The kernels see a tensor as R rows of ``row_len`` elements in logical
row-major order (row r is the r-th entry of ``t``). Memory layouts are handled
by collapsing the dims that are contiguous with each other in every tensor
involved and passing up to five (size, stride) pairs; a plain contiguous
tensor becomes one dim of stride 1 and indexes with no division at all.
"""
from __future__ import annotations

import contextlib

import torch

from . import seeding
from .backend import interpreter_active, kernels_module

MAX_DIMS = 5


def collapse_dims(shape, *strides):
    """Merge adjacent dims that are contiguous in every stride list; drop size-1 dims.

    Returns (sizes, [strides per tensor]) with at least one dim.
    """
    dims = [d for d in range(len(shape)) if shape[d] != 1]
    sizes: list[int] = []
    merged = [[] for _ in strides]
    for d in dims:
        if sizes and all(m[-1] == s[d] * shape[d] for m, s in zip(merged, strides)):
            sizes[-1] *= shape[d]
            for m, s in zip(merged, strides):
                m[-1] = s[d]
        else:
            sizes.append(shape[d])
            for m, s in zip(merged, strides):
                m.append(s[d])
    if not sizes:
        return [1], [[1] for _ in strides]
    return sizes, merged


def _layout(shape, tensors):
    """(NDIM, (z1..z4), [(s0..s4) per tensor]) for the kernels' strided_offset.

    ``None`` entries in ``tensors`` get zero strides (their pointer is unused).
    """
    live = [t for t in tensors if t is not None]
    sizes, strides = collapse_dims(shape, *[t.stride() for t in live])
    ndim = len(sizes)
    if ndim > MAX_DIMS:
        return None
    z = [1] * (MAX_DIMS - ndim) + sizes[1:]
    per_tensor = []
    it = iter(strides)
    for t in tensors:
        if t is None:
            per_tensor.append((0,) * MAX_DIMS)
            continue
        s = next(it)
        padded = [s[0]] + [0] * (MAX_DIMS - ndim) + s[1:]
        per_tensor.append(tuple(padded))
    return ndim, tuple(z), per_tensor


def block_quads(kernel_module, row_len: int) -> int:
    """Quads per program: the kernel's tuned constant on a GPU; under the
    interpreter, large tiles (fewer, bigger numpy operations) cut to the row.

    The noise stream does not depend on this choice.
    """
    if not interpreter_active():
        return kernel_module.BLOCK_QUADS
    needed = triton_next_power_of_2((row_len + 6) // 4)
    return max(16, min(kernel_module.INTERPRETER_BLOCK_QUADS, needed))


def triton_next_power_of_2(n: int) -> int:
    return 1 << max(0, (n - 1).bit_length())


def _chunks_per_row(row_len: int, elem_offset: int, block: int) -> int:
    if row_len % 4 == 0 and elem_offset % 4 == 0:
        quads = row_len // 4
    else:
        # A misaligned row of L elements straddles at most (L + 2) // 4 + 1 quads.
        quads = (row_len + 6) // 4
    return -(-quads // block)


def _device_guard(tensor: torch.Tensor):
    if tensor.device.type == "cuda":
        return torch.cuda.device(tensor.device)
    return contextlib.nullcontext()


def _prepare(shape, tensors, outputs):
    """Layout for ``tensors + outputs``; too many dims falls back to contiguous copies."""
    layout = _layout(shape, tensors + outputs)
    if layout is not None:
        return tensors, outputs, layout
    tensors = [t.contiguous() if t is not None else None for t in tensors]
    outputs = [torch.empty(shape, dtype=o.dtype, device=o.device) if o is not None else None for o in outputs]
    return tensors, outputs, _layout(shape, tensors + outputs)


def _flat(items):
    return [v for item in items for v in item]


def seed_args(seed):
    """(seed_lo, seed_hi, seed_ptr, SEED_FROM_PTR) for an int seed or a 1-element int64 device tensor."""
    if isinstance(seed, torch.Tensor):
        return 0, 0, seed, True
    lo, hi = seeding.split_seed(seed)
    return lo, hi, None, False


def q_sample_forward(x0, t_rows, sqrt_ab, sqrt_1m_ab, noise=None, *, seed=0, stream: int = 0,
                     step: int = 0, write_noise: bool = False, elem_offset: int = 0):
    """x_t (and ε when ``write_noise``) by the fused kernel.

    ``t_rows`` is an int64 tensor of R timesteps on x0's device, R dividing
    x0.numel(); ``sqrt_ab``/``sqrt_1m_ab`` are float32 tables on that device.
    The outputs keep x0's memory format (channels_last in, channels_last out).
    """
    km = kernels_module()
    out = torch.empty_like(x0)
    eps = torch.empty_like(x0) if write_noise and noise is None else None
    n = x0.numel()
    if n == 0:
        return out, eps
    shape = x0.shape
    (x0_, noise_), (out_, eps_), (ndim, z, strides) = _prepare(shape, [x0, noise], [out, eps])
    rows = t_rows.numel()
    row_len = n // rows
    block = block_quads(km.q_sample, row_len)
    cpr = _chunks_per_row(row_len, elem_offset, block)
    seed_lo, seed_hi, seed_ptr, seed_from_ptr = seed_args(seed)
    grid = (rows * cpr,)
    with _device_guard(x0):
        km.q_sample.q_sample_fwd_kernel[grid](
            x0_, noise_ if noise_ is not None else x0_, out_, eps_ if eps_ is not None else out_,
            t_rows, sqrt_ab, sqrt_1m_ab, sqrt_ab.numel(),
            row_len, cpr, elem_offset,
            seed_lo, seed_hi, seed_ptr if seed_from_ptr else t_rows, stream, step,
            *z, *_flat(strides),
            NDIM=ndim, HAS_NOISE=noise is not None, WRITE_NOISE=eps is not None,
            SEED_FROM_PTR=seed_from_ptr, BLOCK=block, SOFT_BF16=interpreter_active(),
            num_warps=km.q_sample.NUM_WARPS,
        )
    if out_ is not out:
        out.copy_(out_)
    if eps is not None and eps_ is not eps:
        eps.copy_(eps_)
    return out, eps


def q_sample_backward(grad, t_rows, sqrt_ab, sqrt_1m_ab, x0=None, noise=None, *, seed=0,
                      stream: int = 0, step: int = 0, x0_dtype=None, noise_dtype=None,
                      need_tables: bool = False, elem_offset: int = 0):
    """Gradients of x_t to x0, to a given ε, and to the two coefficient tables.

    Returns (grad_x0, grad_noise, grad_sqrt_ab, grad_sqrt_1m_ab). grad_x0 is
    made when ``x0_dtype`` is given, grad_noise when ``noise_dtype`` is, the
    table gradients when ``need_tables``; those read ``x0`` and, when it was
    given in the forward, ``noise`` (otherwise ε is regenerated from the seed).
    """
    km = kernels_module()
    gx = torch.empty_like(grad, dtype=x0_dtype) if x0_dtype is not None else None
    gn = torch.empty_like(grad, dtype=noise_dtype) if noise_dtype is not None else None
    n = grad.numel()
    T = sqrt_ab.numel()
    if n == 0:
        zeros = (torch.zeros_like(sqrt_ab), torch.zeros_like(sqrt_1m_ab)) if need_tables else (None, None)
        return (gx, gn, *zeros)
    shape = grad.shape
    (g_, x0_, noise_), (gx_, gn_), (ndim, z, strides) = _prepare(shape, [grad, x0, noise], [gx, gn])
    rows = t_rows.numel()
    row_len = n // rows
    block = block_quads(km.q_sample, row_len)
    cpr = _chunks_per_row(row_len, elem_offset, block)
    partials = torch.empty((rows * cpr, 2), dtype=torch.float32, device=grad.device) if need_tables else None
    seed_lo, seed_hi, seed_ptr, seed_from_ptr = seed_args(seed)
    with _device_guard(grad):
        km.q_sample.q_sample_bwd_kernel[(rows * cpr,)](
            g_, x0_ if x0_ is not None else g_, noise_ if noise_ is not None else g_,
            gx_ if gx_ is not None else g_, gn_ if gn_ is not None else g_,
            partials if partials is not None else sqrt_ab,
            t_rows, sqrt_ab, sqrt_1m_ab, T,
            row_len, cpr, elem_offset,
            seed_lo, seed_hi, seed_ptr if seed_from_ptr else t_rows, stream, step,
            *z, *_flat(strides),
            NDIM=ndim, HAS_NOISE=noise is not None,
            NEED_GX=gx is not None, NEED_GN=gn is not None, NEED_PARTIALS=need_tables,
            SEED_FROM_PTR=seed_from_ptr, BLOCK=block, SOFT_BF16=interpreter_active(),
            num_warps=km.q_sample.NUM_WARPS,
        )
    if gx is not None and gx_ is not gx:
        gx.copy_(gx_)
    if gn is not None and gn_ is not gn:
        gn.copy_(gn_)
    if not need_tables:
        return gx, gn, None, None
    per_row = partials.view(rows, cpr, 2).sum(dim=1)
    grad_a = torch.zeros(T, dtype=torch.float32, device=grad.device).index_add_(0, t_rows, per_row[:, 0])
    grad_b = torch.zeros(T, dtype=torch.float32, device=grad.device).index_add_(0, t_rows, per_row[:, 1])
    return gx, gn, grad_a, grad_b


def forward_trajectory(x0, sqrt_alpha, sqrt_beta, t_end: int, *, seed=0, stream: int = 0, snapshot_steps=()):
    """x_{t_end} after the steps 0 … t_end, and the snapshots at ``snapshot_steps`` (sorted, unique).

    Returns (x_t_end, snapshots) where snapshots has shape (len(snapshot_steps), *x0.shape).
    """
    km = kernels_module()
    src = x0.contiguous()
    out = torch.empty_like(src)
    snaps = torch.empty((len(snapshot_steps), *x0.shape), dtype=x0.dtype, device=x0.device)
    n = src.numel()
    if n == 0:
        return out, snaps
    snap_index = torch.full((t_end + 1,), -1, dtype=torch.int32)
    for k, s in enumerate(snapshot_steps):
        snap_index[s] = k
    snap_index = snap_index.to(x0.device)
    block = block_quads(km.trajectory, n)
    chunks = _chunks_per_row(n, 0, block)
    seed_lo, seed_hi, seed_ptr, seed_from_ptr = seed_args(seed)
    with _device_guard(x0):
        km.trajectory.forward_trajectory_kernel[(chunks,)](
            src, out, snaps if len(snapshot_steps) else out, snap_index,
            sqrt_alpha, sqrt_beta, t_end, n, chunks,
            seed_lo, seed_hi, seed_ptr if seed_from_ptr else snap_index, stream,
            HAS_SNAPSHOTS=len(snapshot_steps) > 0, SEED_FROM_PTR=seed_from_ptr, BLOCK=block,
            SOFT_BF16=interpreter_active(), num_warps=km.trajectory.NUM_WARPS,
        )
    return (out if x0.is_contiguous() else torch.empty_like(x0).copy_(out)), snaps
