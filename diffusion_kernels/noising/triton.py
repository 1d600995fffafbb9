"""The noising op on the Triton kernels: the call's rows of t and coefficient tables where the kernels read
them, then the autograd Function (noising/function.py), which launches kernels/noising.py through
noising/launcher.py."""
from __future__ import annotations

import torch

from .. import sharding
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
    t_rows = launcher.rows_of(index, x.device)
    runs = None
    if block is not None and x.numel():
        runs = sharding.units_of(block, index.ndim)
        t_rows = t_rows.repeat_interleave(runs.per_row)  # the kernels' rows are the shard's runs
    # A t on the GPU is checked there, by the kernel (no host read); a CPU t was checked by checks.check_t.
    check_on_device = form.check_index and index.is_cuda and not torch.compiler.is_compiling()
    out, eps, v = function.apply(x, t_rows, a, b, c, d, noise, seed, stream, offset_strength,
                                 write_eps and noise is None, write_v, check_on_device, perturbation, runs)
    return out, (noise if noise is not None else eps), v


def prepare_plain(x: torch.Tensor, index: torch.Tensor, tables: tuple, write_eps: bool,
                  check_on_device: bool) -> launcher.PlainLaunch | None:
    """What :func:`plain` keeps for a kind of call (noising/plans.py): the launch's arguments that do not
    change (launcher.PlainLaunch)."""
    return launcher.plain_settings(x, index, tables[0], tables[1], write_eps, check_on_device)


# (x_t, ε or None) of a plain drawing call (noising/plans.py, nothing needing a gradient): the launch alone,
# as prepare_plain prepared it for the call's kind. The backends' common signature of that call.
plain = launcher.plain_forward
