"""The textbook formulas in plain PyTorch, and the kernel's noise stream re-derived.

``q_sample`` is the reference the tests and benchmarks compare against: gather
ᾱ[t], take square roots, multiply, add. ``philox_normal`` recomputes the noise
the Triton kernel draws, from the same (seed, stream, step, position) contract
documented in ``kernels/philox_normal.py``: the Philox integers bit for bit,
the normals to float32 math-library accuracy.
"""
from __future__ import annotations

import functools
import math

from collections.abc import Callable, Sequence
from typing import Any, Union

import torch

from .hints import Device, Sigma, Timesteps

# A 32- or 64-bit word: an int, or an int64 tensor holding it (a seed read on the device).
Word = Union[int, torch.Tensor]
# A drawer of the stream's normals with philox_normal's signature (the compiled CPU loop's).
Drawer = Callable[..., torch.Tensor]

_MASK32 = 0xFFFFFFFF
_PHILOX_ROUND_A = 0xD2511F53
_PHILOX_ROUND_B = 0xCD9E8D57
_PHILOX_KEY_A = 0x9E3779B9
_PHILOX_KEY_B = 0xBB67AE85


def _mul_hi_lo(a: int, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """High and low 32 bits of a * x for a 32-bit constant a and uint32 values x (held in int64).

    The full product needs 64 unsigned bits, more than int64 holds, so x is
    split in 16-bit halves: a·x = a·x_hi·2^16 + a·x_lo with each part < 2^48.
    """
    x_hi, x_lo = x >> 16, x & 0xFFFF
    p_hi, p_lo = a * x_hi, a * x_lo
    hi = (p_hi + (p_lo >> 16)) >> 16
    lo = ((p_hi << 16) + p_lo) & _MASK32
    return hi & _MASK32, lo


def philox4x32(c0: Word, c1: Word, c2: Word, c3: Word, k0: Word, k1: Word, rounds: int = 10
               ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """Philox4x32 (Salmon et al. 2011) on int64 tensors holding uint32 values.

    The key words may be ints or int64 tensors (a seed read on the device).
    """
    w0, w1, w2, w3 = torch.broadcast_tensors(*(torch.as_tensor(c, dtype=torch.int64) & _MASK32
                                               for c in (c0, c1, c2, c3)))
    k0, k1 = k0 & _MASK32, k1 & _MASK32
    for _ in range(rounds):
        hi_b, lo_b = _mul_hi_lo(_PHILOX_ROUND_B, w2)
        hi_a, lo_a = _mul_hi_lo(_PHILOX_ROUND_A, w0)
        w0, w1, w2, w3 = hi_b ^ w1 ^ k0, lo_b, hi_a ^ w3 ^ k1, lo_a
        k0 = (k0 + _PHILOX_KEY_A) & _MASK32
        k1 = (k1 + _PHILOX_KEY_B) & _MASK32
    return w0, w1, w2, w3


def _box_muller(ra: torch.Tensor, rb: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    # Same bit selection and constants as kernels/box_muller.py::box_muller.
    u1 = ((ra >> 9).to(torch.float32) + 0.5) * 2.0**-23
    u2 = (rb >> 8).to(torch.float32) * 2.0**-24
    radius = torch.sqrt(-2.0 * torch.log(u1))
    theta = u2 * (2 * math.pi) - math.pi
    return radius * torch.cos(theta), radius * torch.sin(theta)


OFFSET_STEP = 0xFFFFFFFF  # the step word of offset noise (kernels/philox_normal.py::OFFSET_STEP)
PERTURB_STEP = 0xFFFFFFFD  # the step word of input perturbation's ε′ (kernels/philox_normal.py::PERTURB_STEP)
SAMPLING_STEP = 0xFFFFFFFE  # the step word of the per-sample draws (kernels/philox_normal.py::SAMPLING_STEP)


def philox_normal(seed: Word, shape: Sequence[int], *, stream: int = 0, step: int = 0, offset: int = 0,
                  device: Device | None = None, dtype: torch.dtype = torch.float32) -> torch.Tensor:
    """The ε the fused kernel draws for a tensor of ``shape`` with ``seed``.

    Element i (row-major logical position, shifted by ``offset``) is lane i % 4
    of Philox4x32-10 with key = (seed low 32 bits, seed high 32 bits) and
    counter = (q low 32 bits, q high 32 bits, stream, step), q = i // 4; the
    lanes are paired by Box–Muller as (0, 1) and (2, 3). ``seed`` is an int in
    [0, 2**64) or an int64 tensor holding its bits.
    """
    shape = torch.Size(shape)
    n = shape.numel()
    if n == 0:
        return torch.empty(shape, device=device, dtype=dtype)
    first_quad, last_quad = offset // 4, (offset + n - 1) // 4
    quads = torch.arange(first_quad, last_quad + 1, dtype=torch.int64, device=device)
    lanes = _quad_normals(seed, quads, stream, step).reshape(-1)
    start = offset - first_quad * 4
    return lanes[start:start + n].reshape(shape).to(dtype)


def _quad_normals(seed: Word, quads: torch.Tensor, stream: int, step: int) -> torch.Tensor:
    """The four normals of each Philox quad in ``quads`` (int64, 1-D): (len(quads), 4), lane by lane."""
    if isinstance(seed, torch.Tensor):
        seed = seed.to(device=quads.device, dtype=torch.int64).reshape(())
    r0, r1, r2, r3 = philox4x32(quads & _MASK32, quads >> 32, torch.full_like(quads, stream),
                                torch.full_like(quads, step & _MASK32), seed & _MASK32, seed >> 32)
    n0, n1 = _box_muller(r0, r1)
    n2, n3 = _box_muller(r2, r3)
    return torch.stack([n0, n1, n2, n3], dim=1)


def philox_normal_at(seed: Word, positions: torch.Tensor, *, stream: int = 0, step: int = 0,
                     dtype: torch.dtype = torch.float32) -> torch.Tensor:
    """The stream's normal at each int64 logical position in ``positions`` (any shape, any order): the
    value :func:`philox_normal` gives element i of a tensor at i = position."""
    quads = (positions >> 2).reshape(-1)
    lane = (positions & 3).reshape(-1)
    if quads.numel() == 0:
        return torch.empty(positions.shape, device=positions.device, dtype=dtype)
    lanes = _quad_normals(seed, quads, stream, step)
    return lanes.gather(1, lane[:, None]).reshape(positions.shape).to(dtype)


def block_drawer(block: Any, draw_at: Callable[..., torch.Tensor] | None = None, *,
                 device: torch.device | str | None = None) -> Drawer:
    """A drawer with :func:`philox_normal`'s signature for a local block of a global tensor
    (sharding.Block): asked for the block's shape, or a leading part of it (offset noise's rows),
    it draws the normals of those elements' global positions. ``draw_at(seed, block, stream=, step=,
    dtype=)`` draws a block (default: :func:`philox_normal_at` over its positions on ``device``)."""
    from . import sharding

    def at_positions(seed: Word, sub: Any, *, stream: int = 0, step: int = 0,
                     dtype: torch.dtype = torch.float32) -> torch.Tensor:
        return philox_normal_at(seed, sharding.positions(sub, device), stream=stream, step=step, dtype=dtype)

    drawer = draw_at or at_positions

    def draw(seed: Word, shape: Sequence[int], *, stream: int = 0, step: int = 0, offset: int = 0,
             dtype: torch.dtype = torch.float32) -> torch.Tensor:
        shape = tuple(shape)
        if offset or shape != block.shape[:len(shape)]:
            raise ValueError(f"a block's drawer draws its block {block.shape} or a leading part of it, "
                             f"not shape {shape} at offset {offset}")
        return drawer(seed, block.leading(len(shape)), stream=stream, step=step, dtype=dtype)

    return draw


def drawn_noise(seed: Word, shape: Sequence[int], rows_shape: Sequence[int] = (), *, stream: int = 0,
                offset_strength: float = 0.0, device: Device | None = None, dtype: torch.dtype = torch.float32,
                draw: Drawer | None = None) -> torch.Tensor:
    """The kernel's ε for ``shape``, plus ``offset_strength`` × one normal per row of ``rows_shape``.

    ``rows_shape`` is the shape of ``t`` (a leading prefix of ``shape``); row r's
    offset normal is element r of the stream's OFFSET_STEP subsequence. ``draw``
    replaces :func:`philox_normal` (same stream): the compiled CPU drawer.
    """
    if draw is None:
        draw = functools.partial(philox_normal, device=device)
    eps = draw(seed, shape, stream=stream, dtype=dtype)
    if offset_strength:
        rows_shape = torch.Size(rows_shape)
        offsets = draw(seed, rows_shape, stream=stream, step=OFFSET_STEP, dtype=dtype)
        eps = eps + offset_strength * broadcast_t(offsets, len(shape))
    return eps


def perturbed_noise(eps: torch.Tensor, seed: Word, perturbation: float, *, stream: int = 0,
                    draw: Drawer | None = None) -> torch.Tensor:
    """ε + perturbation·ε′, ε′ the stream's PERTURB_STEP normals over ε's shape: what x_t is built from
    under input perturbation (the loss target stays ε)."""
    if draw is None:
        draw = functools.partial(philox_normal, device=eps.device)
    return eps + perturbation * draw(seed, eps.shape, stream=stream, step=PERTURB_STEP, dtype=eps.dtype).to(eps.device)


def broadcast_t(t: torch.Tensor, ndim: int) -> torch.Tensor:
    """View a per-row value of shape t.shape as t.shape + (1,) * (ndim - t.ndim)."""
    return t.reshape(t.shape + (1,) * (ndim - t.ndim))


def q_sample(x0: torch.Tensor, t: Timesteps, alpha_bars: torch.Tensor, noise: torch.Tensor | None = None,
             seed: int | None = None, *, stream: int = 0) -> torch.Tensor:
    """x_t = sqrt(ᾱ[t])·x0 + sqrt(1 − ᾱ[t])·ε, eagerly, in plain PyTorch.

    ``t`` is an int or an integer tensor whose shape is empty or a leading
    prefix of ``x0.shape``. Without ``noise``, ε is ``torch.randn_like(x0)``, or
    the kernel's Philox stream when ``seed`` is given. The arithmetic runs in
    ``x0``'s dtype promoted to at least float32 and the result has ``x0``'s dtype.
    """
    compute = torch.promote_types(x0.dtype, torch.float32)
    t = torch.as_tensor(t, device=alpha_bars.device)
    ab = broadcast_t(alpha_bars[t], x0.ndim)
    sqrt_ab = ab.sqrt().to(device=x0.device, dtype=compute)
    sqrt_1m_ab = (1.0 - ab).sqrt().to(device=x0.device, dtype=compute)
    if noise is None:
        if seed is None:
            noise = torch.randn_like(x0, dtype=compute)
        else:
            noise = philox_normal(seed, x0.shape, stream=stream, device=x0.device, dtype=compute)
    return (sqrt_ab * x0.to(compute) + sqrt_1m_ab * noise.to(compute)).to(x0.dtype)


def forward_step(x_prev: torch.Tensor, t: Timesteps, alphas: torch.Tensor, noise: torch.Tensor | None = None,
                 seed: int | None = None, *, stream: int = 0, step: int = 0, draw: Drawer | None = None
                 ) -> torch.Tensor:
    """One forward step, x_t = sqrt(α[t])·x_{t−1} + sqrt(1 − α[t])·ε: q_sample's formula on the α table.

    ``draw`` replaces :func:`philox_normal` (same stream) for the noise: the compiled CPU drawer."""
    if noise is None and seed is not None:
        draw = draw or functools.partial(philox_normal, device=x_prev.device)
        noise = draw(seed, x_prev.shape, stream=stream, step=step,
                     dtype=torch.promote_types(x_prev.dtype, torch.float32))
    return q_sample(x_prev, t, alphas, noise)


def forward_trajectory(x0: torch.Tensor, alphas: torch.Tensor, t_end: int, *, seed: int, stream: int = 0,
                       snapshots: Sequence[int] = (), draw: Drawer | None = None
                       ) -> tuple[torch.Tensor, dict[int, torch.Tensor]]:
    """The forward steps 0 … t_end one at a time, step s using the stream's step word s.

    Computes in float32 (float64 for float64 input) and returns
    (x_{t_end}, {step: x_step for step in snapshots}) in x0's dtype.
    """
    compute = torch.promote_types(x0.dtype, torch.float32)
    x = x0.to(compute)
    kept = {}
    for s in range(t_end + 1):
        x = forward_step(x, s, alphas, seed=seed, stream=stream, step=s, draw=draw)
        if s in snapshots:
            kept[s] = x.to(x0.dtype)
    return x.to(x0.dtype), kept


def velocity(x0: torch.Tensor, t: Timesteps, alpha_bars: torch.Tensor, noise: torch.Tensor) -> torch.Tensor:
    """The v-target v = sqrt(ᾱ[t])·ε − sqrt(1 − ᾱ[t])·x0 (Salimans & Ho 2022), eagerly."""
    compute = torch.promote_types(x0.dtype, torch.float32)
    t = torch.as_tensor(t, device=alpha_bars.device)
    ab = broadcast_t(alpha_bars[t], x0.ndim)
    sqrt_ab = ab.sqrt().to(device=x0.device, dtype=compute)
    sqrt_1m_ab = (1.0 - ab).sqrt().to(device=x0.device, dtype=compute)
    return (sqrt_ab * noise.to(compute) - sqrt_1m_ab * x0.to(compute)).to(x0.dtype)


def _sigma_like(sigma: Sigma, x0: torch.Tensor, compute: torch.dtype) -> torch.Tensor:
    sigma = torch.as_tensor(sigma, dtype=torch.float64)
    return broadcast_t(sigma, x0.ndim).to(device=x0.device, dtype=compute)


def flow_match_sample(x0: torch.Tensor, sigma: Sigma, noise: torch.Tensor) -> torch.Tensor:
    """Rectified-flow / flow-matching interpolation x_σ = (1 − σ)·x0 + σ·ε, eagerly."""
    compute = torch.promote_types(x0.dtype, torch.float32)
    s = _sigma_like(sigma, x0, compute)
    return ((1.0 - s) * x0.to(compute) + s * noise.to(compute)).to(x0.dtype)


def edm_sample(x0: torch.Tensor, sigma: Sigma, noise: torch.Tensor) -> torch.Tensor:
    """EDM / k-diffusion noising x_σ = x0 + σ·ε, eagerly."""
    compute = torch.promote_types(x0.dtype, torch.float32)
    s = _sigma_like(sigma, x0, compute)
    return (x0.to(compute) + s * noise.to(compute)).to(x0.dtype)
