"""Launcher of the fused step-by-step forward process (kernels/trajectory.py)."""
from __future__ import annotations

import torch

from .. import seeding, transfer
from ..dispatch import interpreter_active
from ..launch.layout import packed
from ..launch.tiling import launch_options, math_mode, row_mode, run_alignment, tiling, units_mode
from ..seeding import seed_args, seed_parts
from ..launch.registry import device_guard


def forward_trajectory(x0, sqrt_alpha, sqrt_beta, t_end: int, *, seed=0, stream: int = 0, snapshot_steps=(),
                       runs=None):
    """x_{t_end} after the steps 0 … t_end, and the snapshots at ``snapshot_steps`` (sorted, unique);
    ``runs`` (sharding.Units) for a shard of a global tensor.

    Returns (x_t_end, snapshots) where snapshots has shape (len(snapshot_steps), *x0.shape).
    """
    from ..kernels import trajectory

    sqrt_alpha, sqrt_beta = packed(sqrt_alpha, sqrt_beta)
    src = x0.contiguous()
    out = torch.empty_like(src)
    snaps = torch.empty((len(snapshot_steps), *x0.shape), dtype=x0.dtype, device=x0.device)
    n = src.numel()
    if n == 0:
        return out, snaps
    snap_index = torch.full((t_end + 1,), -1, dtype=torch.int32)
    for k, s in enumerate(snapshot_steps):
        snap_index[s] = k
    snap_index = transfer.to_device(snap_index, x0.device)
    rows = 1 if runs is None else runs.count
    aligned = runs is not None and runs.aligned
    tile = tiling(trajectory, n, rows, run_alignment(0, runs, aligned))
    seed_tensor, lo, hi = seed_parts(seed)
    s_lo, s_hi, s_ptr, from_ptr = seed_args(seed_tensor, lo, hi, snap_index)
    with device_guard(x0):
        trajectory.forward_trajectory_kernel[tile.grid](
            src, out, snaps if len(snapshot_steps) else out, snap_index,
            sqrt_alpha, sqrt_beta, t_end, n, *tile.row_args, snap_index if runs is None else runs.table(x0.device),
            s_lo, s_hi, s_ptr, seeding.as_int32(stream),
            HAS_SNAPSHOTS=len(snapshot_steps) > 0, SEED_FROM_PTR=from_ptr, BLOCK=tile.block,
            SOFT_BF16=interpreter_active(), MATH=math_mode(x0.device), PAIRED=trajectory.PAIRED,
            UNITS=row_mode(tile, 0, units_mode(runs, aligned, runs is not None and runs.narrow)),
            **launch_options(trajectory, x0.device),
        )
    return (out if x0.is_contiguous() else torch.empty_like(x0).copy_(out)), snaps
