"""Argument checks shared by the public entry points: clear errors, named values."""
from __future__ import annotations

import math
import operator

import numpy as np
import torch

from .schedules import NoiseSchedule

FLOAT_DTYPES = (torch.float16, torch.bfloat16, torch.float32, torch.float64)


def check_flag(value, name: str) -> bool:
    """A yes/no argument as a bool: True/False, 0/1, numpy's bool_ or a one-element bool/int CPU tensor.

    Anything else is refused rather than read by truthiness (a string or a list would be true).
    """
    if value is True or value is False:
        return value
    if isinstance(value, torch.Tensor):
        if value.numel() != 1 or value.is_floating_point() or value.device.type != "cpu":
            raise TypeError(f"{name} must be a bool, got a tensor of shape {tuple(value.shape)} on {value.device}")
        value = value.item()
    if isinstance(value, (bool, np.bool_)):
        return bool(value)
    try:
        index = operator.index(value)  # ints and numpy's integer and bool_ scalars
    except TypeError:
        raise TypeError(f"{name} must be a bool, got {type(value).__name__}") from None
    if index not in (0, 1):
        raise ValueError(f"{name} must be a bool, got {value!r}")
    return bool(index)


def check_int(value, name: str) -> int:
    """An integer argument as an int: a Python int, a numpy integer, a one-element integer tensor, or anything
    else ``operator.index`` takes. Bools and floats are refused rather than read as numbers."""
    if isinstance(value, (bool, np.bool_)) or (isinstance(value, torch.Tensor) and value.dtype == torch.bool):
        raise TypeError(f"{name} must be an int, got a bool")
    try:
        return operator.index(value)
    except (TypeError, RuntimeError):
        raise TypeError(f"{name} must be an int, got {value!r} ({type(value).__name__})") from None


def check_real(value, name: str, *, lo: float | None = None, hi: float | None = None) -> float:
    """A finite real number (an int, a float or a one-element CPU tensor) within [lo, hi], as a float."""
    if type(value) is float and value - value == 0.0 and lo is None and hi is None:
        return value  # a finite float (x − x is NaN for inf and NaN), the usual case, answered first
    if isinstance(value, torch.Tensor):
        if value.numel() != 1 or value.device.type != "cpu" or value.dtype == torch.bool or value.is_complex():
            raise TypeError(f"{name} must be a real number, got a {value.dtype} tensor of shape "
                            f"{tuple(value.shape)} on {value.device}")
        value = value.item()
    if isinstance(value, bool) or not isinstance(value, (int, float)) and not hasattr(value, "__float__") \
            or isinstance(value, (str, bytes, complex)):
        raise TypeError(f"{name} must be a real number, got {type(value).__name__}")
    number = float(value)
    if number != number or abs(number) == math.inf:  # comparisons: torch.compile traces them
        raise ValueError(f"{name} must be finite, got {number}")
    if (lo is not None and number < lo) or (hi is not None and number > hi):
        raise ValueError(f"{name} must lie in [{lo}, {hi}], got {number}")
    return number


def refuse_perturbation_grad(perturbation: float, tables_need_grad: bool) -> None:
    """Input perturbation with a schedule (or σ) that requires grad is refused on every backend: the kernels'
    backward regenerates ε alone, not ε + γ·ε′, so the tables' gradient would be wrong there."""
    if perturbation != 0.0 and tables_need_grad:
        raise NotImplementedError("input_perturbation with a schedule (or sigma) that requires grad is not "
                                  "supported: detach it, or noise without input_perturbation")


# Tensor types a call reads as plain tensors: their values are their storage's.
PLAIN_TENSOR_TYPES = (torch.Tensor, torch.nn.Parameter)


