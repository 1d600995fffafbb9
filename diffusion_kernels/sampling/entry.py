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

import math
from typing import TypeVar, cast

import torch

from .. import checks, cpu_noise, dispatch, seeding, sharding, transfer
from ..hints import Device, Shape
from ..seeding import Seed
from ..reference import SAMPLING_STEP  # noqa: F401 (the samplers' step word, named here too)

Recipe = tuple[str, float, float, float]  # (scheme, logit_mean, logit_std, mode_scale)
SigmaValue = TypeVar("SigmaValue", float, torch.Tensor)

SCHEMES = ("uniform", "logit_normal", "mode", "cosmap")
FLOAT32_TINY = torch.finfo(torch.float32).tiny


def _shape(shape: Shape) -> torch.Size:
    # One size (an int, a numpy integer, a 0-d integer tensor), or a sequence of them.
    sizes = (shape,) if hasattr(shape, "__index__") and getattr(shape, "ndim", 0) == 0 else shape
    try:
        size = torch.Size(checks.check_int(s, "shape") for s in sizes)  # type: ignore[union-attr]
    except TypeError:
        raise TypeError(f"shape must be an int or a sequence of ints, got {shape!r}") from None
    if any(s < 0 for s in size):
        raise ValueError(f"shape must not have negative sizes, got {tuple(size)}")
    return size


def _block_draws(shape: torch.Size, block: sharding.Block, seed: Seed, generator: torch.Generator | None,
                 stream: int | None, device: Device | None, backend: str,
                 scheme: str) -> tuple[torch.Tensor | None, torch.Tensor | None]:
    """:func:`_draws` for a block of a global batch: the draws of its samples' global indices, taken from
    a draw of the global batch up to its last one (a per-sample tensor: a few thousand values at most)."""
    where = sharding.positions(block).reshape(-1)
    cover = torch.Size([int(where.max()) + 1 if where.numel() else 0])
    stream = seeding.check_stream(stream, sharded=True)
    drawn = _draws(cover, seed, generator, stream, device, backend, scheme)
    pick = transfer.to_device(where, torch.device(device if device is not None else "cpu"))
    words, normals = (None if values is None else values[pick].reshape(shape) for values in drawn)
    return words, normals


@cpu_noise.fork_safe
def _draws(shape: torch.Size, seed: Seed, generator: torch.Generator | None, stream: int | None, device: Device | None,
           backend: str, scheme: str = "uniform") -> tuple[torch.Tensor | None, torch.Tensor | None]:
    """(words as int64 in [0, 2**32), normals float32) of the sampling step word, ``shape`` each. Off the
    kernel, which draws both in one pass, only what ``scheme`` reads is computed; the other is None."""
    device = torch.device(device if device is not None else "cpu")
    stream = seeding.check_stream(stream)
    implementation = dispatch.implementation("sampling", backend, torch.empty(0, device=device))
    call_seed = seeding.call_seed(seed, generator, device, implementation.SEED_ON_DEVICE)
    return implementation.draws(shape, call_seed, stream, device, scheme)


def _pick(size: torch.Size, block: sharding.Block | None, seed: Seed, generator: torch.Generator | None,
          stream: int | None, device: Device | None, backend: str,
          scheme: str) -> tuple[torch.Tensor | None, torch.Tensor | None]:
    if block is None or block.whole:
        stream = seeding.check_stream(stream, sharded=block is not None)
        return _draws(size, seed, generator, stream, device, backend, scheme)
    return _block_draws(size, block, seed, generator, stream, device, backend, scheme)


def _check_number(value: object, name: str, *, positive: bool = False) -> float:
    value = checks.check_real(value, name)
    if not math.isfinite(value) or (positive and value <= 0):
        raise ValueError(f"{name} must be {'a positive' if positive else 'a finite'} number, got {value!r}")
    return value


# SD3's mode density u' = 1 − u − s·(cos²(πu/2) − 1 + u) is a density on (0, 1) only while the map is
# monotone: du'/du = −1 − s + s·(π/2)·sin(πu) ≤ 0 for every u needs −1 ≤ s ≤ 1/(π/2 − 1) = 2/(π − 2),
# the range the SD3 paper gives. Outside it u' leaves (0, 1) (s = 10 puts a quarter of u' below 0).
MODE_SCALE_RANGE = (-1.0, 2.0 / (math.pi - 2.0))
# |normal| of the stream never exceeds sqrt(−2·ln(2**-24)) = 5.768 (Box–Muller's smallest u1 is 2**-24;
# kernels/box_muller.py), so a logit-normal draw z = m + s·n lies within |m| + 5.8·s of 0.
NORMAL_BOUND = 5.8
# σ = sigmoid(−z) stays a normal float32 (≥ 2**-126 ≈ 1.2e-38) while z ≤ 87: the bound on |m| + 5.8·s.
LOGIT_BOUND = 87.0


