"""The noise stream on CPU tensors, compiled with numba (the ``[cpu]`` extra): the same Philox integers
as the kernels and ``reference.philox_normal``, bit for bit, and the AMD kernels' Box–Muller
(kernels/box_muller.py, MATH_POLY: log, sin and cos from float32 multiply-adds, an exact division
where the kernels take a hardware reciprocal; within NOISE_ATOL of the float64 math), in one loop over
quads that LLVM vectorises and numba spreads over threads.

Why numba: the pure-PyTorch reference computes Philox as a few hundred whole-tensor int64 operations,
each a pass over memory, 30-90x slower than torch.randn; one compiled loop keeps a quad's words in
registers from counter to normal. Without numba the CPU path is the reference (same stream, slower).
"""
from __future__ import annotations

import contextlib
import functools
import importlib.util
import os
import sys
import threading
from collections.abc import Callable
from typing import ParamSpec, TypeVar

import numpy as np
import torch

from .reference import OFFSET_STEP

CHUNK_QUADS = 1024  # quads per work item of a thread: 16 KiB of float32 output, a few µs of work
SERIAL_BELOW = 1 << 16  # elements below which one thread runs the loop: waking the others costs more
# numba's parallel loops may not be entered from two Python threads at once (its workqueue threading
# layer, the fallback where neither TBB nor OpenMP is there, aborts the process): they take turns.
_PARALLEL = threading.Lock()


QUIET = "DIFFUSION_KERNELS_QUIET"  # set to 1: no notice while the loops compile
_TOLD: list = []  # one notice per process


@functools.lru_cache(maxsize=None)
def _loops():
    """The compiled loops' modules (cpu_loops.py, cpu_loss_loops.py), imported on first use: name -> module."""
    from . import cpu_loops, cpu_loss_loops

    return cpu_loops, cpu_loss_loops


def _cached_on_disk(dispatcher) -> bool:
    from . import cpu_jit

    try:
        return cpu_jit.CACHE and os.path.exists(dispatcher._cache._cache_file._index_path)
    except AttributeError:  # numba's cache layout changed: say nothing rather than guess
        return True


_DISPATCHERS: dict = {}  # name -> numba dispatcher, once looked up


def _loop(name: str):
    """One compiled loop. Its first call after an install compiles it (the noising loops together take about
    15 s on two cores): said once per process on stderr, so that it does not look like a hang."""
    dispatcher = _DISPATCHERS.get(name)
    if dispatcher is not None:
        return dispatcher
    noise_loops, loss_loops = _loops()
    dispatcher = getattr(loss_loops if name.startswith("loss_") else noise_loops, name)
    if not _TOLD and not dispatcher.overloads and not _cached_on_disk(dispatcher):
        _TOLD.append(name)
        if os.environ.get(QUIET, "") in ("", "0"):
            print(f"diffusion-kernels: compiling the CPU noise loops (numba) on their first use, about 15 s; "
                  f"they are cached afterwards (set {QUIET}=1 to silence this line)", file=sys.stderr, flush=True)
    _DISPATCHERS[name] = dispatcher
    return dispatcher


@contextlib.contextmanager
def _threads():
    """A parallel loop runs on as many threads as torch uses (torch.set_num_threads), one caller at a time."""
    numba = _loops()[0].numba  # imported through the loops' module, which picks the threading layer first
    with _PARALLEL:
        numba.set_num_threads(min(torch.get_num_threads(), numba.config.NUMBA_NUM_THREADS))
        yield


# Set in a child made by fork(): there a parallel torch op can hang for good (the parent's GNU OpenMP pool does
# not survive the fork; DataLoader sets one thread in its workers for that reason).
_FORKED = [False]
if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=lambda: _FORKED.__setitem__(0, True))


P = ParamSpec("P")
R = TypeVar("R")


def one_thread_if_forked() -> int:
    """In a forked child whose torch runs on several threads: torch put on one thread while a call runs, so
    that the CPU path's own torch ops (dtype conversions, copies, the reference's formulas) cannot hang there;
    the thread count to give back (:func:`restore_threads`), or 0 where nothing changed. Elsewhere it costs
    one test."""
    if not _FORKED[0]:
        return 0
    threads = torch.get_num_threads()
    if threads == 1:
        return 0
    torch.set_num_threads(1)
    return threads


def restore_threads(threads: int) -> None:
    if threads:
        torch.set_num_threads(threads)


