"""Noising: the fused noising kernels as a torch.autograd.Function (the Triton backend's autograd layer)."""
from __future__ import annotations

from typing import Any, Optional, Tuple, cast

import torch

from .. import checks, reference
from ..seeding import seed_parts
from . import launcher

# (x_t, ε or None, v or None): what the noising Function returns.
Outputs = Tuple[torch.Tensor, Optional[torch.Tensor], Optional[torch.Tensor]]
Opt = Optional[torch.Tensor]


def _fwd(*args: Any) -> Any:
    if torch.compiler.is_compiling():
        return torch.ops.diffusion_kernels.noising(*args)
    return launcher.forward(*args)


def _bwd(*args: Any) -> Any:
    if torch.compiler.is_compiling():
        return torch.ops.diffusion_kernels.noising_backward(*args)
    return launcher.backward(*args)


def _saveable(tensor: torch.Tensor | None) -> torch.Tensor | None:
    """An inference tensor (a table or t made under torch.inference_mode) cannot be saved for
    backward: a normal copy of it can."""
    if tensor is None or torch.compiler.is_compiling() or not tensor.is_inference():
        return tensor
    with torch.inference_mode(False):
        return tensor.clone()


def _table_grad(table: torch.Tensor | None, t_rows: torch.Tensor, row_sums: torch.Tensor) -> torch.Tensor | None:
    if table is None or not table.requires_grad:
        return None
    return torch.zeros(table.numel(), dtype=torch.float32, device=row_sums.device).index_add_(0, t_rows, row_sums)


def _forward(x0: torch.Tensor, t_rows: torch.Tensor, a: torch.Tensor, b: torch.Tensor, c: Opt, d: Opt, noise: Opt,
             seed_parts: tuple[Any, int, int],
             stream: int, offset_strength: float, return_noise: bool, return_v: bool, check_t: bool,
             perturbation: float = 0.0, runs: Any = None) -> Outputs:
    """(out, ε or None, v or None) from one launch of the fused forward kernel; ``runs`` (sharding.Units)
    for a shard of a global tensor, ``t_rows`` then one entry per run."""
    seed_tensor, lo, hi = seed_parts
    out, eps, v = _fwd(x0, t_rows, a, b, c, d, noise, seed_tensor, lo, hi, stream, 0, offset_strength,
                       return_noise and noise is None, return_v, 0, check_t, perturbation, *_units(runs, x0))
    return out, (eps if return_noise and noise is None else None), (v if return_v else None)


def _units(runs: Any, like: torch.Tensor) -> tuple[torch.Tensor | None, bool, bool]:
    """The launchers' (units, units_aligned, units_narrow) for a shard's runs (sharding.Units), or for none."""
    return (None, False, False) if runs is None else (runs.table(like.device), runs.aligned, runs.narrow)


def apply(x0: torch.Tensor, t_rows: torch.Tensor, a: torch.Tensor, b: torch.Tensor, c: Opt, d: Opt, noise: Opt,
          seed: int | torch.Tensor, stream: int, offset_strength: float, return_noise: bool, return_v: bool,
          check_t: bool = False, perturbation: float = 0.0, runs: Any = None) -> Outputs:
    """Noising.apply, or the launch alone when nothing needs a gradient: an inference or data-noising
    call then skips the autograd Function's bookkeeping, a few microseconds a small batch would feel."""
    needs_grad = torch.is_grad_enabled() and any(
        t is not None and t.requires_grad for t in (x0, a, b, c, d, noise))
    if needs_grad or torch.compiler.is_compiling():
        return Noising.apply(x0, t_rows, a, b, c, d, noise, seed, stream, offset_strength, return_noise, return_v,
                             check_t, perturbation, runs)
    return _forward(x0, t_rows, a, b, c, d, noise, seed_parts(seed), stream, offset_strength, return_noise,
                    return_v, check_t, perturbation, runs)


