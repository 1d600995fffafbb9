"""Public entry points: validate arguments, then route to the fused kernels or the reference."""
from __future__ import annotations

import torch

from . import backend as backends
from . import checks, launch, reference, seeding
from .autograd import QSample
from .schedules import NoiseSchedule, coefficient_tables


def _resolve_seed(seed, generator, device: torch.device, chosen: str):
    """An int, or (for a DeviceSeed on the kernel path) this call's seed as a device tensor."""
    if isinstance(seed, seeding.DeviceSeed):
        if generator is not None:
            raise ValueError("pass either seed or generator, not both")
        if seed.device != device:
            raise ValueError(f"DeviceSeed lives on {seed.device} but x0 is on {device}")
        return seed.take() if chosen == "triton" else int(seed.take().item()) % seeding.SEED_BOUND
    return seeding.resolve_seed(seed, generator)


def _noised(x, t, signal, tables, noise, *, seed, generator, return_noise, backend, check_t, stream):
    """x·sqrt(v[t]) + sqrt(1 − v[t])·ε for a table v of ᾱ (q_sample) or α (one forward step).

    ``signal`` is the float64 (or learnable) table v; ``tables`` returns the
    kernel's float32 (sqrt(v), sqrt(1 − v)) on a device.
    """
    x = checks.check_x0(x)
    noise = checks.check_noise(noise, x)
    checks.check_devices(x, noise, signal, t)
    t = checks.check_t(t, x, signal.numel(), check_range=check_t)
    stream = seeding.check_stream(stream)
    chosen = backends.select(backend, x)
    call_seed = _resolve_seed(seed, generator, x.device, chosen) if noise is None else 0

    if chosen == "reference":
        if noise is None:
            noise = reference.philox_normal(call_seed, x.shape, stream=stream, device=x.device,
                                            dtype=torch.promote_types(x.dtype, torch.float32))
        x_t = reference.q_sample(x, t, signal, noise)
        return (x_t, noise.to(x.dtype)) if return_noise else x_t

    a, b = tables(x.device)
    t_rows = t.to(device=x.device).reshape(-1)
    if t_rows.numel() == 0:
        t_rows = t_rows.new_zeros(1)
    x_t, eps = QSample.apply(x, t_rows, a, b, noise, call_seed, stream, return_noise and noise is None)
    if return_noise:
        return x_t, (noise if noise is not None else eps)
    return x_t


def _closed_form_tables(schedule, alpha_bars):
    if isinstance(schedule, NoiseSchedule):
        return schedule.coefficient_tables
    return lambda device: coefficient_tables(alpha_bars, device)


def q_sample(x0: torch.Tensor, t, schedule, noise: torch.Tensor | None = None, *, seed=None,
             generator: torch.Generator | None = None, return_noise: bool = False, backend: str = "auto",
             check_t: bool = True, stream: int | None = None):
    """Noise ``x0`` to step ``t``: x_t = sqrt(ᾱ[t])·x0 + sqrt(1 − ᾱ[t])·ε.

    Args:
        x0: clean data of any shape; float32, float16 or bfloat16 run the fused
            kernel (float32 arithmetic inside), float64 runs the reference.
        t: an int, a 0-d tensor, or an integer tensor whose shape is a leading
            prefix of ``x0.shape`` ((B,) per sample, (B, F) per frame, ...). It
            may live on the CPU while ``x0`` is on a GPU.
        schedule: a :class:`NoiseSchedule` or a 1-D ᾱ tensor (which may require
            grad, for learned schedules).
        noise: ε to use; when ``None`` it is drawn from the Philox stream of ``seed``.
        seed: an int in [0, 2**64) fixing the stream, or a :class:`DeviceSeed`
            (read on the device at run time: CUDA-graph safe). Without it one is
            drawn from ``generator`` or torch's default CPU generator.
        return_noise: also return ε, as ``(x_t, ε)``.
        backend: ``"auto"`` (kernel on CUDA, and on CPU under TRITON_INTERPRET=1;
            reference otherwise), ``"triton"`` or ``"reference"``.
        check_t: check that every t lies in [0, T) (a host sync for GPU tensors).
            Unchecked values are clamped inside the kernel, never read out of bounds.
        stream: the Philox stream word in [0, 2**32); default the rank of an
            initialised torch.distributed group, else 0.
    """
    alpha_bars = checks.alpha_bars_of(schedule)
    return _noised(x0, t, alpha_bars, _closed_form_tables(schedule, alpha_bars), noise, seed=seed,
                   generator=generator, return_noise=return_noise, backend=backend, check_t=check_t, stream=stream)


