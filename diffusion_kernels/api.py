"""Public entry points: validate arguments, then route to the fused kernels or the reference."""
from __future__ import annotations

import dataclasses
import operator

import torch

from . import backend as backends
from . import checks, launch, reference, seeding, user_tables
from .autograd import noise_affine
from .schedules import NoiseSchedule, coefficient_tables


@dataclasses.dataclass(frozen=True)
class NoiseHandle:
    """The ε of a call kept as its seed instead of a tensor (``return_noise="seed"``).

    ``noise_mse`` regenerates ε from it inside its kernel; ``materialize()``
    gives the tensor when one is wanted after all.
    """

    seed: object  # int, or a 1-element int64 device tensor
    stream: int
    shape: torch.Size
    rows_shape: torch.Size
    offset_strength: float
    dtype: torch.dtype
    device: torch.device

    def materialize(self, dtype: torch.dtype | None = None) -> torch.Tensor:
        """ε as a tensor, in ``dtype`` (default: the noised tensor's dtype)."""
        return reference.drawn_noise(self.seed, self.shape, self.rows_shape, stream=self.stream,
                                     offset_strength=self.offset_strength, device=self.device).to(dtype or self.dtype)


def _compiling() -> bool:
    return torch.compiler.is_compiling()


def _resolve_seed(seed, generator, device: torch.device, chosen: str):
    """An int, or a 1-element int64 tensor read at run time (a DeviceSeed, or any seed under torch.compile)."""
    if isinstance(seed, seeding.DeviceSeed):
        if generator is not None:
            raise ValueError("pass either seed or generator, not both")
        if seed.device != device:
            raise ValueError(f"DeviceSeed lives on {seed.device} but x0 is on {device}")
        return seed.take() if chosen == "triton" else int(seed.take().item()) % seeding.SEED_BOUND
    if seed is None and _compiling():
        # No host sync inside a compiled graph: the seed stays a tensor (the kernel reads it on the device).
        return seeding.draw_seed_tensor(generator, device if chosen == "triton" else "cpu")
    if seed is None and chosen == "triton" and isinstance(generator, torch.Generator) \
            and generator.device.type == "cuda":
        # A GPU generator's draw stays where it is, for the kernel to read: an int would stall the host.
        return seeding.draw_seed_tensor(generator, device)
    return seeding.resolve_seed(seed, generator)


@dataclasses.dataclass
class _Form:
    """One noising form: per-row coefficient tables for the kernel and the textbook formula for the reference."""

    index: torch.Tensor  # int64, shape () or a leading prefix of x's shape: which table row each slice uses
    tables: object  # device -> (a, b): out = a·x + b·ε
    velocity_tables: object  # device -> (c, d): v = c·x + d·ε, or None when the form has no v-target
    reference: object  # (x, ε) -> out
    reference_velocity: object  # (x, ε) -> v
    check_index: bool = False  # a GPU index tensor is range-checked by the kernel (CPU ones on the host)
    inputs: tuple = ()  # the tensors the tables come from (a learned ᾱ, σ): what a transform may wrap


def _run(x, noise, form: _Form, *, seed, generator, return_noise, return_v, backend, stream,
         offset_strength: float = 0.0):
    if isinstance(return_noise, str):
        if return_noise != "seed":
            raise ValueError(f"return_noise must be True, False or 'seed', got {return_noise!r}")
    else:
        return_noise = checks.check_flag(return_noise, "return_noise")
    return_v = checks.check_flag(return_v, "return_v")
    if return_v and form.velocity_tables is None:
        raise ValueError("this noising form has no v-target (return_v)")
    if return_noise == "seed" and noise is not None:
        raise ValueError("return_noise='seed' keeps a drawn ε as its seed; it cannot be used with a given noise")
    offset_strength = checks.check_real(offset_strength, "offset_noise")
    if noise is not None and (seed is not None or generator is not None or offset_strength != 0.0):
        given = [name for name, value in (("seed", seed), ("generator", generator)) if value is not None]
        given += ["offset_noise"] if offset_strength != 0.0 else []
        raise ValueError(f"noise was given, so nothing is drawn: {', '.join(given)} would be ignored; "
                         "pass either noise or the drawing arguments")
    stream = seeding.check_stream(stream)
    chosen = backends.select(backend, x, noise, *form.inputs)
    if noise is None and backends.under_vmap():
        # The stream is a function of the position in the tensor the call sees, which under vmap is
        # one sample: every vmapped sample would get the same ε.
        raise RuntimeError("drawing noise inside torch.vmap would give every vmapped sample the same ε; pass "
                           "noise=..., or noise the whole batch outside vmap")
    call_seed = _resolve_seed(seed, generator, x.device, chosen) if noise is None else 0

    if chosen == "reference":
        eps = noise
        if eps is None:
            eps = reference.drawn_noise(call_seed, x.shape, form.index.shape, stream=stream,
                                        offset_strength=offset_strength, device=x.device,
                                        dtype=torch.promote_types(x.dtype, torch.float32))
        out = form.reference(x, eps)
        v = form.reference_velocity(x, eps) if return_v else None
        eps = eps.to(x.dtype)
    else:
        a, b = form.tables(x.device)
        c, d = form.velocity_tables(x.device) if return_v else (None, None)
        t_rows = form.index.to(device=x.device)
        if t_rows.ndim != 1:
            t_rows = t_rows.reshape(-1)
        if t_rows.numel() == 0:
            t_rows = t_rows.new_zeros(1)
        out, eps, v = noise_affine(x, t_rows, a, b, c, d, noise, call_seed, stream, offset_strength,
                                   return_noise is True and noise is None, return_v,
                                   form.check_index and form.index.device.type == "cuda" and not _compiling())
        if noise is not None:
            eps = noise

    result = [out]
    if return_noise == "seed":
        result.append(NoiseHandle(call_seed, stream, x.shape, form.index.shape, offset_strength, x.dtype, x.device))
    elif return_noise:
        result.append(eps)
    if return_v:
        result.append(v)
    return result[0] if len(result) == 1 else tuple(result)


