"""pytest-benchmark view of the sweep: `pytest benchmarks/ --benchmark-only`.

The cases are diffusion_kernels.bench's (the same providers and the package's
reference formula the tests use). The full sweep with GB/s, fraction of copy
bandwidth, JSON and plot is `diffusion-kernels bench`.
"""
import pytest
import torch

from diffusion_kernels import dispatch as bench_backend
from diffusion_kernels import bench, cpu_noise
from diffusion_kernels.schedules import NoiseSchedule

DEVICE = torch.device("cuda" if torch.cuda.is_available() else "cpu")
NUMEL = 1 << 24 if DEVICE.type == "cuda" else 1 << 12
SCHEDULE = NoiseSchedule.linear()
PROVIDERS = [p for p in bench.PROVIDERS if p != "cpu" or DEVICE.type == "cpu"]
OURS_AND_EAGER = ("fused", "cpu", "reference", "eager")  # the step, trajectory and loss modes' providers
INTERPRETED = DEVICE.type == "cpu" and bench_backend.interpreter_active()


@pytest.fixture(scope="module")
def compiled():
    with bench.compile_settings():
        yield bench.compiled_providers()


@pytest.fixture(scope="module")
def scheduler():
    return bench.diffusers_scheduler()


# The copy floor is measured once per dtype, listed under mode "copy".
CASES = ([(p, m) for p in PROVIDERS if p != "copy" for m in bench.NOISING_MODES]
         + [(p, m) for p in PROVIDERS if p in OURS_AND_EAGER for m in bench.MODES
            if m not in bench.NOISING_MODES + bench.TRAINING_MODES]
         + [(p, m) for p in PROVIDERS if p != "copy" for m in bench.TRAINING_MODES]
         + [("copy", "copy")])


@pytest.mark.parametrize("dtype", ["float32", "bfloat16"])
@pytest.mark.parametrize("provider,mode", CASES)
def test_q_sample(benchmark, compiled, scheduler, provider, mode, dtype):
    if provider == "diffusers" and scheduler is None:
        pytest.skip("diffusers is not installed")
    if provider == "cpu" and not cpu_noise.available():
        pytest.skip("the cpu provider needs numba (the [cpu] extra)")
    gen = torch.Generator().manual_seed(0)
    shape = (4, NUMEL // 4)
    x0, noise, grad = (torch.randn(shape, generator=gen).to(DEVICE, bench.DTYPES[dtype]) for _ in range(3))
    t = torch.randint(0, SCHEDULE.T, (4,), generator=gen).to(DEVICE)
    ab = SCHEDULE.alpha_bars.float().to(DEVICE)
    fn = bench.cases(provider, mode, x0, t, noise, grad, SCHEDULE, ab, compiled, scheduler)
    benchmark.extra_info.update(numel=NUMEL, bytes=bench.PASSES[mode]
                                * NUMEL * x0.element_size(), device=str(DEVICE))
    work = lambda: (fn(), torch.cuda.synchronize() if DEVICE.type == "cuda" else None)[0]  # noqa: E731
    if provider == "fused" and INTERPRETED:
        # The interpreter's time is not the kernel's: one correctness run, in its own table, marked untimed
        # as the command line's rows are.
        benchmark.group = "untimed: fused in Triton's interpreter (a correctness run, not a timing)"
        benchmark.extra_info.update(timed=False, note="Triton interpreter on CPU: a correctness run, not a timing")
        result = benchmark.pedantic(work, rounds=1, iterations=1)
    else:
        benchmark.extra_info["timed"] = True
        result = benchmark(work)
    outputs = result if isinstance(result, (tuple, list)) else (result,)
    for out in outputs:
        assert out.shape == (() if mode in ("loss", *bench.TRAINING_MODES) else x0.shape)
        assert bool(torch.isfinite(out).all())
