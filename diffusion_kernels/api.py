"""Public q_sample: validates, routes to the fused kernel or the reference."""
from __future__ import annotations

import torch

from . import backend as backends
from . import checks, reference, seeding
from .autograd import QSample
from .schedules import NoiseSchedule, coefficient_tables


def _tables(schedule, alpha_bars: torch.Tensor, device):
    if isinstance(schedule, NoiseSchedule):
        return schedule.coefficient_tables(device)
    return coefficient_tables(alpha_bars, device)


def q_sample(x0: torch.Tensor, t, schedule, noise: torch.Tensor | None = None, *, seed: int | None = None,
             generator: torch.Generator | None = None, return_noise: bool = False, backend: str = "auto",
             check_t: bool = True, stream: int = 0):
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
        seed: a 64-bit int fixing the stream. Without it one is drawn from
            ``generator`` or torch's default CPU generator.
        return_noise: also return ε, as ``(x_t, ε)``.
        backend: ``"auto"`` (kernel on CUDA, and on CPU under TRITON_INTERPRET=1;
            reference otherwise), ``"triton"`` or ``"reference"``.
        check_t: check that every t lies in [0, T) (a host sync for GPU tensors).
            Unchecked values are clamped inside the kernel, never read out of bounds.
        stream: a 32-bit Philox stream index; different streams of one seed are independent.
    """
    x0 = checks.check_x0(x0)
    alpha_bars = checks.alpha_bars_of(schedule)
    noise = checks.check_noise(noise, x0)
    checks.check_devices(x0, noise, alpha_bars, t)
    t = checks.check_t(t, x0, alpha_bars.numel(), check_range=check_t)
    if not 0 <= stream < 2**32:
        raise ValueError(f"stream must lie in [0, 2**32), got {stream}")
    chosen = backends.select(backend, x0)

    drawn_seed = seeding.resolve_seed(seed, generator) if noise is None else 0
    if chosen == "reference":
        if noise is None:
            noise = reference.philox_normal(drawn_seed, x0.shape, stream=stream, device=x0.device,
                                            dtype=torch.promote_types(x0.dtype, torch.float32))
        x_t = reference.q_sample(x0, t, alpha_bars, noise)
        if return_noise:
            return x_t, (noise if noise.dtype == x0.dtype else noise.to(x0.dtype))
        return x_t

    sqrt_ab, sqrt_1m_ab = _tables(schedule, alpha_bars, x0.device)
    t_rows = t.to(device=x0.device).reshape(-1)
    if t_rows.numel() == 0:
        t_rows = t_rows.new_zeros(1)
    x_t, eps = QSample.apply(x0, t_rows, sqrt_ab, sqrt_1m_ab, noise, drawn_seed, stream,
                             return_noise and noise is None)
    if return_noise:
        return x_t, (noise if noise is not None else eps)
    return x_t