def _recipe(scheme: str, logit_mean: float, logit_std: float, mode_scale: float) -> Recipe:
    """The density's arguments, checked: (scheme, logit_mean, logit_std, mode_scale)."""
    if scheme not in SCHEMES:
        raise ValueError(f"unknown scheme {scheme!r}; choose from {', '.join(SCHEMES)}")
    recipe = (scheme, _check_number(logit_mean, "logit_mean"), _check_number(logit_std, "logit_std", positive=True),
              _check_number(mode_scale, "mode_scale"))
    lo, hi = MODE_SCALE_RANGE
    if scheme == "mode" and not lo <= recipe[3] <= hi:
        raise ValueError(f"mode_scale must lie in [{lo}, {hi:.4f}] (2/(π − 2)), where SD3's mode density is one "
                         f"(its map of u stays monotone in (0, 1)); got {recipe[3]}")
    if scheme == "logit_normal" and abs(recipe[1]) + NORMAL_BOUND * recipe[2] > LOGIT_BOUND:
        raise ValueError(f"|logit_mean| + {NORMAL_BOUND}·logit_std must be at most {LOGIT_BOUND}, got "
                         f"{abs(recipe[1]) + NORMAL_BOUND * recipe[2]:.4g}: beyond it a draw's σ = sigmoid(−z) "
                         "underflows float32 to 0 (or t reaches the end of its range)")
    return recipe


def _complement(words: torch.Tensor | None, normals: torch.Tensor | None, scheme: str, logit_mean: float,
                logit_std: float, mode_scale: float) -> torch.Tensor:
    """1 − u' for the scheme's u' (the density diffusers' ``compute_density_for_timestep_sampling`` draws),
    float64, written so that it never rounds to 0 or above 1: it is σ before the shift, and t = T − ⌈σ·T⌉.

    u, the word's 24 high bits centred, lies in [2**-25, 1 − 2**-25]; the forms below are 1 − u' with the
    1 − · done exactly (uniform), or the same quantity without the subtraction (the others).
    """
    if scheme == "logit_normal":  # 1 − sigmoid(z) = sigmoid(−z), > 0 for every z the recipe check admits
        return torch.sigmoid(-(logit_mean + logit_std * cast(torch.Tensor, normals).to(torch.float64)))
    u = ((cast(torch.Tensor, words) >> 8).to(torch.float64) + 0.5) * 2.0**-24  # never 0 or 1
    if scheme == "mode":  # 1 − u' = u + s·(u − sin²(πu/2)): in (0, 1) for u in (0, 1) over MODE_SCALE_RANGE
        return u + mode_scale * (u - torch.sin(math.pi * u / 2) ** 2)
    if scheme == "cosmap":  # 1 − (1 − 1/(tan(πu/2) + 1))
        return 1.0 / (torch.tan(math.pi * u / 2) + 1.0)
    return 1.0 - u


def _smallest_complement(scheme: str, logit_mean: float, logit_std: float, mode_scale: float) -> float:
    """The least value :func:`_complement` can take for a recipe: at the extreme words or normals, since each
    scheme's form is monotone in its draw (the mode map over MODE_SCALE_RANGE)."""
    if scheme == "logit_normal":
        return 1.0 / (1.0 + math.exp(logit_mean + NORMAL_BOUND * logit_std))
    ends = (2.0**-25, 1.0 - 2.0**-25)
    if scheme == "mode":
        return min(u + mode_scale * (u - math.sin(math.pi * u / 2) ** 2) for u in ends)
    if scheme == "cosmap":
        return 1.0 / (math.tan(math.pi * ends[1] / 2) + 1.0)
    return ends[0]


def sample_sigmas(shape: Shape, *, scheme: str = "logit_normal", logit_mean: float = 0.0, logit_std: float = 1.0,
                  mode_scale: float = 1.29, shift: float = 1.0, device: Device | None = None, seed: Seed = None,
                  generator: torch.Generator | None = None, stream: int | None = None,
                  backend: str = "auto", global_shape: Shape | None = None,
                  global_offset: Shape | None = None) -> torch.Tensor:
    """Flow-matching noise levels σ in (0, 1], float32, drawn on ``device`` with no host sync.

    Every σ is strictly above 0; it may round to 1.0 in float32 (from 1 − 2**-25). The recipe's arguments
    are refused where a draw could leave that range: ``mode_scale`` outside [−1, 2/(π − 2)],
    ``|logit_mean| + 5.8·logit_std`` above 87, a ``shift`` small enough to underflow σ.

    σ = 1 − u for the scheme's u, then SD3's time shift σ' = s·σ / (1 + (s − 1)·σ): the continuum of
    what diffusers' SD3/Flux scripts draw, σ = sigmas[⌊u·T⌋] of the flow-matching scheduler's σ table,
    which runs from 1 down to 1/T (so a positive ``logit_mean`` favours low noise there as here).
    ``seed``, ``generator`` and ``stream`` as in :func:`q_sample`.

    ``global_shape`` / ``global_offset``: ``shape`` is the block of a global batch's σ at that offset (the
    data's global shape and offset may be given: their leading dims are σ's). Each σ is that of its global
    sample, so every context-parallel rank of a sample draws the same σ and a data-parallel replica the σ
    of its own samples, with nothing broadcast.
    """
    size = _shape(shape)
    block = sharding.leading_block(size, global_shape, global_offset)
    recipe = _recipe(scheme, logit_mean, logit_std, mode_scale)
    shift = _check_number(shift, "shift", positive=True)
    smallest = time_shift(_smallest_complement(*recipe), shift)
    if smallest < FLOAT32_TINY:
        raise ValueError(f"shift={shift} with this scheme can give σ = {smallest:.3g}, which float32 cannot hold "
                         f"above 0 (its smallest normal value is {FLOAT32_TINY:.3g}); use a larger shift")
    words, normals = _pick(size, block, seed, generator, stream, device, backend, scheme)
    sigma = _complement(words, normals, *recipe)
    if shift != 1.0:
        sigma = time_shift(sigma, shift)
    return sigma.to(torch.float32)


