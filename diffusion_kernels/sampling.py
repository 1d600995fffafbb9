"""Timesteps and noise levels for a training step, drawn where the batch lives from the noise stream.

The recipes follow diffusers' training scripts (``compute_density_for_timestep_sampling``): u in (0, 1)
is uniform, ``"logit_normal"`` (sigmoid of N(logit_mean, logit_std²)), ``"mode"`` (SD3's mode sampling,
u' = 1 − u − s·(cos²(πu/2) − 1 + u)) or ``"cosmap"`` (SD3's t = 1 − 1 / (tan(πu/2) + 1)). Every draw
comes from the Philox stream at its own step word (kernels/sampling.py, SAMPLING_STEP): element i uses
lane i % 4 of quad i // 4, so a draw is a pure function of (seed, stream, i) on every device. Uniform
timesteps are integer arithmetic on the words, identical on every device; the other schemes agree
across devices to float32 rounding.
"""
from __future__ import annotations

import functools
import math
import operator

import torch

from . import backend as backends
from . import checks, cpu_noise, launch, reference, seeding
from .runner import resolve_seed

SCHEMES = ("uniform", "logit_normal", "mode", "cosmap")
SAMPLING_STEP = 0xFFFFFFFE  # kernels/sampling.py::SAMPLING_STEP (-2 as a 32-bit word)
_MASK32 = 0xFFFFFFFF


def _shape(shape) -> torch.Size:
    if isinstance(shape, int) and not isinstance(shape, bool):
        shape = (shape,)
    try:
        size = torch.Size(operator.index(s) for s in shape)
    except TypeError:
        raise TypeError(f"shape must be an int or a sequence of ints, got {shape!r}") from None
    if any(s < 0 for s in size):
        raise ValueError(f"shape must not have negative sizes, got {tuple(size)}")
    return size


def _draws(shape: torch.Size, seed, generator, stream, device, backend, scheme: str = "uniform"):
    """(words as int64 in [0, 2**32), normals float32) of the sampling step word, ``shape`` each. Off the
    kernel, which draws both in one pass, only what ``scheme`` reads is computed; the other is None."""
    device = torch.device(device if device is not None else "cpu")
    stream = seeding.check_stream(stream)
    chosen = backends.select(backend, torch.empty(0, device=device))
    call_seed = resolve_seed(seed, generator, device, chosen)
    n = shape.numel()
    if chosen == "triton":
        words, normals = launch.sampling_draws(n, call_seed, stream, device)
        return (words.to(torch.int64) & _MASK32).reshape(shape), normals.reshape(shape)
    compiled = chosen == "cpu" and not isinstance(call_seed, torch.Tensor)
    if scheme == "logit_normal":
        draw = cpu_noise.philox_normal if compiled else functools.partial(reference.philox_normal, device=device)
        return None, draw(call_seed, shape, stream=stream, step=SAMPLING_STEP).to(device)
    quads = (n + 3) // 4
    if compiled:
        lanes = torch.from_numpy(cpu_noise.philox_words(call_seed, 0, quads, stream=stream,
                                                        step=SAMPLING_STEP).astype("int64"))
    else:
        q = torch.arange(quads, dtype=torch.int64, device=device)
        key = call_seed.reshape(()) if isinstance(call_seed, torch.Tensor) else call_seed
        lanes = torch.stack(reference.philox4x32(q & _MASK32, q >> 32, torch.full_like(q, stream),
                                                 torch.full_like(q, SAMPLING_STEP), key & _MASK32, key >> 32), dim=1)
    return lanes.reshape(-1)[:n].reshape(shape).to(device), None


def _check_number(value, name: str, *, positive: bool = False) -> float:
    value = checks.check_real(value, name)
    if not math.isfinite(value) or (positive and value <= 0):
        raise ValueError(f"{name} must be {'a positive' if positive else 'a finite'} number, got {value!r}")
    return value


