"""Launchers of the diffusion loss that regenerates ε (kernels/loss.py)."""
from __future__ import annotations

from typing import NamedTuple, Optional

import torch

from .. import seeding
from ..dispatch import interpreter_active
from ..launch.layout import Layout, prepare, channels_last_planes, copy_back, packed, paired
from ..launch.tiling import (NO_UNITS, tiling, channels_last_tiling, fewest_warps, gpu_units, launch_options, math_mode,
                             row_mode, run_alignment, units_mode, whole_row_tile)
from ..seeding import seed_args, seed_parts
from ..launch.registry import device_guard, launcher, register_triton_op


class Target(NamedTuple):
    """The loss target ce[row]·ε + cx[row]·x0: ``eps`` says whether it has ε, ``eps_scale`` (ce, float32,
    one per row) is None for a unit ε, and ``x0`` with ``x0_scale`` (cx) are None for a target without x0."""
    eps: bool = True
    eps_scale: Optional[torch.Tensor] = None
    x0: Optional[torch.Tensor] = None
    x0_scale: Optional[torch.Tensor] = None

    def switches(self) -> dict:
        return dict(HAS_EPS=self.eps, EPS_SCALED=self.eps and self.eps_scale is not None, HAS_X0=self.x0 is not None)


EPS = Target()


def _mse_setup(pred: torch.Tensor, rows: int, layout: Layout, units: Optional[torch.Tensor], units_aligned: bool):
    """(kernels, Tiling, Planes or None) of a loss launch; Planes when the channels-last kernels take
    the prediction (the Tiling is then theirs). A shard's runs (``units``) take the row tiles; rows of one
    tensor that fewer warps make whole tiles take that tile on a GPU (tiling.whole_row_tile)."""
    from ..kernels import loss

    planes = channels_last_planes(layout, int(pred.numel()), rows) if units is None else None
    tile = planes and channels_last_tiling(loss, planes, pred.element_size())
    if not tile:
        planes = None
        sms = gpu_units(pred.device)
        tile = tiling(loss, int(pred.numel()), rows, run_alignment(0, units, units_aligned),
                      paired=paired(pred, layout), strided=not layout.contiguous, units=sms)
        if units is None:
            tile = whole_row_tile(tile, 0, NO_UNITS, fewest_warps(sms))
    return loss, tile, planes


def _tables(target: Target, pred: torch.Tensor):
    """The coefficient pointers (packed float32 rows; the prediction stands in for an absent one)."""
    ce, cx = packed(target.eps_scale, target.x0_scale)
    return (pred if ce is None else ce), (pred if cx is None else cx)


