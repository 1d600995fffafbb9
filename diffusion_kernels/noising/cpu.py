"""The noising op on the compiled CPU loop (cpu_noise, the ``[cpu]`` extra): x_t (and ε) in one pass where
it applies; the reference's formulas over the loop's ε everywhere else (autograd, v-targets, input
perturbation, a shard's global positions, a seed held in a tensor)."""
from __future__ import annotations

import torch

from .. import cpu_noise, reference, sharding
from ..forms import Form
from .reference import follow_layout, formula

SEED_ON_DEVICE = False
_LOOP_DTYPES = (torch.float32, torch.bfloat16, torch.float16)
PLAIN_DTYPES = _LOOP_DTYPES  # what ``plain`` takes (float64 keeps the reference's precision)


def drawer(block: sharding.Block | None, device: torch.device, seed: object = 0):
    """The compiled loop's drawer of the stream's normals for an int seed (the reference's for a seed in a
    tensor, which the loop cannot read); for a shard, the normals of its global positions."""
    if isinstance(seed, torch.Tensor):
        return None if block is None else reference.block_drawer(block, None, device=device)
    if block is None:
        return cpu_noise.philox_normal
    return reference.block_drawer(block, cpu_noise.block_normal, device=device)


def _needs_grad(x: torch.Tensor, inputs: tuple) -> bool:
    """Whether autograd must follow the call: the loop's pass is not differentiable, the formula is."""
    if not torch.is_grad_enabled():
        return False
    if x.requires_grad:
        return True
    for t in inputs:
        if isinstance(t, torch.Tensor) and t.requires_grad:
            return True
    return False


def prepare_plain(x: torch.Tensor, index: torch.Tensor, tables: tuple, write_eps: bool,
                  check_on_device: bool) -> None:
    """Nothing to keep per kind of call: the loop reads its arguments by address."""
    return None


def plain(x: torch.Tensor, index: torch.Tensor, tables: tuple, seed: int, stream: int, write_eps: bool,
          prepared: None) -> tuple:
    """(x_t, ε or None) of a plain drawing call (noising/plans.py) from one pass of the loop over ``x``:
    a[t]·x + b[t]·ε in float32, ε the stream's normal, as the reference's formula computes over the same ε.
    The backends' common signature of that call (noising/triton.py); a CPU t was checked on the host."""
    threads = cpu_noise.one_thread_if_forked()
    try:
        return _fused(x, index, tables, seed, stream, 0.0, write_eps)
    finally:
        cpu_noise.restore_threads(threads)


def _fused(x: torch.Tensor, index: torch.Tensor, tables: tuple, seed: int, stream: int, offset_strength: float,
           write_eps: bool) -> tuple:
    if x.dtype is not torch.float32 or not x.is_contiguous():
        # 2-byte I/O (numba has no bfloat16) and strided layouts: the loop runs on a packed float32 copy,
        # the same float32 arithmetic the reference's formula does, rounded to the I/O dtype at the end.
        out, eps = _fused(x.float().contiguous(), index, tables, seed, stream, offset_strength, write_eps)
        out = torch.empty_like(x).copy_(out.view(x.shape))
        return out, (torch.empty_like(x).copy_(eps.view(x.shape)) if eps is not None else None)
    offset = None
    if offset_strength:
        offset = cpu_noise.row_offsets(seed, max(index.numel(), 1), stream, offset_strength)
    return cpu_noise.noising(x, index, tables[0], tables[1], offset, seed, stream, write_eps)


def noise(x: torch.Tensor, noise, form: Form, *, seed, stream: int, offset_strength: float, perturbation: float,
          block: sharding.Block | None, write_eps: bool, write_v: bool) -> tuple:
    """(out, ε, v or None): the backends' common signature (noising/triton.py, reference.py)."""
    if (noise is None and write_v is False and perturbation == 0.0 and block is None and x.dtype in _LOOP_DTYPES
            and type(seed) is int and not _needs_grad(x, form.inputs)):
        out, eps = _fused(x, form.index, form.tables(x.device), seed, stream, offset_strength, write_eps)
        if x.is_contiguous():
            return out, eps, None
        return follow_layout(x, out), follow_layout(x, eps), None
    return formula(x, noise, form, seed=seed, stream=stream, offset_strength=offset_strength,
                   perturbation=perturbation, write_v=write_v, draw=drawer(block, x.device, seed))