def check_plain(tensor, name: str):
    """Refuse tensor subclasses (DTensor, wrappers with their own dispatch), whose values the kernels and
    the CPU loop would read from the wrong storage, or which would mix with plain tensors, with what to pass."""
    if isinstance(tensor, torch.Tensor) and type(tensor) not in PLAIN_TENSOR_TYPES:
        kind = type(tensor).__name__
        if kind == "DTensor":
            raise TypeError(f"{name} is a DTensor, which this call does not take (q_sample, flow_match_sample, "
                            f"edm_sample and diffusion_loss do): pass its local shard ({name}.to_local()) with "
                            f"global_shape and global_offset, or the whole tensor ({name}.full_tensor())")
        raise TypeError(f"{name} is a {kind}, a tensor subclass, which is not supported: pass a plain torch.Tensor "
                        f"(e.g. {name}.as_subclass(torch.Tensor))")
    return tensor


def check_x0(x0, name: str = "x0") -> torch.Tensor:
    if not isinstance(x0, torch.Tensor):
        raise TypeError(f"{name} must be a torch.Tensor, got {type(x0).__name__}")
    check_plain(x0, name)
    if x0.dtype not in FLOAT_DTYPES:
        raise TypeError(f"{name} must be float16, bfloat16, float32 or float64, got {x0.dtype}")
    return x0


def check_noise(noise, x0: torch.Tensor):
    if noise is None:
        return None
    check_x0(noise, "noise")
    if noise.shape != x0.shape:
        raise ValueError(f"noise has shape {tuple(noise.shape)} but x0 has shape {tuple(x0.shape)}; they must match")
    if noise.device != x0.device:
        check_device_set({noise.device, x0.device})
        raise ValueError(f"noise is on {noise.device} but x0 is on {x0.device}; they must be on the same device")
    return noise


def alpha_bars_of(schedule) -> torch.Tensor:
    """The 1-D ᾱ tensor of a NoiseSchedule or of a user's (possibly learned) ᾱ tensor."""
    if isinstance(schedule, NoiseSchedule):
        return schedule._alpha_bars
    if isinstance(schedule, torch.Tensor):
        check_plain(schedule, "schedule")
        if not schedule.is_floating_point():
            raise TypeError(f"an alpha_bars tensor must be floating point, got {schedule.dtype}")
        if schedule.ndim != 1 or schedule.numel() == 0:
            raise ValueError(f"an alpha_bars tensor must be 1-D and non-empty, got shape {tuple(schedule.shape)}")
        return schedule
    raise TypeError(f"schedule must be a NoiseSchedule or a 1-D alpha_bars tensor, got {type(schedule).__name__}")


def check_devices(*tensors):
    """Refuse tensors on two different CUDA devices (CPU tensors may join any of them)."""
    first = None
    for t in tensors:
        if isinstance(t, torch.Tensor) and t.is_cuda:
            if first is None:
                first = t.device
            elif t.device != first:
                check_device_set({first, t.device})


def check_device_set(devices):
    cuda = {d for d in devices if d.type == "cuda"}
    if len(cuda) > 1:
        raise ValueError(f"tensors are on different GPUs: {sorted(str(d) for d in cuda)}; move them to one device")


def clamped(index, T: int):
    """The rows the kernels read for ``index`` (an int or an integer tensor): unchecked values are clamped to
    [0, T − 1] there, and every other path reads the same rows (never wrapping −1 to T − 1, never raising)."""
    if isinstance(index, torch.Tensor):
        return index.clamp(0, T - 1)
    return min(max(index, 0), T - 1)