@register_triton_op("diffusion_kernels::loss_forward", lambda pred: torch.float32)
def loss_forward(pred: torch.Tensor, x0: Optional[torch.Tensor], eps_scale: Optional[torch.Tensor],
                 x0_scale: Optional[torch.Tensor], has_eps: bool, rows: int, seed_tensor: Optional[torch.Tensor],
                 seed_lo: int, seed_hi: int, stream: int, offset_strength: float,
                 units: Optional[torch.Tensor] = None, units_aligned: bool = False,
                 units_narrow: bool = False) -> tuple[torch.Tensor]:
    """(per-row Σ (pred − target)², float32 of shape (rows,)), ε regenerated from the seed (``seed_tensor``
    on the device, else the int32 halves) with ``rows`` offset rows; with ``units`` (a shard's runs,
    noising.launcher.forward) a row is a run."""
    target = Target(has_eps, eps_scale, x0, x0_scale)
    if pred.numel() == 0:
        return (pred.new_zeros((rows,), dtype=torch.float32),)
    (pred_, x0_), _, layout = prepare(pred.shape, [pred, target.x0], [])
    kernels, tile, planes = _mse_setup(pred_, rows, layout, units, units_aligned)
    partials = torch.empty(tile.grid, dtype=torch.float32, device=pred.device)
    s_lo, s_hi, s_ptr, from_ptr = seed_args(seed_tensor, seed_lo, seed_hi, partials)
    ce, cx = _tables(target, pred_)
    x0_ptr = pred_ if x0_ is None else x0_
    with device_guard(pred):
        if planes is not None:
            launcher(kernels.loss_fwd_channels_last_kernel)[tile.grid](
                pred_, x0_ptr, ce, cx, partials, int(rows > 1), planes.plane // 4, tile.chunks, tile.divisor,
                s_lo, s_hi, s_ptr, seeding.as_int32(stream), offset_strength,
                C=planes.channels, HAS_OFFSET=offset_strength != 0.0, SEED_FROM_PTR=from_ptr, **target.switches(),
                BLOCK_J=tile.block // planes.channels, MATH=math_mode(pred.device),
                **launch_options(kernels, pred.device, tile.warps),
            )
        else:
            launcher(kernels.loss_fwd_kernel)[tile.grid](
                pred_, x0_ptr, ce, cx, partials, *tile.row_args, partials if units is None else units,
                s_lo, s_hi, s_ptr, seeding.as_int32(stream), offset_strength, *layout.args(),
                NDIM=layout.ndim, SHARED_LAYOUT=layout.shared, HAS_OFFSET=offset_strength != 0.0,
                SEED_FROM_PTR=from_ptr, **target.switches(), BLOCK=tile.block, MATH=math_mode(pred.device),
                PAIRED=paired(pred, layout), UNITS=row_mode(tile, 0, units_mode(units, units_aligned, units_narrow)),
                **launch_options(kernels, pred.device, tile.warps),
            )
    # A program covers one row of its tiling, so the row sums are sums of whole programs, added in
    # a fixed order. One t for a channels-last batch tiles by sample: its samples add to the one row.
    per_row = partials.view(tile.rows, tile.chunks).sum(1)
    return (per_row if tile.rows == rows else per_row.sum().reshape(1),)


@register_triton_op("diffusion_kernels::loss_backward", lambda pred: pred.dtype)
def loss_backward(pred: torch.Tensor, row_scale: torch.Tensor, x0: Optional[torch.Tensor],
                  eps_scale: Optional[torch.Tensor], x0_scale: Optional[torch.Tensor], has_eps: bool, rows: int,
                  seed_tensor: Optional[torch.Tensor], seed_lo: int, seed_hi: int, stream: int,
                  offset_strength: float, units: Optional[torch.Tensor] = None,
                  units_aligned: bool = False, units_narrow: bool = False) -> tuple[torch.Tensor]:
    """(row_scale[row]·(pred − target),) in pred's dtype and layout; ``row_scale`` float32 (rows,); ``units``
    as in :func:`loss_forward`."""
    target = Target(has_eps, eps_scale, x0, x0_scale)
    grad = torch.empty_like(pred)
    if pred.numel() == 0:
        return (grad,)
    (pred_, x0_), (grad_,), layout = prepare(pred.shape, [pred, target.x0], [grad])
    kernels, tile, planes = _mse_setup(pred_, rows, layout, units, units_aligned)
    s_lo, s_hi, s_ptr, from_ptr = seed_args(seed_tensor, seed_lo, seed_hi, grad_)
    ce, cx = _tables(target, pred_)
    (scale,) = packed(row_scale.to(device=pred.device, dtype=torch.float32).reshape(rows))
    x0_ptr = pred_ if x0_ is None else x0_
    with device_guard(pred):
        if planes is not None:
            launcher(kernels.loss_bwd_channels_last_kernel)[tile.grid](
                pred_, x0_ptr, ce, cx, grad_, scale, int(rows > 1), planes.plane // 4, tile.chunks, tile.divisor,
                s_lo, s_hi, s_ptr, seeding.as_int32(stream), offset_strength,
                C=planes.channels, HAS_OFFSET=offset_strength != 0.0, SEED_FROM_PTR=from_ptr, **target.switches(),
                BLOCK_J=tile.block // planes.channels, SOFT_BF16=interpreter_active(), MATH=math_mode(pred.device),
                **launch_options(kernels, pred.device, tile.warps),
            )
        else:
            launcher(kernels.loss_bwd_kernel)[tile.grid](
                pred_, x0_ptr, ce, cx, grad_, scale, *tile.row_args, scale if units is None else units,
                s_lo, s_hi, s_ptr, seeding.as_int32(stream), offset_strength, *layout.args(),
                NDIM=layout.ndim, SHARED_LAYOUT=layout.shared, HAS_OFFSET=offset_strength != 0.0,
                SEED_FROM_PTR=from_ptr, **target.switches(), BLOCK=tile.block, SOFT_BF16=interpreter_active(),
                MATH=math_mode(pred.device), PAIRED=paired(pred, layout),
                UNITS=row_mode(tile, 0, units_mode(units, units_aligned, units_narrow)),
                **launch_options(kernels, pred.device, tile.warps),
            )
    copy_back([(grad, grad_)])
    return (grad,)