class Noising(torch.autograd.Function):
    """out = a[t]·x0 + b[t]·ε and, on request, v = c[t]·x0 + d[t]·ε (float32 tables, one row per t entry).

    Inputs: x0, t_rows (int64), a, b, c, d (c, d may be None), noise (or None),
    seed (int or 1-element int64 device tensor), stream, offset_strength,
    return_noise, return_v, check_t (assert t's range on the device).
    Returns (out, ε or None, v or None). ε drawn in the kernel is not
    differentiable and is never saved: the backward regenerates it from the
    seed when the tables need a gradient.
    """

    @staticmethod
    def forward(ctx: Any, x0: torch.Tensor, t_rows: torch.Tensor, a: torch.Tensor, b: torch.Tensor, c: Opt, d: Opt,
                noise: Opt, seed: int | torch.Tensor,
                stream: int, offset_strength: float, return_noise: bool, return_v: bool, check_t: bool,
                perturbation: float = 0.0, runs: Any = None) -> Outputs:
        seed_tensor, lo, hi = parts = seed_parts(seed)
        out, eps, v = _forward(x0, t_rows, a, b, c, d, noise, parts, stream, offset_strength, return_noise, return_v,
                               check_t, perturbation, runs)
        ctx.runs = runs
        tables_need_grad = any(ctx.needs_input_grad[i] for i in (2, 3, 4, 5))
        checks.refuse_perturbation_grad(perturbation, tables_need_grad)
        saved = (t_rows, a, b, c, d, x0 if tables_need_grad else None, noise if tables_need_grad else None,
                 seed_tensor)
        ctx.save_for_backward(*(_saveable(tensor) for tensor in saved))
        ctx.seed_lo, ctx.seed_hi, ctx.stream, ctx.offset_strength = lo, hi, stream, offset_strength
        ctx.x0_dtype = x0.dtype
        ctx.noise_dtype = noise.dtype if noise is not None else None
        if eps is not None:
            ctx.mark_non_differentiable(eps)
        return out, eps, v

    @staticmethod
    def backward(ctx: Any, g: Opt, _g_eps: Opt, g_v: Opt) -> tuple[Opt, ...]:
        t_rows, a, b, c, d, x0, noise, seed_tensor = ctx.saved_tensors
        if g is None and g_v is None:
            return (None,) * 15
        if torch.is_grad_enabled():
            # backward(create_graph=True): the gradient must itself be differentiable, so it is
            # built from PyTorch operations (the same values as the fused backward).
            return _differentiable_backward(ctx, g, g_v, t_rows, a, b, c, d, x0, noise, seed_tensor)
        need_tables = any(ctx.needs_input_grad[i] for i in (2, 3, 4, 5))
        # Only v was used: the same kernel with (c, d) in the roles of (a, b).
        swap = g is None
        first, second = (g_v, None) if swap else (g, g_v)
        ta, tb, tc, td = (c, d, a, b) if swap else (a, b, c, d)
        gx, gn, sums = _bwd(first, second, t_rows, ta, tb, tc, td, x0, noise, seed_tensor, ctx.seed_lo,
                            ctx.seed_hi, ctx.stream, 0, ctx.offset_strength,
                            ctx.x0_dtype if ctx.needs_input_grad[0] else None,
                            ctx.noise_dtype if ctx.needs_input_grad[6] else None, need_tables, 0,
                            *_units(ctx.runs, cast(torch.Tensor, first)))
        grads: list[torch.Tensor | None] = [None] * 4
        if need_tables:
            cols = (2, 3, 0, 1) if swap else (0, 1, 2, 3)
            grads = [_table_grad(tab, t_rows, sums[:, col]) for tab, col in zip((a, b, c, d), cols)]
        return (gx if ctx.needs_input_grad[0] else None, None, *grads,
                gn if ctx.needs_input_grad[6] else None, None, None, None, None, None, None, None, None)


def _per_row(values: torch.Tensor, t_rows: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
    """values[t] of each row, shaped to broadcast over ``like`` viewed as (rows, elements per row)."""
    return values.to(torch.float32)[t_rows].unsqueeze(1)


def _differentiable_backward(ctx: Any, g: Opt, g_v: Opt, t_rows: torch.Tensor, a: torch.Tensor, b: torch.Tensor,
                             c: Opt, d: Opt, x0: Opt, noise: Opt, seed_tensor: Opt) -> tuple[Opt, ...]:
    rows = t_rows.numel()
    like = cast(torch.Tensor, g if g is not None else g_v)  # the Function's backward never passes both None
    shape = like.shape
    flat_g = g.reshape(rows, -1).float() if g is not None else None
    flat_gv = g_v.reshape(rows, -1).float() if g_v is not None else None

    def combine(first: Any, second: Any) -> torch.Tensor:
        parts = []
        if flat_g is not None:
            parts.append(flat_g * _per_row(first, t_rows, like))
        if flat_gv is not None:
            parts.append(flat_gv * _per_row(second, t_rows, like))
        return sum(parts[1:], parts[0]).reshape(shape)

    gx = combine(a, c).to(ctx.x0_dtype) if ctx.needs_input_grad[0] else None
    gn = combine(b, d).to(ctx.noise_dtype) if ctx.needs_input_grad[6] else None
    grads: list[torch.Tensor | None] = [None] * 4
    if any(ctx.needs_input_grad[i] for i in (2, 3, 4, 5)):
        eps = noise
        if eps is None:
            seed = seed_tensor if seed_tensor is not None else (ctx.seed_hi % 2**32) << 32 | (ctx.seed_lo % 2**32)
            runs = ctx.runs
            if runs is None:
                eps = reference.drawn_noise(seed, shape, (rows,), stream=ctx.stream,
                                            offset_strength=ctx.offset_strength, device=like.device)
            else:  # a shard: its runs are the rows here; ε and offset noise at the global positions
                eps = reference.drawn_noise(seed, shape, runs.block.shape[:runs.rows_ndim], stream=ctx.stream,
                                            offset_strength=ctx.offset_strength, device=like.device,
                                            draw=reference.block_drawer(runs.block, device=like.device))
        x_rows, eps_rows = cast(torch.Tensor, x0).reshape(rows, -1).float(), eps.reshape(rows, -1).float()
        sums = []
        for upstream in (flat_g, flat_gv):
            for operand in (x_rows, eps_rows):
                sums.append(None if upstream is None else (upstream * operand).sum(1))
        for k, table in enumerate((a, b, c, d)):
            row_sums = sums[k]
            if table is not None and table.requires_grad and row_sums is not None:
                grads[k] = torch.zeros(table.numel(), dtype=torch.float32, device=like.device).index_add(
                    0, t_rows, row_sums)
    return (gx, None, *grads, gn, None, None, None, None, None, None, None, None)


QSample = Noising  # the Function's public name in the package's namespace (diffusion_kernels.QSample)