def fork_safe(call: Callable[P, R]) -> Callable[P, R]:
    """``call`` run with :func:`one_thread_if_forked` (an entry point whose host time matters little)."""
    @functools.wraps(call)
    def wrapped(*args: P.args, **kwargs: P.kwargs) -> R:
        threads = one_thread_if_forked()
        try:
            return call(*args, **kwargs)
        finally:
            restore_threads(threads)

    return wrapped


def _threaded(n: int) -> bool:
    """Whether a loop over ``n`` elements runs on threads: waking them costs more than a small tensor's work,
    and a process that asked torch for one thread (a DataLoader worker) gets the serial loop."""
    return n >= SERIAL_BELOW and torch.get_num_threads() > 1


@functools.lru_cache(maxsize=None)
def available() -> bool:
    return importlib.util.find_spec("numba") is not None


def _key(seed: int) -> tuple[np.uint32, np.uint32]:
    return np.uint32(seed & 0xFFFFFFFF), np.uint32((seed >> 32) & 0xFFFFFFFF)


def philox_words(seed: int, first_quad: int, quads: int, *, stream: int = 0, step: int = 0) -> np.ndarray:
    """The four uint32 Philox outputs of each of ``quads`` counters from ``first_quad``: (quads, 4)."""
    out = np.empty((quads, 4), dtype=np.uint32)
    with _threads():
        _loop("words")(out, np.uint64(first_quad), *_key(seed), np.uint32(stream & 0xFFFFFFFF),
                       np.uint32(step & 0xFFFFFFFF))
    return out


