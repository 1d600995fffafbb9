"""Noise schedules, computed in float64.

A schedule is its table of ᾱ_t = Π_{s≤t} (1 − β_s) for t = 0 … T−1; every other
table (β, α, ᾱ_prev, SNR) follows from it. The constructors reproduce the
formulas of DDPM (linear), improved DDPM (cosine), Stable Diffusion
(scaled_linear), diffusers' sigmoid betas and Lin et al.'s zero-terminal-SNR
rescaling. Kernels read float32 square-root tables derived here in float64
(``coefficient_tables``), so no precision is lost before the multiply.
"""
from __future__ import annotations

import math
import numbers
from collections.abc import Sequence
from typing import TypeAlias

import numpy as np
import torch

from .hints import Device

_F64 = torch.float64


def _as_float64_vector(values: object, name: str) -> torch.Tensor:
    if isinstance(values, (str, bytes)):
        raise TypeError(f"{name} must be a 1-D sequence of real numbers, got {type(values).__name__}")
    try:
        # Through numpy, so a list of Python floats stays float64 (torch would make float32 of it).
        tensor = values if isinstance(values, torch.Tensor) else torch.as_tensor(np.asarray(values))
    except (TypeError, ValueError, RuntimeError) as error:
        raise TypeError(f"{name} must be a 1-D sequence of real numbers, got {type(values).__name__}: {error}") \
            from None
    if tensor.dtype == torch.bool or not (tensor.is_floating_point() or tensor.dtype in
                                          (torch.int8, torch.int16, torch.int32, torch.int64, torch.uint8)):
        raise TypeError(f"{name} must be real numbers, got dtype {tensor.dtype}")
    # A copy, never a view of the caller's tensor: the schedule's cached tables must not go stale.
    tensor = tensor.detach().to(device="cpu", dtype=_F64, copy=True)
    if tensor.ndim != 1 or tensor.numel() == 0:
        raise ValueError(f"{name} must be a non-empty 1-D sequence, got shape {tuple(tensor.shape)}")
    _check_each(tensor, torch.isfinite(tensor), name, "finite")
    return tensor


def _check_each(values: torch.Tensor, ok: torch.Tensor, name: str, rule: str) -> None:
    """Raise naming the first entry of ``values`` where ``ok`` is false."""
    if not bool(ok.all()):
        i = int((~ok).nonzero()[0, 0])
        raise ValueError(f"{name} must be {rule}; {name}[{i}] = {float(values[i])!r}")


def _check_number(value: object, name: str, *, lo: float | None = None, hi: float | None = None,
                  open_lo: bool = False) -> float:
    """A constructor's real-valued parameter, finite and within its range."""
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise TypeError(f"{name} must be a real number, got {type(value).__name__}")
    value = float(value)
    if not math.isfinite(value):
        raise ValueError(f"{name} must be finite, got {value}")
    if lo is not None and (value <= lo if open_lo else value < lo):
        raise ValueError(f"{name} must be {'>' if open_lo else '>='} {lo}, got {value}")
    if hi is not None and value > hi:
        raise ValueError(f"{name} must be <= {hi}, got {value}")
    return value


def _check_alpha_bars(alpha_bars: torch.Tensor) -> None:
    """ᾱ of a schedule built from ᾱ alone: in [0, 1] and non-increasing (each step's α = ᾱ_t / ᾱ_{t−1}
    lies in [0, 1]), and zero only at its last step (after a zero, α would be 0/0)."""
    _check_each(alpha_bars, (alpha_bars >= 0) & (alpha_bars <= 1), "alpha_bars", "in [0, 1]")
    prev = torch.cat([alpha_bars.new_ones(1), alpha_bars[:-1]])
    _check_each(alpha_bars, alpha_bars <= prev, "alpha_bars", "non-increasing (each step adds noise)")
    zero_before_end = (alpha_bars[:-1] == 0)
    _check_each(alpha_bars[:-1], ~zero_before_end, "alpha_bars",
                "zero at most at its last step (a step after ᾱ = 0 is undefined)")