raw_tables = user_tables.raw_tables
_validated = user_tables.validated


def _clamped(index: torch.Tensor, T: int) -> torch.Tensor:
    """The rows the kernel reads for ``index``: unchecked values are clamped to [0, T − 1] there,
    and the reference reads the same rows (never wrapping −1 to T − 1, never raising)."""
    return index.clamp(0, T - 1)


def _ddpm_form(x, t, schedule, *, check_t: bool, noise=None) -> _Form:
    alpha_bars = checks.alpha_bars_of(schedule)
    if not isinstance(schedule, NoiseSchedule):
        _validated(alpha_bars)
    checks.check_devices(x, noise, alpha_bars, t)
    index = checks.check_t(t, x, alpha_bars.numel(), check_range=check_t and not _compiling())
    if isinstance(schedule, NoiseSchedule):
        tables, velocity_tables = schedule.coefficient_tables, schedule.velocity_tables
    else:
        def tables(device):
            return raw_tables(alpha_bars, device)

        def velocity_tables(device):
            a, b = raw_tables(alpha_bars, device)
            return -b, a
    T = alpha_bars.numel()
    return _Form(index, tables, velocity_tables,
                 lambda x0, eps: reference.q_sample(x0, _clamped(index, T), alpha_bars, eps),
                 lambda x0, eps: reference.velocity(x0, _clamped(index, T), alpha_bars, eps), check_index=check_t,
                 inputs=(alpha_bars,))


def table_form(x, t, sqrt_ab: torch.Tensor, sqrt_1m_ab: torch.Tensor, *, check_t: bool = True,
               noise=None) -> _Form:
    """The DDPM form from a codebase's own sqrt(ᾱ) and sqrt(1 − ᾱ) tables (float32 buffers made in float64).

    Using them as they are keeps that codebase's numbers: rebuilding ᾱ from a
    float32 ᾱ buffer would lose 1 − ᾱ's precision near t = 0.
    """
    checks.check_devices(x, noise, sqrt_ab, t)
    index = checks.check_t(t, x, sqrt_ab.numel(), check_range=check_t and not _compiling())

    def tables(device):
        return (sqrt_ab.to(device=device, dtype=torch.float32), sqrt_1m_ab.to(device=device, dtype=torch.float32))

    def velocity_tables(device):
        a, b = tables(device)
        return -b, a

    def gathered(x0):
        compute = torch.promote_types(x0.dtype, torch.float32)
        idx = _clamped(index, sqrt_ab.numel()).to(sqrt_ab.device)
        return (reference.broadcast_t(sqrt_ab[idx], x0.ndim).to(x0.device, compute),
                reference.broadcast_t(sqrt_1m_ab[idx], x0.ndim).to(x0.device, compute), compute)

    def textbook(x0, eps):
        a, b, compute = gathered(x0)
        return (a * x0.to(compute) + b * eps.to(compute)).to(x0.dtype)

    def textbook_velocity(x0, eps):
        a, b, compute = gathered(x0)
        return (a * eps.to(compute) - b * x0.to(compute)).to(x0.dtype)

    return _Form(index, tables, velocity_tables, textbook, textbook_velocity, check_index=check_t,
                 inputs=(sqrt_ab, sqrt_1m_ab))