def philox_normal(seed: int, shape, *, stream: int = 0, step: int = 0, offset: int = 0,
                  dtype=torch.float32) -> torch.Tensor:
    """``reference.philox_normal`` on the CPU (same arguments, float32 arithmetic)."""
    shape = torch.Size(shape)
    n = shape.numel()
    first_quad = offset // 4
    start = offset - 4 * first_quad
    out = np.empty(4 * ((start + n + 3) // 4), dtype=np.float32)
    if n:
        args = (np.int64(first_quad), *_key(seed), np.uint32(stream & 0xFFFFFFFF), np.uint32(step & 0xFFFFFFFF))
        if not _threaded(n):
            _loop("normals_range")(out, 0, out.shape[0] // 4, *args)
        else:
            with _threads():
                _loop("normals_parallel")(out, CHUNK_QUADS, *args)
    eps = torch.from_numpy(out[start:start + n]).reshape(shape)
    return eps if dtype == torch.float32 else eps.to(dtype)


def block_normal(seed: int, block, *, stream: int = 0, step: int = 0, dtype=torch.float32) -> torch.Tensor:
    """``reference.block_drawer``'s draw on the CPU loop: the normals of a shard's global positions
    (sharding.Block), in the local tensor's row-major order."""
    from . import sharding

    runs = sharding.units_of(block, 0)
    out = np.empty(runs.count * runs.length, dtype=np.float32)
    if out.size:
        with _threads():
            _loop("normals_runs")(out, runs.starts.numpy(), np.int64(runs.length), *_key(seed),
                                  np.uint32(stream & 0xFFFFFFFF), np.uint32(step & 0xFFFFFFFF))
    eps = torch.from_numpy(out).reshape(block.shape)
    return eps if dtype == torch.float32 else eps.to(dtype)


def noising(x: torch.Tensor, index: torch.Tensor, a: torch.Tensor, b: torch.Tensor, offset: torch.Tensor | None,
            seed: int, stream: int, write_eps: bool):
    """q_sample's affine with the noise drawn in the same loop: ``x`` a contiguous float32 CPU tensor read as
    rows, one per entry of ``index`` (int64, shape () or a prefix of x's), out = a[t]·x + b[t]·(ε + offset)
    with t clamped into the tables (1-D) as the kernels clamp it; ``offset`` the offset normal times its
    strength per row (float32), or None. Returns (out, ε or None), both shaped like x."""
    n = x.numel()
    out = torch.empty_like(x)
    eps = torch.empty_like(x) if write_eps else out
    if n:
        # The loop reads its operands by address, so each is made a contiguous CPU tensor of the dtype read.
        t = index if index.is_cpu and index.is_contiguous() else index.cpu().contiguous()
        if a.dtype is not torch.float32 or not a.is_contiguous():
            a = a.detach().to(torch.float32).contiguous()
        if b.dtype is not torch.float32 or not b.is_contiguous():
            b = b.detach().to(torch.float32).contiguous()
        off = offset.contiguous() if offset is not None else a
        rows = max(t.numel(), 1)
        args = (x.data_ptr(), out.data_ptr(), eps.data_ptr(), n, n // rows, CHUNK_QUADS, t.data_ptr(), rows,
                a.data_ptr(), b.data_ptr(), a.numel(), off.data_ptr(), offset is not None, seed & 0xFFFFFFFF,
                seed >> 32, stream & 0xFFFFFFFF, write_eps)
        if not _threaded(n):
            _loop("affine_serial")(*args)
        else:
            with _threads():
                _loop("affine_parallel")(*args)
    return out, (eps if write_eps else None)


def row_offsets(seed: int, rows: int, stream: int, offset_strength: float) -> torch.Tensor:
    """Each row's offset normal times its strength (zeros without offset noise), float32."""
    if not offset_strength:
        return torch.zeros(max(rows, 1), dtype=torch.float32)
    return offset_strength * philox_normal(seed, (rows,), stream=stream, step=OFFSET_STEP)


def _address(tensor: torch.Tensor | None) -> int:
    return 0 if tensor is None else tensor.data_ptr()


def _loss_pass(pred: torch.Tensor, rows: int, seed: int, stream: int, offset_strength: float, target,
               grad: torch.Tensor | None, scale: torch.Tensor | float | None, sums: torch.Tensor | None) -> None:
    """One pass of the loss loop over a contiguous float32 ``pred`` (and target.x0, the tables float32
    (rows,)): with ``grad`` it writes scale[row]·r there, else the per-row sums of r² into ``sums``
    (float32 (rows,)), each the sum of its work items' sums in a fixed order: the same value on every run and
    for any thread count."""
    n = pred.numel()
    row_len = n // rows
    chunk = 4 * CHUNK_QUADS
    chunks = max(-(-row_len // chunk), 1)
    off = row_offsets(seed, rows, stream, offset_strength) if offset_strength else None
    ce, cx, x0 = target.eps_scale, target.x0_scale, target.x0
    uniform = 0.0
    if isinstance(scale, float):  # one scale for every row, passed by value
        scale, uniform = None, scale
    args = (pred.data_ptr(), _address(x0), n, rows, row_len, chunk, chunks, seed & 0xFFFFFFFF, seed >> 32,
            stream & 0xFFFFFFFF, _address(off), off is not None, _address(ce), ce is not None, _address(cx),
            cx is not None, bool(target.eps), x0 is not None, _address(grad), _address(scale), uniform,
            grad is not None, _address(sums))
    if not _threaded(n):
        _loop("loss_serial")(*args)
    else:
        with _threads():
            _loop("loss_parallel")(*args)


def _float32_rows(*tables):
    return [t if t is None else t.detach().to(torch.float32).contiguous() for t in tables]


def _float32_target(target):
    """``target`` with its per-row tables as the loop reads them (contiguous float32)."""
    if target.eps_scale is None and target.x0_scale is None:
        return target
    ce, cx = _float32_rows(target.eps_scale, target.x0_scale)
    return target._replace(eps_scale=ce, x0_scale=cx)


def loss_forward(pred: torch.Tensor, rows: int, seed: int, stream: int, offset_strength: float,
                 target) -> torch.Tensor:
    """``loss.launcher.forward`` on the CPU loop: per-row Σ r² (float32, (rows,)) for a contiguous
    float32 ``pred`` (and ``target.x0``), ε regenerated."""
    # The loop writes every row's sum; with no element there is nothing to write.
    sums = torch.empty(rows, dtype=torch.float32) if pred.numel() else torch.zeros(rows, dtype=torch.float32)
    if pred.numel():
        _loss_pass(pred, rows, seed, stream, offset_strength, _float32_target(target), None, None, sums)
    return sums


def loss_backward(pred: torch.Tensor, row_scale: torch.Tensor | float, rows: int, seed: int, stream: int,
                  offset_strength: float, target) -> torch.Tensor:
    """``loss.launcher.backward`` on the CPU loop: row_scale[row]·r, ε regenerated; a float ``row_scale``
    (a float32 value) scales every row."""
    grad = torch.empty_like(pred)
    if pred.numel():
        scale = row_scale
        if not isinstance(scale, float) and (scale.dtype is not torch.float32 or scale.ndim != 1
                                             or not scale.is_contiguous()):
            scale, = _float32_rows(row_scale.reshape(rows))
        _loss_pass(pred, rows, seed, stream, offset_strength, _float32_target(target), grad, scale, None)
    return grad