def check_t(t, x0: torch.Tensor, T: int, *, check_range: bool = True) -> torch.Tensor:
    """``t`` as an int64 tensor of shape () or a leading prefix of x0.shape, on its own device.

    The range [0, T) is checked here for ints and CPU tensors. A GPU tensor is
    not read back (that would stall the host on every call): the kernel checks
    it on the device when the caller asks (``Form.check_index``).
    """
    if isinstance(t, torch.Tensor):
        if type(t) is not torch.Tensor:
            check_plain(t, "t")
        if t.dtype is not torch.int64 and (t.dtype == torch.bool or t.is_floating_point() or t.is_complex()):
            raise TypeError(f"t must have an integer dtype, got {t.dtype}")
        if t.is_meta:
            raise ValueError("t is on the meta device and holds no values; give it on the CPU or x0's device")
    elif isinstance(t, bool) or not hasattr(t, "__index__") or getattr(t, "ndim", 0) > 0:
        hint = " (torch.as_tensor(t) makes one)" if hasattr(t, "__array__") else ""
        raise TypeError(f"t must be an int or an integer tensor, got {type(t).__name__}{hint}")
    else:
        value = operator.index(t)
        if check_range and not 0 <= value < T:
            raise ValueError(f"t = {value} is outside [0, T) for a schedule of T={T} steps")
        # Unchecked ints are clamped (as the kernel does), which also keeps them in int64.
        t = torch.tensor(clamped(value, T), dtype=torch.int64)
    ndim = t.ndim
    if ndim > x0.ndim or t.shape != x0.shape[:ndim]:
        raise ValueError(
            f"t of shape {tuple(t.shape)} does not fit x0 of shape {tuple(x0.shape)}: t must be a scalar "
            "or have a shape that is a leading prefix of x0's (e.g. (B,) or (B, F))"
        )
    if check_range and not t.is_cuda:
        check_t_range(t, T)
    return t if t.dtype == torch.int64 else t.to(torch.int64)


def check_t_range(t: torch.Tensor, T: int) -> None:
    """Every value of a host tensor ``t`` in [0, T), else a ValueError naming one outside."""
    if t.ndim == 1 and 0 < t.shape[0] <= _LISTED:  # per-sample t, the usual one: read as a list
        values = t.tolist()
        lo, hi = min(values), max(values)
    elif t.numel() > 0:
        lo, hi = _extremes(t)
    else:
        return
    if lo < 0 or hi >= T:
        value = int(t[(t < 0) | (t >= T)].flatten()[0])
        raise ValueError(f"t contains {value}, outside [0, T) for a schedule of T={T} steps")


_LISTED = 1024  # up to this many values, t is read as a Python list: cheaper than a tensor reduction


def _extremes(t: torch.Tensor) -> tuple[int, int]:
    """The smallest and largest value of a host tensor ``t``."""
    if t.numel() > _LISTED:
        lo, hi = torch.aminmax(t)
        return int(lo), int(hi)
    values = t.tolist()
    if t.ndim == 0:
        return values, values
    while t.ndim > 1 and isinstance(values[0], list):
        values = [v for row in values for v in row]
    return min(values), max(values)


def check_in_range(values: torch.Tensor, lo: float, hi: float | None, what: str, bound: str | None = None) -> None:
    """Every value in [lo, hi] (or finite and >= lo when hi is None); NaN never passes.

    A CPU tensor gets a ValueError naming the value. A GPU tensor is checked on
    the device by an asynchronous assertion (a device-side assert, as for t),
    so a training step never waits on a host read. ``what`` completes the
    message: "<what> <bound>".
    """
    if values.numel() == 0:
        return
    values = values.detach()
    ok = (values >= lo) & ((values <= hi) if hi is not None else (values < math.inf))
    bound = bound or (f"[{lo}, {hi}]" if hi is not None else f">= {lo} and finite")
    if values.device.type == "cuda":
        torch._assert_async(ok.all(), f"{what} {bound}")
    elif not bool(ok.all()):
        raise ValueError(f"{what} {bound}; got {float(values[~ok].flatten()[0])}")


def check_sigma(sigma: torch.Tensor, lo: float, hi: float | None, name: str) -> None:
    """sigma in [lo, hi] (or finite and >= lo when hi is None), for the noising form ``name``.

    A bound of float32's largest value reads as "finite in float32": the kernels' coefficient
    tables are float32, where a larger σ would become inf."""
    bound = f">= {lo} and finite in float32 (at most {hi:.4g})" if hi == torch.finfo(torch.float32).max else None
    check_in_range(sigma, lo, hi, f"{name} needs sigma", bound)


def check_alpha_bars(alpha_bars: torch.Tensor) -> torch.Tensor:
    """A user's ᾱ tensor holds values in [0, 1] (1 at a noiseless step, 0 at pure noise)."""
    check_in_range(alpha_bars, 0.0, 1.0, "alpha_bars must lie in")
    return alpha_bars