def _check_betas_range(beta_start: float, beta_end: float) -> tuple[float, float]:
    beta_start = _check_number(beta_start, "beta_start", lo=0.0, hi=1.0)
    beta_end = _check_number(beta_end, "beta_end", lo=0.0, hi=1.0)
    return beta_start, beta_end


def _check_T(T: int) -> int:
    if isinstance(T, bool) or not isinstance(T, int) or T < 1:
        raise ValueError(f"T must be a positive int, got {T!r}")
    return T


class NoiseSchedule:
    """A diffusion noise schedule: β_t, α_t = 1 − β_t, ᾱ_t = Π α_s, for t in [0, T).

    Build one with a constructor (``linear``, ``cosine``, ``scaled_linear``,
    ``sigmoid``, ``from_betas``, ``from_alpha_bars``). Every table is a float64
    CPU tensor of length ``T``.
    """

    def __init__(self, alpha_bars: torch.Tensor | Sequence[float], *, betas: torch.Tensor | None = None,
                 name: str = "custom") -> None:
        alpha_bars = _as_float64_vector(alpha_bars, "alpha_bars")
        if betas is None:
            _check_alpha_bars(alpha_bars)
            prev = torch.cat([alpha_bars.new_ones(1), alpha_bars[:-1]])
            betas = 1.0 - alpha_bars / prev
        self._alpha_bars = alpha_bars
        self._betas = betas
        self.name = name
        self._tables: dict[tuple[str, torch.device], tuple[torch.Tensor, torch.Tensor]] = {}

    # ---- constructors -------------------------------------------------------------
    @classmethod
    def from_betas(cls, betas: torch.Tensor | Sequence[float], *, name: str = "custom") -> "NoiseSchedule":
        betas = _as_float64_vector(betas, "betas")
        _check_each(betas, (betas >= 0) & (betas <= 1), "betas", "in [0, 1]")
        return cls(torch.cumprod(1.0 - betas, dim=0), betas=betas, name=name)

    @classmethod
    def from_alpha_bars(cls, alpha_bars: torch.Tensor | Sequence[float], *, name: str = "custom") -> "NoiseSchedule":
        return cls(alpha_bars, name=name)

    @classmethod
    def linear(cls, T: int = 1000, beta_start: float = 1e-4, beta_end: float = 0.02) -> "NoiseSchedule":
        """DDPM's linear betas (Ho et al. 2020)."""
        T = _check_T(T)
        beta_start, beta_end = _check_betas_range(beta_start, beta_end)
        return cls.from_betas(torch.linspace(beta_start, beta_end, T, dtype=_F64), name="linear")

    @classmethod
    def scaled_linear(cls, T: int = 1000, beta_start: float = 0.00085, beta_end: float = 0.012) -> "NoiseSchedule":
        """Stable Diffusion's betas: linear in sqrt(β)."""
        T = _check_T(T)
        beta_start, beta_end = _check_betas_range(beta_start, beta_end)
        sqrt_betas = torch.linspace(beta_start**0.5, beta_end**0.5, T, dtype=_F64)
        return cls.from_betas(sqrt_betas**2, name="scaled_linear")

    @classmethod
    def cosine(cls, T: int = 1000, s: float = 0.008, max_beta: float = 0.999) -> "NoiseSchedule":
        """Nichol & Dhariwal's cosine schedule, ᾱ(u) = cos²((u + s)/(1 + s) · π/2).

        β_t = min(1 − ᾱ((t+1)/T) / ᾱ(t/T), max_beta), as in improved-diffusion and
        diffusers' ``squaredcos_cap_v2``.
        """
        T = _check_T(T)
        s = _check_number(s, "s", lo=0.0)
        max_beta = _check_number(max_beta, "max_beta", lo=0.0, hi=1.0, open_lo=True)
        u = torch.arange(T + 1, dtype=_F64) / T
        f = torch.cos((u + s) / (1 + s) * math.pi / 2) ** 2
        betas = torch.clamp(1.0 - f[1:] / f[:-1], max=max_beta)
        return cls.from_betas(betas, name="cosine")

    @classmethod
    def sigmoid(cls, T: int = 1000, beta_start: float = 1e-4, beta_end: float = 0.02,
                start: float = -6.0, end: float = 6.0) -> "NoiseSchedule":
        """diffusers' ``sigmoid`` betas: β = σ(linspace(start, end, T)) · (β_end − β_start) + β_start."""
        T = _check_T(T)
        beta_start, beta_end = _check_betas_range(beta_start, beta_end)
        start, end = _check_number(start, "start"), _check_number(end, "end")
        x = torch.linspace(start, end, T, dtype=_F64)
        return cls.from_betas(torch.sigmoid(x) * (beta_end - beta_start) + beta_start, name="sigmoid")

    @classmethod
    def linear_scaled(cls, T: int = 1000, beta_start: float = 1e-4, beta_end: float = 0.02) -> "NoiseSchedule":
        """Linear betas scaled by 1000/T, so any T spans DDPM's noise range
        (denoising-diffusion-pytorch's ``linear_beta_schedule``)."""
        T = _check_T(T)
        beta_start, beta_end = _check_betas_range(beta_start, beta_end)
        scale = 1000 / T
        return cls.from_betas(torch.linspace(scale * beta_start, scale * beta_end, T, dtype=_F64), name="linear_scaled")

    @classmethod
    def sigmoid_alpha_bar(cls, T: int = 1000, start: float = -3.0, end: float = 3.0, tau: float = 1.0,
                          max_beta: float = 0.999) -> "NoiseSchedule":
        """ᾱ(u) following a sigmoid between ``start`` and ``end`` with temperature ``tau``
        (Jabri et al. 2022; denoising-diffusion-pytorch's ``sigmoid_beta_schedule``)."""
        T = _check_T(T)
        start, end = _check_number(start, "start"), _check_number(end, "end")
        tau = _check_number(tau, "tau", lo=0.0, open_lo=True)
        max_beta = _check_number(max_beta, "max_beta", lo=0.0, hi=1.0, open_lo=True)
        if not start < end:
            raise ValueError(f"start must be below end, got start={start}, end={end}")
        u = torch.arange(T + 1, dtype=_F64) / T
        v_start = torch.sigmoid(torch.tensor(start / tau, dtype=_F64))
        v_end = torch.sigmoid(torch.tensor(end / tau, dtype=_F64))
        f = (-torch.sigmoid((u * (end - start) + start) / tau) + v_end) / (v_end - v_start)
        betas = torch.clamp(1.0 - f[1:] / f[:-1], min=0.0, max=max_beta)
        return cls.from_betas(betas, name="sigmoid_alpha_bar")

    def rescale_zero_terminal_snr(self) -> "NoiseSchedule":
        """Lin et al. 2023: shift and scale sqrt(ᾱ) so that ᾱ_{T−1} = 0 (zero terminal SNR)."""
        sqrt_ab = self._alpha_bars.sqrt()
        first, last = sqrt_ab[0], sqrt_ab[-1]
        if first == last:
            raise ValueError("cannot rescale a schedule whose ᾱ is constant")
        sqrt_ab = (sqrt_ab - last) * first / (first - last)
        alpha_bars = sqrt_ab**2
        alphas = torch.cat([alpha_bars[:1], alpha_bars[1:] / alpha_bars[:-1]])
        return NoiseSchedule(alpha_bars, betas=1.0 - alphas, name=f"{self.name}+zero_snr")

    # ---- tables -------------------------------------------------------------------
    @property
    def T(self) -> int:
        return self._alpha_bars.numel()

    def __len__(self) -> int:
        return self.T

    @property
    def betas(self) -> torch.Tensor:
        return self._betas.clone()

    @property
    def alphas(self) -> torch.Tensor:
        return 1.0 - self._betas

    @property
    def alpha_bars(self) -> torch.Tensor:
        return self._alpha_bars.clone()

    @property
    def alpha_bars_prev(self) -> torch.Tensor:
        """ᾱ_{t−1}, with ᾱ_{−1} = 1."""
        return torch.cat([self._alpha_bars.new_ones(1), self._alpha_bars[:-1]])

    @property
    def snr(self) -> torch.Tensor:
        """Signal-to-noise ratio ᾱ / (1 − ᾱ)."""
        return self._alpha_bars / (1.0 - self._alpha_bars)

    def _cached(self, kind: str, table: torch.Tensor, device: Device) -> tuple[torch.Tensor, torch.Tensor]:
        key = (kind, device if type(device) is torch.device else torch.device(device))
        tables = self._tables.get(key)
        if tables is None:
            # Made outside inference mode: tables first built under torch.inference_mode() (a preview
            # before training) must still be savable for backward by later calls.
            with torch.inference_mode(False):
                tables = self._tables[key] = coefficient_tables(table, key[1])
        return tables

    def coefficient_tables(self, device: Device) -> tuple[torch.Tensor, torch.Tensor]:
        """float32 (sqrt(ᾱ), sqrt(1 − ᾱ)) on ``device``, derived in float64, cached per device."""
        return self._cached("closed_form", self._alpha_bars, device)

    def velocity_tables(self, device: Device) -> tuple[torch.Tensor, torch.Tensor]:
        """float32 (−sqrt(1 − ᾱ), sqrt(ᾱ)): v = sqrt(ᾱ)·ε − sqrt(1 − ᾱ)·x0 as c·x0 + d·ε."""
        key = ("velocity", torch.device(device))
        if key not in self._tables:
            a, b = self.coefficient_tables(device)
            with torch.inference_mode(False):
                self._tables[key] = (-b, a)
        return self._tables[key]

    def step_tables(self, device: Device) -> tuple[torch.Tensor, torch.Tensor]:
        """float32 (sqrt(α), sqrt(β)) of the single steps on ``device``, cached per device."""
        return self._cached("step", 1.0 - self._betas, device)

    def __repr__(self) -> str:
        ab = self._alpha_bars
        return f"NoiseSchedule({self.name}, T={self.T}, alpha_bar[0]={ab[0]:.6g}, alpha_bar[-1]={ab[-1]:.6g})"


