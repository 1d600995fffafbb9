"""Measuring one unit of work: median device time, host time per call, temporary and held memory."""
from __future__ import annotations

import statistics
import time

import torch

from .. import cpu_noise
from ..loss.entry import noise_mse
from ..noising.entry import q_sample
from ..schedules import NoiseSchedule


def _sync(device):
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def median_ms(fn, device, reps: int) -> float:
    """Median milliseconds of one call: triton.testing.do_bench on CUDA (L2 flushed between runs); on the
    CPU, calls repeated for about ``reps`` ms (at least 7, at most 2000), after warm-up calls for a fifth of
    that (a first case measured cold reads up to twice its warm time)."""
    if device.type == "cuda":
        import triton.testing

        return float(triton.testing.do_bench(fn, warmup=25, rep=reps, return_mode="median"))
    warm = time.perf_counter() + reps / 5e3
    fn()
    while time.perf_counter() < warm:
        fn()
    samples = []
    budget = time.perf_counter() + reps / 1e3
    while len(samples) < 7 or (time.perf_counter() < budget and len(samples) < 2000):
        start = time.perf_counter()
        fn()
        samples.append((time.perf_counter() - start) * 1e3)
    return statistics.median(samples)


def time_host_us(fn, device, calls: int = 200) -> float:
    """Host time per call with the GPU left running: the launch overhead a small batch pays."""
    fn()
    _sync(device)
    start = time.perf_counter()
    for _ in range(calls):
        fn()
    elapsed = time.perf_counter() - start
    _sync(device)
    return elapsed / calls * 1e6


def measure_temp_bytes(fn, device) -> int | None:
    """Peak GPU memory of one call beyond its outputs (None off CUDA)."""
    if device.type != "cuda":
        return None
    _sync(device)
    torch.cuda.reset_peak_memory_stats(device)
    base = torch.cuda.memory_allocated(device)
    result = fn()
    _sync(device)
    peak = torch.cuda.max_memory_allocated(device) - base
    outputs = result if isinstance(result, (tuple, list)) else (result,)
    kept = sum(o.untyped_storage().nbytes() for o in outputs if isinstance(o, torch.Tensor))
    del result, outputs
    return int(peak - kept)


def memory_of_loss(device: torch.device, numel: int, dtype: torch.dtype) -> dict:
    """One ε-prediction step, stored ε + F.mse_loss against noise_mse (ε kept as its seed).

    Reports the bytes the step holds between noising and loss (measured from the
    returned objects) and, on CUDA, the peak memory of the whole step.
    """
    schedule = NoiseSchedule.linear()
    # Held bytes do not depend on the backend: on CPU the compiled path, not the interpreter, runs it.
    backend = "cpu" if device.type == "cpu" and cpu_noise.available() else "auto"
    x0 = torch.randn(numel, device=device, dtype=dtype).reshape(4, -1)
    t = torch.tensor([1, 10, 100, 999])
    weight = torch.ones(1, device=device, dtype=dtype, requires_grad=True)

    def unfused():
        x_t, eps = q_sample(x0, t, schedule, return_noise=True, backend=backend)
        held = eps.untyped_storage().nbytes()
        torch.nn.functional.mse_loss(x_t * weight, eps).backward()
        return held

    def fused():
        x_t, handle = q_sample(x0, t, schedule, return_noise="seed", backend=backend)
        noise_mse(x_t * weight, handle, backend=backend).backward()
        return 0

    out = {"numel": numel, "dtype": str(dtype).replace("torch.", "")}
    for name, step in (("stored_noise", unfused), ("noise_mse", fused)):
        step()  # compile and warm
        if device.type == "cuda":
            _sync(device)
            torch.cuda.reset_peak_memory_stats(device)
            base = torch.cuda.memory_allocated(device)
        held = step()
        out[f"{name}_held_bytes"] = held
        if device.type == "cuda":
            _sync(device)
            out[f"{name}_peak_bytes"] = int(torch.cuda.max_memory_allocated(device) - base)
    if device.type == "cuda":
        out["saved_peak_bytes"] = out["stored_noise_peak_bytes"] - out["noise_mse_peak_bytes"]
    return out