def _op(name, direct):
    """The registered op under torch.compile (the graph then holds the kernels), else the body itself."""
    return getattr(torch.ops.diffusion_kernels, name) if torch.compiler.is_compiling() else direct


def _per_run(values: Optional[torch.Tensor], runs) -> Optional[torch.Tensor]:
    """A per-row table repeated for each of a row's runs (sharding.Units.per_row)."""
    return values if values is None or runs is None else values.reshape(-1).repeat_interleave(runs.per_row)


def _run_target(target: Target, runs) -> Target:
    if runs is None:
        return target
    return target._replace(eps_scale=_per_run(target.eps_scale, runs), x0_scale=_per_run(target.x0_scale, runs))


def _run_args(rows: int, runs, device) -> tuple:
    """The launch's (rows, units, units_aligned, units_narrow): a shard's runs (sharding.Units) are its rows."""
    if runs is None:
        return rows, None, False, False
    return runs.count, runs.table(device), runs.aligned, runs.narrow


def forward(pred: torch.Tensor, rows: int, seed, stream: int, offset_strength: float, target: Target = EPS,
            runs=None) -> torch.Tensor:
    """Per-row Σ (pred − target)² as float32 of shape (rows,), ε regenerated from (seed, stream); ``runs``
    (sharding.Units) for a shard of a global tensor: its runs' sums are added per row, in order."""
    target = _run_target(target, runs)
    launch_rows, units, aligned, narrow = _run_args(rows, runs, pred.device)
    sums = _op("loss_forward", loss_forward)(pred, target.x0, target.eps_scale, target.x0_scale, target.eps,
                                             launch_rows, *seed_parts(seed), stream, offset_strength, units,
                                             aligned, narrow)[0]
    return sums if runs is None else sums.view(rows, runs.per_row).sum(1)


def backward(pred: torch.Tensor, row_scale: torch.Tensor | float, rows: int, seed, stream: int, offset_strength: float,
             target: Target = EPS, runs=None) -> torch.Tensor:
    """row_scale[row]·(pred − target), in pred's dtype and layout; ``row_scale`` is float32 of shape (rows,)
    on pred's device, or a float for every row; ``runs`` as in :func:`forward`."""
    if isinstance(row_scale, float):  # one value for every row
        row_scale = torch.full((rows,), row_scale, dtype=torch.float32, device=pred.device)
    target = _run_target(target, runs)
    launch_rows, units, aligned, narrow = _run_args(rows, runs, pred.device)
    return _op("loss_backward", loss_backward)(pred, _per_run(row_scale, runs), target.x0, target.eps_scale,
                                               target.x0_scale, target.eps, launch_rows, *seed_parts(seed), stream,
                                               offset_strength, units, aligned, narrow)[0]
