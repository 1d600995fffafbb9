"""The noising op on the Triton kernels: the call's rows of t and coefficient tables where the kernels read
them, then the autograd Function (noising/function.py), which launches kernels/noising.py through
noising/launcher.py."""
from __future__ import annotations

import torch

from .. import sharding, transfer
from ..forms import Form
from . import function, launcher

SEED_ON_DEVICE = True  # a seed held in a device tensor (DeviceSeed, a GPU generator's draw) is read by the kernel
PLAIN_DTYPES = (torch.float32, torch.float16, torch.bfloat16)  # what ``plain`` takes: the kernels' I/O dtypes


def noise(x: torch.Tensor, noise, form: Form, *, seed, stream: int, offset_strength: float, perturbation: float,
          block: sharding.Block | None, write_eps: bool, write_v: bool) -> tuple:
    """(out, ε or None, v or None): the backends' common signature (noising/cpu.py, reference.py)."""
    a, b = form.tables(x.device)
    c, d = form.velocity_tables(x.device) if write_v else (None, None)
    index = form.index
    t_rows = _rows(index, x.device)
    runs = None
    if block is not None and x.numel():
        runs = sharding.units_of(block, index.ndim)
        t_rows = t_rows.repeat_interleave(runs.per_row)  # the kernels' rows are the shard's runs
    # A t on the GPU is checked there, by the kernel (no host read); a CPU t was checked by checks.check_t.
    check_on_device = form.check_index and index.is_cuda and not torch.compiler.is_compiling()
    out, eps, v = function.apply(x, t_rows, a, b, c, d, noise, seed, stream, offset_strength,
                                 write_eps and noise is None, write_v, check_on_device, perturbation, runs)
    return out, (noise if noise is not None else eps), v


def _rows(index: torch.Tensor, device: torch.device) -> torch.Tensor:
    """t as the kernels read it: one int64 entry per row, on the device (at least one entry)."""
    t_rows = transfer.to_device(index, device)
    if t_rows.ndim != 1:
        t_rows = t_rows.reshape(-1)
    return t_rows if t_rows.numel() else t_rows.new_zeros(1)


def prepare_plain(x: torch.Tensor, index: torch.Tensor, write_eps: bool, check_on_device: bool) -> tuple:
    """What :func:`plain` keeps for a kind of call (noising/plans.py): whether t is read where it lies, as
    it lies, and the launch settings."""
    as_is = index.device == x.device and index.ndim == 1 and index.numel() > 0
    if x.numel() == 0:
        return as_is, None  # nothing to launch
    return as_is, launcher.plain_settings(x, max(index.numel(), 1), write_eps, check_on_device)


def plain(x: torch.Tensor, index: torch.Tensor, tables: tuple, seed: int, stream: int, write_eps: bool,
          prepared: tuple) -> tuple:
    """(x_t, ε or None) of a plain drawing call (noising/plans.py, nothing needing a gradient): the launch
    alone, as :func:`prepare_plain` prepared it for the call's kind. The backends' common signature of that
    call (noising/cpu.py)."""
    as_is, settings = prepared
    if settings is None:
        return torch.empty_like(x), (torch.empty_like(x) if write_eps else None)
    t_rows = index if as_is else _rows(index, x.device)
    if not t_rows.is_contiguous():
        t_rows = t_rows.contiguous()  # the kernel reads t packed
    return launcher.plain_forward(x, t_rows, tables[0], tables[1], seed, stream, write_eps, settings)