def q_sample(x0: torch.Tensor, t, schedule, noise: torch.Tensor | None = None, *, seed=None,
             generator: torch.Generator | None = None, return_noise=False, return_v: bool = False,
             offset_noise: float = 0.0, backend: str = "auto", check_t: bool = True, stream: int | None = None):
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
        return_noise: also return ε. ``"seed"`` returns a :class:`NoiseHandle`
            instead of a tensor, for :func:`noise_mse`.
        return_v: also return the v-target sqrt(ᾱ)·ε − sqrt(1 − ᾱ)·x0, written in the same pass.
            The result is ``x_t``, ``(x_t, ε)``, ``(x_t, v)`` or ``(x_t, ε, v)``.
        offset_noise: with drawn noise, add this times one normal per entry of
            ``t`` (pass t of shape (B, C) for per-channel offset noise).
        backend: ``"auto"`` (kernel on CUDA, and on CPU under TRITON_INTERPRET=1;
            reference otherwise), ``"triton"`` or ``"reference"``.
        check_t: check that every t lies in [0, T): a ValueError for an int or a
            CPU tensor; for a GPU tensor the kernel checks on the device, with no
            host sync, and a bad t stops it with CUDA's device-side assert (as
            PyTorch's indexing does). Skipped under torch.compile. Unchecked
            values are clamped inside the kernel, never read out of bounds.
        stream: the Philox stream word in [0, 2**32); default the rank of an
            initialised torch.distributed group, else 0.
    """
    x0 = checks.check_x0(x0)
    noise = checks.check_noise(noise, x0)
    form = _ddpm_form(x0, t, schedule, check_t=check_t, noise=noise)
    return _run(x0, noise, form, seed=seed, generator=generator, return_noise=return_noise, return_v=return_v,
                backend=backend, stream=stream, offset_strength=offset_noise)


def get_velocity(x0: torch.Tensor, noise: torch.Tensor, t, schedule, *, backend: str = "auto",
                 check_t: bool = True) -> torch.Tensor:
    """The v-target v = sqrt(ᾱ[t])·ε − sqrt(1 − ᾱ[t])·x0 for a given ε, in one fused pass."""
    x0 = checks.check_x0(x0)
    if noise is None:
        raise ValueError("get_velocity needs the noise ε")
    noise = checks.check_noise(noise, x0)
    form = _ddpm_form(x0, t, schedule, check_t=check_t, noise=noise)
    form = dataclasses.replace(form, tables=form.velocity_tables, reference=form.reference_velocity)
    return _run(x0, noise, form, seed=None, generator=None, return_noise=False, return_v=False, backend=backend,
                stream=None)


_FLOAT32_MAX = torch.finfo(torch.float32).max


def _sigma_form(x, sigma, *, lo: float, hi: float | None, name: str, check: bool, signal, velocity):
    """Per-row coefficient tables from a continuous noise level σ (flow matching, EDM)."""
    if isinstance(sigma, (int, float)) and not isinstance(sigma, bool):
        sigma = torch.tensor(float(sigma), dtype=torch.float64)
    if not isinstance(sigma, torch.Tensor) or not sigma.is_floating_point():
        raise TypeError(f"sigma must be a float or a floating-point tensor, got "
                        f"{sigma.dtype if isinstance(sigma, torch.Tensor) else type(sigma).__name__}")
    if sigma.ndim > x.ndim or tuple(sigma.shape) != tuple(x.shape[: sigma.ndim]):
        raise ValueError(f"sigma of shape {tuple(sigma.shape)} does not fit x0 of shape {tuple(x.shape)}: it must "
                         "be a scalar or have a shape that is a leading prefix of x0's")
    checks.check_devices(x, sigma)
    if check and not _compiling():
        checks.check_sigma(sigma, lo, hi, name)
    rows = max(sigma.numel(), 1)
    # The rows index themselves; made where the kernel runs, so no host-to-device copy is needed.
    index = (torch.arange(rows, device=x.device).reshape(sigma.shape) if sigma.numel()
             else torch.zeros(sigma.shape, dtype=torch.long, device=x.device))

    def tables(device):
        s = sigma.to(device=device, dtype=torch.float64).reshape(-1)
        return signal(s).to(torch.float32), s.to(torch.float32)

    def velocity_tables(device):
        s = sigma.to(device=device).reshape(-1)
        return torch.full_like(s, -1.0, dtype=torch.float32), torch.ones_like(s, dtype=torch.float32)

    return index, tables, (velocity_tables if velocity else None)


def flow_match_sample(x0: torch.Tensor, sigma, noise: torch.Tensor | None = None, *, seed=None,
                      generator: torch.Generator | None = None, return_noise=False, return_v: bool = False,
                      backend: str = "auto", check_sigma: bool = True, stream: int | None = None):
    """Flow matching / rectified flow: x_σ = (1 − σ)·x0 + σ·ε (diffusers' ``scale_noise``).

    ``sigma`` in [0, 1] is a float or a tensor of shape () or a leading prefix
    of x0's. ``return_v`` also returns the velocity target ε − x0. Other
    arguments as in :func:`q_sample`.
    """
    x0 = checks.check_x0(x0)
    noise = checks.check_noise(noise, x0)
    index, tables, velocity_tables = _sigma_form(x0, sigma, lo=0.0, hi=1.0, name="flow matching",
                                                 check=check_sigma, signal=lambda s: 1.0 - s, velocity=True)
    form = _Form(index, tables, velocity_tables, lambda x, eps: reference.flow_match_sample(x, sigma, eps),
                 lambda x, eps: (eps.to(torch.promote_types(x.dtype, torch.float32))
                                 - x.to(torch.promote_types(x.dtype, torch.float32))).to(x.dtype),
                 inputs=(sigma,))
    return _run(x0, noise, form, seed=seed, generator=generator, return_noise=return_noise, return_v=return_v,
                backend=backend, stream=stream)


def edm_sample(x0: torch.Tensor, sigma, noise: torch.Tensor | None = None, *, seed=None,
               generator: torch.Generator | None = None, return_noise=False, backend: str = "auto",
               check_sigma: bool = True, stream: int | None = None):
    """EDM / k-diffusion noising: x_σ = x0 + σ·ε, with ``sigma`` ≥ 0 per sample (or any leading prefix)."""
    x0 = checks.check_x0(x0)
    noise = checks.check_noise(noise, x0)
    # Bounded by float32's largest value: the kernel's coefficient tables are float32.
    index, tables, _ = _sigma_form(x0, sigma, lo=0.0, hi=_FLOAT32_MAX, name="EDM", check=check_sigma,
                                   signal=torch.ones_like, velocity=False)
    form = _Form(index, tables, None, lambda x, eps: reference.edm_sample(x, sigma, eps), None, inputs=(sigma,))
    return _run(x0, noise, form, seed=seed, generator=generator, return_noise=return_noise, return_v=False,
                backend=backend, stream=stream)


def _alphas_of(schedule) -> torch.Tensor:
    if isinstance(schedule, NoiseSchedule):
        return schedule.alphas
    ab = _validated(checks.alpha_bars_of(schedule))
    alphas = ab / torch.cat([ab.new_ones(1), ab[:-1]])
    if not _compiling():
        # A step is defined only where ᾱ does not grow and is not 0 before its last entry (0/0).
        checks.check_in_range(alphas, 0.0, 1.0, "the steps need a non-increasing alpha_bars, zero at most at its "
                                                "end: each α_t = ᾱ_t / ᾱ_(t−1) must lie in")
    return alphas


def forward_step(x_prev: torch.Tensor, t, schedule, noise: torch.Tensor | None = None, *, seed=None,
                 generator: torch.Generator | None = None, return_noise=False, backend: str = "auto",
                 check_t: bool = True, stream: int | None = None):
    """One step of the forward process, x_t ~ q(x_t | x_{t−1}) = N(sqrt(α_t)·x_{t−1}, β_t·I).

    Steps are 0-indexed like the schedule's tables: applying t = 0, 1, …, k to
    x0 gives x_k, distributed as ``q_sample(x0, k, schedule)``. Arguments as in
    :func:`q_sample`; the same fused kernel runs with the (sqrt(α), sqrt(β)) tables.
    """
    x_prev = checks.check_x0(x_prev, "x_prev")
    noise = checks.check_noise(noise, x_prev)
    alphas = _alphas_of(schedule)
    checks.check_devices(x_prev, noise, alphas, t)
    index = checks.check_t(t, x_prev, alphas.numel(), check_range=check_t and not _compiling())
    if isinstance(schedule, NoiseSchedule):
        tables = schedule.step_tables
    else:
        def tables(device):
            return coefficient_tables(alphas, device)
    form = _Form(index, tables, None,
                 lambda x, eps: reference.forward_step(x, _clamped(index, alphas.numel()), alphas, eps), None,
                 check_index=check_t, inputs=(alphas,))
    return _run(x_prev, noise, form, seed=seed, generator=generator, return_noise=return_noise, return_v=False,
                backend=backend, stream=stream)


def _snapshot_step(step) -> int:
    if isinstance(step, torch.Tensor) and step.numel() == 1 and not step.is_floating_point():
        step = step.item()
    if isinstance(step, bool) or not hasattr(step, "__index__"):
        raise TypeError(f"snapshot steps must be ints, got {step!r} ({type(step).__name__})")
    return operator.index(step)


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
    steps = sorted(set(_snapshot_step(s) for s in snapshots)) if snapshots is not None else []
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
