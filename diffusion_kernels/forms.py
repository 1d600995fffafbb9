"""The noising forms: per-row coefficient tables for the kernel and the textbook formula for the reference.

Every public noising call is out = a[row]·x + b[row]·ε (and v = c[row]·x + d[row]·ε on request);
a form says which row each slice of x reads and how the tables are made.
"""
from __future__ import annotations

import dataclasses

import torch

from . import checks, reference, transfer, user_tables
from .checks import clamped
from .schedules import NoiseSchedule


def compiling() -> bool:
    return torch.compiler.is_compiling()


@dataclasses.dataclass
class Form:
    """One noising form: per-row coefficient tables for the kernel and the textbook formula for the reference."""

    index: torch.Tensor  # int64, shape () or a leading prefix of x's shape: which table row each slice uses
    tables: object  # device -> (a, b): out = a·x + b·ε
    velocity_tables: object  # device -> (c, d): v = c·x + d·ε, or None when the form has no v-target
    reference: object  # (x, ε) -> out
    reference_velocity: object  # (x, ε) -> v
    check_index: bool = False  # a GPU index tensor is range-checked by the kernel (CPU ones on the host)
    inputs: tuple = ()  # the tensors the tables come from (a learned ᾱ, σ): what a transform may wrap
    # What the tables mean to a loss (objectives.py): "ddpm" (sqrt(ᾱ), sqrt(1 − ᾱ)), "flow" (1 − σ, σ),
    # "edm" (1, σ), or "" for a form with no training objective of its own (a forward step).
    objective: str = ""


raw_tables = user_tables.raw_tables
validated = user_tables.validated


def ddpm_form(x, t, schedule, *, check_t: bool, noise=None) -> Form:
    alpha_bars = checks.alpha_bars_of(schedule)
    if not isinstance(schedule, NoiseSchedule):
        validated(alpha_bars)
    checks.check_devices(x, noise, alpha_bars, t)
    index = checks.check_t(t, x, alpha_bars.numel(), check_range=check_t and not compiling())
    return ddpm_form_of(index, schedule, alpha_bars, check_t)


def ddpm_form_of(index: torch.Tensor, schedule, alpha_bars: torch.Tensor, check_t: bool) -> Form:
    """The DDPM form of a checked ``index`` (int64, shape () or a prefix of x's) into ``schedule``'s
    ``alpha_bars``."""
    if isinstance(schedule, NoiseSchedule):
        tables, velocity_tables = schedule.coefficient_tables, schedule.velocity_tables
    else:
        def tables(device):
            return raw_tables(alpha_bars, device)

        def velocity_tables(device):
            a, b = raw_tables(alpha_bars, device)
            return -b, a
    T = alpha_bars.numel()
    return Form(index, tables, velocity_tables,
                lambda x0, eps: reference.q_sample(x0, clamped(index, T), alpha_bars, eps),
                lambda x0, eps: reference.velocity(x0, clamped(index, T), alpha_bars, eps), check_index=check_t,
                inputs=(alpha_bars,), objective="ddpm")


def table_form(x, t, sqrt_ab: torch.Tensor, sqrt_1m_ab: torch.Tensor, *, check_t: bool = True,
               noise=None) -> Form:
    """The DDPM form from a codebase's own sqrt(ᾱ) and sqrt(1 − ᾱ) tables (float32 buffers made in float64).

    Using them as they are keeps that codebase's numbers: rebuilding ᾱ from a
    float32 ᾱ buffer would lose 1 − ᾱ's precision near t = 0.
    """
    checks.check_devices(x, noise, sqrt_ab, t)
    index = checks.check_t(t, x, sqrt_ab.numel(), check_range=check_t and not compiling())

    def tables(device):
        return (transfer.to_device(sqrt_ab, device, torch.float32),
                transfer.to_device(sqrt_1m_ab, device, torch.float32))

    def velocity_tables(device):
        a, b = tables(device)
        return -b, a

    def gathered(x0):
        compute = torch.promote_types(x0.dtype, torch.float32)
        idx = clamped(index, sqrt_ab.numel()).to(sqrt_ab.device)
        return (reference.broadcast_t(sqrt_ab[idx], x0.ndim).to(x0.device, compute),
                reference.broadcast_t(sqrt_1m_ab[idx], x0.ndim).to(x0.device, compute), compute)

    def textbook(x0, eps):
        a, b, compute = gathered(x0)
        return (a * x0.to(compute) + b * eps.to(compute)).to(x0.dtype)

    def textbook_velocity(x0, eps):
        a, b, compute = gathered(x0)
        return (a * eps.to(compute) - b * x0.to(compute)).to(x0.dtype)

    return Form(index, tables, velocity_tables, textbook, textbook_velocity, check_index=check_t,
                 inputs=(sqrt_ab, sqrt_1m_ab), objective="ddpm")


FLOAT32_MAX = torch.finfo(torch.float32).max


def sigma_form(x, sigma, *, lo: float, hi: float | None, name: str, check: bool, signal, velocity):
    """Per-row coefficient tables from a continuous noise level σ (flow matching, EDM)."""
    if isinstance(sigma, (int, float)) and not isinstance(sigma, bool):
        sigma = torch.tensor(float(sigma), dtype=torch.float64)
    checks.check_plain(sigma, "sigma")
    if not isinstance(sigma, torch.Tensor) or not sigma.is_floating_point():
        raise TypeError(f"sigma must be a float or a floating-point tensor, got "
                        f"{sigma.dtype if isinstance(sigma, torch.Tensor) else type(sigma).__name__}")
    if sigma.ndim > x.ndim or tuple(sigma.shape) != tuple(x.shape[: sigma.ndim]):
        raise ValueError(f"sigma of shape {tuple(sigma.shape)} does not fit x0 of shape {tuple(x.shape)}: it must "
                         "be a scalar or have a shape that is a leading prefix of x0's")
    checks.check_devices(x, sigma)
    if check and not compiling():
        checks.check_sigma(sigma, lo, hi, name)
    rows = max(sigma.numel(), 1)
    # The rows index themselves; made where the kernel runs, so no host-to-device copy is needed.
    index = (torch.arange(rows, device=x.device).reshape(sigma.shape) if sigma.numel()
             else torch.zeros(sigma.shape, dtype=torch.long, device=x.device))

    def levels(device, dtype=None):
        s = transfer.to_device(sigma, device, dtype).reshape(-1)
        # An empty batch still reads one row (the index and every gather take at least one, as a
        # schedule's table always has): σ = 1 there, finite in every coefficient and weighting.
        return s if s.numel() else torch.ones(1, dtype=s.dtype, device=s.device)

    def tables(device):
        s = levels(device, torch.float64)
        return signal(s).to(torch.float32), s.to(torch.float32)

    def velocity_tables(device):
        s = levels(device)
        return torch.full_like(s, -1.0, dtype=torch.float32), torch.ones_like(s, dtype=torch.float32)

    return index, tables, (velocity_tables if velocity else None)


def alphas_of(schedule) -> torch.Tensor:
    if isinstance(schedule, NoiseSchedule):
        return schedule.alphas
    ab = validated(checks.alpha_bars_of(schedule))
    alphas = ab / torch.cat([ab.new_ones(1), ab[:-1]])
    if not compiling():
        # A step is defined only where ᾱ does not grow and is not 0 before its last entry (0/0).
        checks.check_in_range(alphas, 0.0, 1.0, "the steps need a non-increasing alpha_bars, zero at most at its "
                                                "end: each α_t = ᾱ_t / ᾱ_(t−1) must lie in")
    return alphas