# The kernels clamp t and index a schedule's tables in 32 bits (kernels/tiles.clamped_step).
MAX_STEPS = 2**31 - 1


def checked_steps(steps: int) -> int:
    """``steps``, a table's length, where the kernels can index it (at most MAX_STEPS); else a ValueError."""
    if steps > MAX_STEPS:
        raise ValueError(f"a schedule holds at most {MAX_STEPS} steps (2**31 − 1), got {steps}")
    return steps


def coefficient_tables(alpha_bars: torch.Tensor, device: Device) -> tuple[torch.Tensor, torch.Tensor]:
    """float32 sqrt(ᾱ) and sqrt(1 − ᾱ) on ``device``; differentiable in ``alpha_bars``. At most
    MAX_STEPS entries: the kernels clamp t and index the tables in 32 bits (kernels/tiles.clamped_step)."""
    from .transfer import to_device

    checked_steps(alpha_bars.numel())
    ab64 = alpha_bars.to(_F64)
    return to_device(ab64.sqrt(), device, torch.float32), to_device((1.0 - ab64).sqrt(), device, torch.float32)


# A schedule argument: a NoiseSchedule or a 1-D ᾱ tensor (an alphas_cumprod buffer, a learned schedule).
Schedule: TypeAlias = "NoiseSchedule | torch.Tensor"
