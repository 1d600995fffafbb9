"""The sweep: sizes × dtypes × layouts × modes × providers, checkpointed after each case."""
from __future__ import annotations

import torch

from ..schedules import NoiseSchedule
from .providers import DTYPES, cases, compile_settings, compiled_providers, diffusers_scheduler
from .record import Row, make_record
from .spec import CPU_SIZES, GPU_SIZES, MODES, PASSES, PROVIDERS, SMALL_LATENTS, TRAINING_MODES, batch_shape
from .timing import time_host_us, measure_temp_bytes, median_ms, memory_of_loss


def run(device: torch.device, **kwargs) -> dict:
    """Sweep sizes × dtypes × modes × providers; returns the record (environment, rows, memory)."""
    with compile_settings():
        return _run(device, **kwargs)


def _run(device: torch.device, *, sizes=None, dtypes=("float32", "bfloat16", "float16"), modes=MODES,
        providers=PROVIDERS, layouts=("contiguous",), reps: int = 100, seed: int = 0, progress: bool = True,
        on_case=None) -> dict:
    from tqdm.auto import tqdm

    from .. import dispatch

    sizes = tuple(sizes or (GPU_SIZES if device.type == "cuda" else CPU_SIZES))
    schedule = NoiseSchedule.linear()
    ab_device = schedule.alpha_bars.float().to(device)
    compiled = compiled_providers() if "compile" in providers else {}
    scheduler = diffusers_scheduler() if "diffusers" in providers else None
    fused_timed = device.type == "cuda" or not dispatch.interpreter_active()
    rows: list[Row] = []
    shapes = {(n, layout): batch_shape(n, layout) for n in sizes for layout in layouts}  # bad sizes fail first
    work = [(n, d, layout) for n in sizes for d in dtypes for layout in layouts]
    for numel, dtype_name, layout in tqdm(work, desc="bench", disable=not progress):
        dtype = DTYPES[dtype_name]
        shape = shapes[numel, layout]
        memory_format = torch.channels_last if layout == "channels_last" else torch.contiguous_format
        gen = torch.Generator().manual_seed(seed)
        x0, noise, grad = (torch.randn(shape, generator=gen).to(device=device, dtype=dtype,
                                                                 memory_format=memory_format) for _ in range(3))
        t = torch.randint(0, schedule.T, shape[:1], generator=gen).to(device)
        n = x0.numel()
        itemsize = x0.element_size()
        copy_fn = cases("copy", "copy", x0, t, noise, grad, schedule, ab_device, compiled, scheduler)
        copy_ms = median_ms(copy_fn, device, reps)
        copy_gbps = PASSES["copy"] * n * itemsize / copy_ms / 1e6
        if "copy" in providers:
            rows.append(Row("copy", "copy", dtype_name, n, copy_ms, copy_gbps, 1.0,
                            host_us=time_host_us(copy_fn, device) if n <= SMALL_LATENTS else None, layout=layout))
        for mode in modes:
            for provider in providers:
                if provider == "copy":
                    continue
                fn = cases(provider, mode, x0, t, noise, grad, schedule, ab_device, compiled, scheduler)
                if fn is None:
                    continue
                timed = fused_timed or provider != "fused"
                ms = median_ms(fn, device, reps)
                gbps = PASSES[mode] * n * itemsize / ms / 1e6
                rows.append(Row(
                    provider, mode, dtype_name, n, ms, gbps, of_copy=gbps / copy_gbps if timed else None,
                    host_us=time_host_us(fn, device) if n <= SMALL_LATENTS and timed else None,
                    temp_bytes=measure_temp_bytes(fn, device), timed=timed,
                    saved_bytes=fn.saved_bytes() if mode in TRAINING_MODES else None,
                    note="" if timed else "Triton interpreter on CPU: a correctness run, not a timing",
                    layout=layout,
                ))
        if on_case is not None:
            # What is measured so far, so a sweep cut short (a time limit) still leaves its rows.
            on_case(make_record(device, sizes, rows, []))
    memory = [memory_of_loss(device, sizes[-1], DTYPES[d]) for d in dtypes]
    return make_record(device, sizes, rows, memory)


