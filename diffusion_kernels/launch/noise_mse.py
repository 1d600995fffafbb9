"""Launchers of the ε-MSE that regenerates ε (kernels/noise_mse.py)."""
from __future__ import annotations

import torch

from .. import seeding
from ..backend import interpreter_active, kernels_module
from .layout import Layout, _prepare, channels_last_planes, _copy_back, paired
from .tiling import tiling, channels_last_tiling, launch_warps, math_mode
from .registry import _device_guard, seed_parts, _seed_args


def _mse_setup(pred: torch.Tensor, rows: int, seed, layout: Layout):
    """(kernels, Tiling, Planes or None, seed tensor, seed halves) of a noise_mse launch; Planes when
    the channels-last kernels take the prediction (the Tiling is then theirs)."""
    km = kernels_module()
    planes = channels_last_planes(layout, pred.numel(), rows)
    tile = planes and channels_last_tiling(km.noise_mse, planes, pred.element_size())
    if not tile:
        planes = None
        tile = tiling(km.noise_mse, pred.numel(), rows, paired=paired(pred, layout), strided=not layout.contiguous)
    return km, tile, planes, *seed_parts(seed)


def noise_mse_forward(pred: torch.Tensor, rows: int, seed, stream: int, offset_strength: float) -> torch.Tensor:
    """Σ (pred − ε)² as a float32 0-d tensor, ε regenerated from (seed, stream) with ``rows`` offset rows."""
    if pred.numel() == 0:
        return pred.new_zeros((), dtype=torch.float32)
    (pred_,), _, layout = _prepare(pred.shape, [pred], [])
    km, tile, planes, seed_tensor, lo, hi = _mse_setup(pred_, rows, seed, layout)
    partials = torch.empty(tile.grid, dtype=torch.float32, device=pred.device)
    s_lo, s_hi, s_ptr, from_ptr = _seed_args(seed_tensor, lo, hi, partials)
    with _device_guard(pred):
        if planes is not None:
            km.noise_mse.noise_mse_fwd_channels_last_kernel[tile.grid](
                pred_, partials, int(rows > 1), planes.plane // 4, tile.chunks, tile.divisor,
                s_lo, s_hi, s_ptr, seeding.as_int32(stream), offset_strength,
                C=planes.channels, HAS_OFFSET=offset_strength != 0.0, SEED_FROM_PTR=from_ptr,
                BLOCK_J=tile.block // planes.channels, MATH=math_mode(pred.device), num_warps=launch_warps(km.noise_mse, pred.device),
            )
        else:
            km.noise_mse.noise_mse_fwd_kernel[tile.grid](
                pred_, partials, *tile.row_args, s_lo, s_hi, s_ptr, seeding.as_int32(stream), offset_strength,
                *layout.args(),
                NDIM=layout.ndim, HAS_OFFSET=offset_strength != 0.0, SEED_FROM_PTR=from_ptr, BLOCK=tile.block,
                MATH=math_mode(pred.device), PAIRED=paired(pred, layout), num_warps=launch_warps(km.noise_mse, pred.device),
            )
    return partials.sum()


def noise_mse_backward(pred: torch.Tensor, upstream: torch.Tensor, scale: float, rows: int, seed, stream: int,
                       offset_strength: float) -> torch.Tensor:
    """2·scale·upstream·(pred − ε), in pred's dtype and layout."""
    grad = torch.empty_like(pred)
    if pred.numel() == 0:
        return grad
    (pred_,), (grad_,), layout = _prepare(pred.shape, [pred], [grad])
    km, tile, planes, seed_tensor, lo, hi = _mse_setup(pred_, rows, seed, layout)
    s_lo, s_hi, s_ptr, from_ptr = _seed_args(seed_tensor, lo, hi, grad_)
    upstream = upstream.to(device=pred.device, dtype=torch.float32).reshape(1)
    with _device_guard(pred):
        if planes is not None:
            km.noise_mse.noise_mse_bwd_channels_last_kernel[tile.grid](
                pred_, grad_, upstream, scale, int(rows > 1), planes.plane // 4, tile.chunks, tile.divisor,
                s_lo, s_hi, s_ptr, seeding.as_int32(stream), offset_strength,
                C=planes.channels, HAS_OFFSET=offset_strength != 0.0, SEED_FROM_PTR=from_ptr,
                BLOCK_J=tile.block // planes.channels, SOFT_BF16=interpreter_active(), MATH=math_mode(pred.device),
                num_warps=launch_warps(km.noise_mse, pred.device),
            )
        else:
            km.noise_mse.noise_mse_bwd_kernel[tile.grid](
                pred_, grad_, upstream, scale, *tile.row_args,
                s_lo, s_hi, s_ptr, seeding.as_int32(stream), offset_strength, *layout.args(),
                NDIM=layout.ndim, SHARED_LAYOUT=layout.shared, HAS_OFFSET=offset_strength != 0.0,
                SEED_FROM_PTR=from_ptr, BLOCK=tile.block, SOFT_BF16=interpreter_active(),
                MATH=math_mode(pred.device), PAIRED=paired(pred, layout), num_warps=launch_warps(km.noise_mse, pred.device),
            )
    _copy_back([(grad, grad_)])
    return grad
