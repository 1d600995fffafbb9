"""The record's environment: date, versions, device, the fused backend and the kernel tiles in use."""
from __future__ import annotations

import datetime
import importlib
import os
import platform

import torch

from .spec import SIZING_CONSTANTS, TILE_CONSTANTS, check_tiles


def environment(device: torch.device) -> dict:
    import triton

    from .. import dispatch

    info = {
        "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "torch": torch.__version__,
        "triton": triton.__version__,
        "python": platform.python_version(),
        "machine": platform.machine(),
    }
    for name in ("diffusers", "numba"):
        try:
            info[name] = __import__(name).__version__
        except ImportError:
            info[name] = None
    info["cores"] = os.cpu_count()
    info["torch_threads"] = torch.get_num_threads()
    if device.type == "cuda":
        info["device"] = torch.cuda.get_device_name(device)
        info["cuda"] = torch.version.cuda
        info["hip"] = torch.version.hip
    else:
        info["device"] = f"cpu ({platform.processor() or platform.machine()})"
    info["fused_backend"] = ("triton interpreter" if device.type == "cpu" and dispatch.interpreter_active()
                             else "triton" if device.type == "cuda" else "reference")
    info["tiles"] = tiles()
    return info


def tiles() -> dict:
    """The noising kernels' tile constants (kernels/noising.py) and the launch's sizing to the GPU
    (launch/tiling.py) this run uses."""
    from ..kernels import noising

    sizing = importlib.import_module("diffusion_kernels.launch.tiling")
    return {**{name: getattr(noising, name) for name in TILE_CONSTANTS},
            **{name: getattr(sizing, name) for name in SIZING_CONSTANTS}}


def set_tiles(**values) -> None:
    """Override tile constants of the noising and loss kernels, and the launch's sizing constants, for this
    process (a tuning sweep), before its first launch (launches keep their settings per shape).

    The noise stream does not depend on them, only the speed does.
    """
    from ..kernels import loss, noising

    check_tiles(**values)
    sizing = importlib.import_module("diffusion_kernels.launch.tiling")
    for name, value in values.items():
        for module in ((sizing,) if name in SIZING_CONSTANTS else (noising, loss)):
            setattr(module, name, value)