# diffusers' SD3/Flux training scripts pass one ``--weighting_scheme`` to two places:
# compute_density_for_timestep_sampling draws u from "logit_normal" or "mode" and uniformly for every other
# name, and compute_loss_weighting_for_sd3 weights the loss for "sigma_sqrt" and "cosmap" only. So the
# script's "cosmap" means a uniform draw and a cosmap weighting, never the cosmap density as well.
SCRIPT_WEIGHTING_SCHEMES = {
    "logit_normal": ("logit_normal", None),
    "mode": ("mode", None),
    "cosmap": ("uniform", "cosmap"),
    "sigma_sqrt": ("uniform", "sigma_sqrt"),
    "none": ("uniform", None),
}


def script_recipe(weighting_scheme: str) -> tuple[str, str | None]:
    """``(scheme, weighting)`` for diffusers' ``--weighting_scheme``: pass ``scheme`` to :func:`sample_sigmas`
    (or :func:`sample_timesteps`) and ``weighting`` to ``diffusion_loss``, and a step draws and weighs as
    the script does. ``sample_sigmas(scheme="cosmap")`` draws from SD3's cosmap density instead, which the
    scripts never do; with ``weighting="cosmap"`` as well it would apply cosmap twice."""
    if weighting_scheme not in SCRIPT_WEIGHTING_SCHEMES:
        raise ValueError(f"unknown weighting_scheme {weighting_scheme!r}; diffusers' scripts take "
                         f"{', '.join(SCRIPT_WEIGHTING_SCHEMES)}")
    return SCRIPT_WEIGHTING_SCHEMES[weighting_scheme]


def time_shift(sigma: SigmaValue, shift: float) -> SigmaValue:
    """SD3's time shift of a noise level: s·σ / (1 + (s − 1)·σ)."""
    return shift * sigma / (1.0 + (shift - 1.0) * sigma)


def sample_timesteps(shape: Shape, T: int, *, scheme: str = "uniform", logit_mean: float = 0.0,
                     logit_std: float = 1.0, mode_scale: float = 1.29, device: Device | None = None,
                     seed: Seed = None, generator: torch.Generator | None = None,
                     stream: int | None = None, backend: str = "auto", global_shape: Shape | None = None,
                     global_offset: Shape | None = None) -> torch.Tensor:
    """Integer timesteps in [0, T), int64, drawn on ``device`` with no host sync.

    ``"uniform"`` is t = ⌊word·T / 2**32⌋ (exact integer arithmetic; within T / 2**32 of uniform);
    the other schemes take t = ⌊u·T⌋ as diffusers' scripts do (``(u * num_train_timesteps).long()``).
    ``global_shape`` / ``global_offset`` as in :func:`sample_sigmas`.
    """
    size = _shape(shape)
    block = sharding.leading_block(size, global_shape, global_offset)
    try:
        steps = checks.check_int(T, "T")
    except TypeError:
        steps = 0
    if not 1 <= steps < 2**31:
        # Below 2**31 the product word·T fits int64: the uniform draw stays exact.
        raise ValueError(f"T must be a positive int below 2**31 (the number of timesteps), got {T!r}")
    T = steps
    if scheme == "uniform":
        words, _ = _pick(size, block, seed, generator, stream, device, backend, "uniform")
        return (cast(torch.Tensor, words) * T) >> 32
    recipe = _recipe(scheme, logit_mean, logit_std, mode_scale)
    words, normals = _pick(size, block, seed, generator, stream, device, backend, scheme)
    # ⌊u'·T⌋ = T − ⌈(1 − u')·T⌉ for an integer T, and 1 − u' lies in (0, 1]: t in [0, T) with no clamp,
    # where u'·T itself can round up to T (u' = sigmoid(z) is 1.0 in float64 from z ≈ 37).
    return T - torch.ceil(_complement(words, normals, *recipe) * T).to(torch.int64)
