"""A user's own ᾱ tensor (an ``alphas_cumprod`` buffer, a learned schedule): checked and turned into
the kernels' coefficient tables, with the work done once per content rather than once per call.

A drop-in passes the same buffer every step, so its [0, 1] check and its float32 square-root tables
are kept between calls, for CPU tensors only, and only while the tensor still holds the values they
were made from: the in-place version counter misses writes through ``.data`` and through other
views' counters, so a kept entry is also compared with a copy of the values (``torch.equal`` on a
table of T elements, a few microseconds). A GPU tensor cannot be compared without a host read, so
its tables are derived again on every call, on the device, and its check is an asynchronous
device-side assert (no host sync either way). Tensors that require grad (learned schedules) keep
their check but never their tables, which must carry the graph; traced calls keep nothing.

Everything here is made outside inference mode, so a schedule first used under
``torch.inference_mode()`` still serves later calls that need gradients.
"""
from __future__ import annotations

import threading
from typing import NamedTuple

import torch
from torch.utils.weak import WeakIdKeyDictionary

from . import checks
from .schedules import coefficient_tables

_LOCK = threading.Lock()
_ENTRIES = WeakIdKeyDictionary()


class _Entry(NamedTuple):
    version: int
    values: torch.Tensor  # a copy of the checked values
    tables: dict  # device -> (sqrt(ᾱ), sqrt(1 − ᾱ))


def _cacheable(alpha_bars: torch.Tensor) -> bool:
    # is_compiling() first: Dynamo cannot trace is_inference(), and a traced call keeps nothing anyway.
    return (not torch.compiler.is_compiling() and alpha_bars.device.type == "cpu"
            and not alpha_bars.is_inference())


def _current_entry(alpha_bars: torch.Tensor):
    """The kept entry of a cacheable tensor if it still holds the values it was made from, else a
    new one after checking the values. Call with _LOCK held."""
    entry = _ENTRIES.get(alpha_bars)
    if entry is not None and entry.version == alpha_bars._version and torch.equal(entry.values, alpha_bars.detach()):
        return entry
    checks.check_alpha_bars(alpha_bars)
    with torch.inference_mode(False):
        entry = _Entry(alpha_bars._version, alpha_bars.detach().clone(), {})
    _ENTRIES[alpha_bars] = entry
    return entry


def validated(alpha_bars: torch.Tensor) -> torch.Tensor:
    """``alpha_bars`` after its [0, 1] check (kept per content for CPU tensors; never while tracing)."""
    if torch.compiler.is_compiling():
        return alpha_bars
    if not _cacheable(alpha_bars):
        return checks.check_alpha_bars(alpha_bars)
    with _LOCK:
        _current_entry(alpha_bars)
    return alpha_bars


def raw_tables(alpha_bars: torch.Tensor, device) -> tuple[torch.Tensor, torch.Tensor]:
    """float32 (sqrt(ᾱ), sqrt(1 − ᾱ)) of a user's ᾱ tensor on ``device``, derived in float64.

    Differentiable in ``alpha_bars`` when it requires grad. The values must have passed
    :func:`validated` for this call.
    """
    device = torch.device(device)
    if alpha_bars.requires_grad or not _cacheable(alpha_bars):
        with torch.inference_mode(False):
            return coefficient_tables(alpha_bars, device)
    with _LOCK:
        entry = _current_entry(alpha_bars)
        tables = entry.tables.get(device)
        if tables is None:
            with torch.inference_mode(False):
                tables = entry.tables[device] = coefficient_tables(entry.values, device)
        return tables