def _recipe(scheme, logit_mean, logit_std, mode_scale) -> tuple:
    """The density's arguments, checked: (scheme, logit_mean, logit_std, mode_scale)."""
    if scheme not in SCHEMES:
        raise ValueError(f"unknown scheme {scheme!r}; choose from {', '.join(SCHEMES)}")
    return (scheme, _check_number(logit_mean, "logit_mean"), _check_number(logit_std, "logit_std", positive=True),
            _check_number(mode_scale, "mode_scale"))


def _unit(words, normals, scheme, logit_mean, logit_std, mode_scale) -> torch.Tensor:
    """The scheme's u in (0, 1) from a draw, in float64 (a batch's worth of values)."""
    if scheme == "logit_normal":
        return torch.sigmoid(logit_mean + logit_std * normals.to(torch.float64))
    u = ((words >> 8).to(torch.float64) + 0.5) * 2.0**-24  # the word's 24 high bits, centred: never 0 or 1
    if scheme == "mode":
        return 1.0 - u - mode_scale * (torch.cos(math.pi * u / 2) ** 2 - 1.0 + u)
    if scheme == "cosmap":
        return 1.0 - 1.0 / (torch.tan(math.pi * u / 2) + 1.0)
    return u


def sample_sigmas(shape, *, scheme: str = "logit_normal", logit_mean: float = 0.0, logit_std: float = 1.0,
                  mode_scale: float = 1.29, shift: float = 1.0, device=None, seed=None,
                  generator: torch.Generator | None = None, stream: int | None = None,
                  backend: str = "auto") -> torch.Tensor:
    """Flow-matching noise levels σ in (0, 1), float32, drawn on ``device`` with no host sync.

    σ = 1 − u for the scheme's u, then SD3's time shift σ' = s·σ / (1 + (s − 1)·σ): the continuum of
    what diffusers' SD3/Flux scripts draw, σ = sigmas[⌊u·T⌋] of the flow-matching scheduler's σ table,
    which runs from 1 down to 1/T (so a positive ``logit_mean`` favours low noise there as here).
    ``seed``, ``generator`` and ``stream`` as in :func:`q_sample`.
    """
    size = _shape(shape)
    recipe = _recipe(scheme, logit_mean, logit_std, mode_scale)
    shift = _check_number(shift, "shift", positive=True)
    words, normals = _draws(size, seed, generator, stream, device, backend, scheme)
    sigma = 1.0 - _unit(words, normals, *recipe)
    if shift != 1.0:
        sigma = time_shift(sigma, shift)
    return sigma.to(torch.float32)


def time_shift(sigma, shift: float):
    """SD3's time shift of a noise level: s·σ / (1 + (s − 1)·σ)."""
    return shift * sigma / (1.0 + (shift - 1.0) * sigma)


def sample_timesteps(shape, T: int, *, scheme: str = "uniform", logit_mean: float = 0.0, logit_std: float = 1.0,
                     mode_scale: float = 1.29, device=None, seed=None, generator: torch.Generator | None = None,
                     stream: int | None = None, backend: str = "auto") -> torch.Tensor:
    """Integer timesteps in [0, T), int64, drawn on ``device`` with no host sync.

    ``"uniform"`` is t = ⌊word·T / 2**32⌋ (exact integer arithmetic; within T / 2**32 of uniform);
    the other schemes take t = ⌊u·T⌋ as diffusers' scripts do (``(u * num_train_timesteps).long()``).
    """
    size = _shape(shape)
    if isinstance(T, bool) or not isinstance(T, int) or not 1 <= T < 2**31:
        # Below 2**31 the product word·T fits int64: the uniform draw stays exact.
        raise ValueError(f"T must be a positive int below 2**31 (the number of timesteps), got {T!r}")
    if scheme == "uniform":
        words, _ = _draws(size, seed, generator, stream, device, backend)
        return (words * T) >> 32
    recipe = _recipe(scheme, logit_mean, logit_std, mode_scale)
    words, normals = _draws(size, seed, generator, stream, device, backend, scheme)
    u = _unit(words, normals, *recipe)
    return (u * T).to(torch.int64).clamp_(0, T - 1)