def _alphas_of(schedule) -> torch.Tensor:
    if isinstance(schedule, NoiseSchedule):
        return schedule.alphas
    ab = checks.alpha_bars_of(schedule)
    return ab / torch.cat([ab.new_ones(1), ab[:-1]])


def forward_step(x_prev: torch.Tensor, t, schedule, noise: torch.Tensor | None = None, *, seed=None,
                 generator: torch.Generator | None = None, return_noise: bool = False, backend: str = "auto",
                 check_t: bool = True, stream: int | None = None):
    """One step of the forward process, x_t ~ q(x_t | x_{t−1}) = N(sqrt(α_t)·x_{t−1}, β_t·I).

    Steps are 0-indexed like the schedule's tables: applying t = 0, 1, …, k to
    x0 gives x_k, distributed as ``q_sample(x0, k, schedule)``. Arguments as in
    :func:`q_sample`; the same fused kernel runs with the (sqrt(α), sqrt(β)) tables.
    """
    alphas = _alphas_of(schedule)
    if isinstance(schedule, NoiseSchedule):
        tables = schedule.step_tables
    else:
        tables = lambda device: coefficient_tables(alphas, device)  # noqa: E731
    return _noised(x_prev, t, alphas, tables, noise, seed=seed, generator=generator, return_noise=return_noise,
                   backend=backend, check_t=check_t, stream=stream)


def forward_trajectory(x0: torch.Tensor, schedule, t_end: int, *, seed=None,
                       generator: torch.Generator | None = None, snapshots=None, backend: str = "auto",
                       stream: int | None = None):
    """x_{t_end} by applying the forward steps 0 … t_end one after another, in one fused kernel.

    The sample stays in registers across the steps and step s draws its own
    noise (the stream's step word is s), so the result is exactly what
    :func:`forward_step` applied t_end + 1 times with those noises gives; in
    distribution it equals ``q_sample(x0, t_end, schedule)``.

    Args:
        snapshots: optional steps at which to also keep the sample; then the
            result is ``(x_t_end, {step: x_step})``.
    Other arguments as in :func:`q_sample`.
    """
    x0 = checks.check_x0(x0)
    if not isinstance(schedule, NoiseSchedule):
        schedule = NoiseSchedule.from_alpha_bars(checks.alpha_bars_of(schedule))
    if isinstance(t_end, torch.Tensor):
        if t_end.ndim != 0 or t_end.is_floating_point():
            raise TypeError("t_end must be an int (or a 0-d integer tensor)")
        t_end = int(t_end)
    if isinstance(t_end, bool) or not isinstance(t_end, int):
        raise TypeError(f"t_end must be an int, got {type(t_end).__name__}")
    if not 0 <= t_end < schedule.T:
        raise ValueError(f"t_end = {t_end} is outside [0, T) for a schedule of T={schedule.T} steps")
    steps = sorted(set(int(s) for s in snapshots)) if snapshots is not None else []
    for s in steps:
        if not 0 <= s <= t_end:
            raise ValueError(f"snapshot step {s} is outside [0, t_end={t_end}]")
    stream = seeding.check_stream(stream)
    chosen = backends.select(backend, x0)
    call_seed = _resolve_seed(seed, generator, x0.device, chosen)

    if chosen == "reference":
        x_end, kept = reference.forward_trajectory(x0, schedule.alphas, t_end, seed=call_seed, stream=stream,
                                                   snapshots=steps)
    else:
        sqrt_alpha, sqrt_beta = schedule.step_tables(x0.device)
        x_end, stacked = launch.forward_trajectory(x0, sqrt_alpha, sqrt_beta, t_end, seed=call_seed, stream=stream,
                                                   snapshot_steps=steps)
        kept = {s: stacked[k] for k, s in enumerate(steps)}
    return (x_end, kept) if snapshots is not None else x_end
