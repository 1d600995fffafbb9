"""The ``host`` mode: what one call costs the host on a small batch, beside the eager formula and diffusers.

At the batch sizes people train with, a GPU moves the batch through memory in well under a microsecond,
so a call's own host work decides its speed. Cases, each on a (2, 4, 8, 8) float32 batch, t per sample:

  cpu        q_sample(x0, t, schedule, return_noise=True) on CPU tensors, the compiled CPU loop (``cpu``)
  gpu_host   the same call down the Triton branch with the kernel launch itself a no-op, on CPU tensors:
             every step of a GPU call's host path (checks, dispatch, seed, tables, the Function, the
             launcher's layout, tiling, allocation and arguments) but Triton's own launch; a t on the host
             would add its asynchronous copy to the GPU
  train      a tiny training step: q_sample(..., return_noise="seed"), then diffusion_loss(pred, handle)
             and its backward, CPU tensors

Providers, measured the same way, in one process, interleaved call for call with ours:

  fused      diffusion-kernels
  eager      ``noise = randn_like(x0)``, sqrt_ab[t].view(-1, 1, 1, 1)·x0 + sqrt_1m_ab[t].view(...)·noise
             (for ``train``: then ``F.mse_loss(pred, noise).backward()``)
  diffusers  DDPMScheduler.add_noise fed by randn_like (when diffusers is installed; not for ``train``)

Each figure is the median over ``rounds`` rounds of the mean of ``calls`` calls, on one thread.
"""
from __future__ import annotations

import contextlib
import statistics
import time
from pathlib import Path

import torch
import torch.nn.functional as F

SHAPE = (2, 4, 8, 8)
CASES = ("cpu", "gpu_host", "train")
PROVIDERS = ("fused", "eager", "diffusers")
FILE = "host.json"


class NoLaunch:
    """A kernel whose launch does nothing: ``kernel[grid](*args)`` evaluates its arguments and returns; its
    other attributes (the parameter names) are the kernel's."""

    def __init__(self, kernel):
        self.kernel = kernel

    def __getitem__(self, grid):
        return lambda *args, **kwargs: None

    def __getattr__(self, name):
        return getattr(self.kernel, name)


@contextlib.contextmanager
def _triton_branch_on_meta():
    """The Triton backend picked for every call and its kernel launches made no-ops, so that a call runs the
    GPU path's host code and nothing else: the kernel replaced where the plain path looks it up, and the
    launcher's wrap where the full path launches."""
    from .. import dispatch
    from ..kernels import noising as kernels
    from ..noising import launcher

    select, launch, kernel = dispatch.select, launcher.launcher, kernels.noising_fwd_contiguous_kernel
    dispatch.select = lambda backend, x, *others: "triton"
    launcher.launcher = NoLaunch
    kernels.noising_fwd_contiguous_kernel = NoLaunch(kernel)
    try:
        yield
    finally:
        dispatch.select, launcher.launcher, kernels.noising_fwd_contiguous_kernel = select, launch, kernel


def _calls(case: str, scheduler) -> dict:
    """{provider: a call} for ``case``."""
    from .. import NoiseSchedule, diffusion_loss, q_sample

    schedule = NoiseSchedule.linear()
    sqrt_ab, sqrt_1m_ab = schedule.coefficient_tables("cpu")
    x0 = torch.randn(SHAPE)
    t = torch.tensor([3, 500])
    backend = "cpu" if case != "gpu_host" else "triton"

    def eager():
        noise = torch.randn_like(x0)
        return sqrt_ab[t].view(-1, 1, 1, 1) * x0 + sqrt_1m_ab[t].view(-1, 1, 1, 1) * noise, noise

    calls = {"fused": lambda: q_sample(x0, t, schedule, return_noise=True, backend=backend), "eager": eager}
    if case == "train":
        pred = torch.randn(SHAPE, requires_grad=True)

        def fused_step():
            _, handle = q_sample(x0, t, schedule, return_noise="seed", backend=backend)
            diffusion_loss(pred, handle, backend=backend).backward()

        def eager_step():
            _, noise = eager()
            F.mse_loss(pred, noise).backward()

        return {"fused": fused_step, "eager": eager_step}
    if scheduler is not None:
        calls["diffusers"] = lambda: scheduler.add_noise(x0, torch.randn_like(x0), t)
    return calls


def _interleaved(calls: dict, rounds: int, per_round: int) -> dict:
    """Median µs per call of each provider, the providers taking turns round by round."""
    for call in calls.values():  # warm-up: first-use work (tables, compiled loops) is not a call's cost
        for _ in range(20):
            call()
    samples: dict = {name: [] for name in calls}
    for _ in range(rounds):
        for name, call in calls.items():
            start = time.perf_counter()
            for _ in range(per_round):
                call()
            samples[name].append((time.perf_counter() - start) / per_round * 1e6)
    return {name: statistics.median(values) for name, values in samples.items()}


def run(*, rounds: int = 15, calls: int = 500) -> dict:
    """The host mode's record: {"environment", "rows"}, a row per case and provider (µs per call)."""
    from .env import environment
    from .providers import diffusers_scheduler

    scheduler = diffusers_scheduler()
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    rows = []
    try:
        for case in CASES:
            scope = _triton_branch_on_meta() if case == "gpu_host" else contextlib.nullcontext()
            with scope:
                times = _interleaved(_calls(case, scheduler), rounds, calls)
            for provider, us in times.items():
                rows.append({"mode": "host", "case": case, "provider": provider, "shape": list(SHAPE),
                             "dtype": "float32", "us": us, "vs_eager": us / times["eager"]})
    finally:
        torch.set_num_threads(threads)
    env = environment(torch.device("cpu"))
    env["threads"] = 1
    env["rounds"], env["calls_per_round"] = rounds, calls
    return {"environment": env, "rows": rows}


def format_rows(record: dict) -> str:
    lines = [f"{'case':<9} {'provider':<10} {'µs per call':>12} {'vs eager':>9}"]
    for r in record["rows"]:
        lines.append(f"{r['case']:<9} {r['provider']:<10} {r['us']:>12.1f} {r['vs_eager']:>8.2f}×")
    return "\n".join(lines)


def write(record: dict, out_dir) -> tuple[Path, Path]:
    """The record as ``host.json`` and its plot (µs per call, by case and provider) as ``host.png``."""
    from .plotting import save_record

    def draw(plt):
        fig, ax = plt.subplots(figsize=(6, 3.6))
        width = 0.8 / len(PROVIDERS)
        for k, provider in enumerate(PROVIDERS):
            points = [(CASES.index(r["case"]), r["us"]) for r in record["rows"] if r["provider"] == provider]
            if points:
                where, us = zip(*points)
                ax.bar([w + (k - 1) * width for w in where], us, width, label=provider)
        ax.set_xticks(range(len(CASES)), CASES)
        ax.set(ylabel="µs per call (host)", title=f"host cost, {'×'.join(map(str, SHAPE))} float32, one thread")
        ax.legend()
        return fig

    return save_record(record, out_dir, Path(FILE).stem, draw)
