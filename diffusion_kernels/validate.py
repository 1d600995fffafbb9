"""Validation of the fused path on the device at hand: accuracy and noise statistics.

Every statistical check reports a p-value under the hypothesis that the noise
is i.i.d. N(0, 1) and fails below ``ALPHA``. With a fixed seed the outcome is
deterministic; over random seeds each check fails with probability ALPHA.
"""
from __future__ import annotations

import dataclasses
import math

import numpy as np
import scipy.stats
import torch

from . import reference
from .noising.entry import q_sample
from .schedules import NoiseSchedule
from .tolerances import TOLERANCE, excess_error, to_reference

ALPHA = 1e-4


@dataclasses.dataclass
class Check:
    name: str
    value: str
    passed: bool


@dataclasses.dataclass
class Report:
    device: str
    backend: str
    checks: list[Check]

    @property
    def passed(self) -> bool:
        return all(c.passed for c in self.checks)

    def format(self) -> str:
        width = max(len(c.name) for c in self.checks)
        lines = [f"device : {self.device}", f"backend: {self.backend}", ""]
        lines += [f"  {'PASS' if c.passed else 'FAIL'}  {c.name:<{width}}  {c.value}" for c in self.checks]
        lines += ["", f"result : {'PASS' if self.passed else 'FAIL'} ({sum(c.passed for c in self.checks)}"
                      f"/{len(self.checks)} checks)"]
        return "\n".join(lines)


def _p_check(name: str, stat: str, p: float) -> Check:
    return Check(name, f"{stat}, p = {p:.3g}", p >= ALPHA)


def noise_checks(eps: torch.Tensor, label: str = "noise") -> list[Check]:
    """Moments, KS against N(0, 1), lag-1 correlation and 3σ/4σ tail mass of a sample."""
    z = to_reference(eps).flatten().numpy()
    n = z.size
    mean, std = float(z.mean()), float(z.std(ddof=1))
    p_mean = 2 * scipy.stats.norm.sf(abs(mean) * math.sqrt(n))
    chi2 = (n - 1) * std**2
    p_var = 2 * min(scipy.stats.chi2.cdf(chi2, n - 1), scipy.stats.chi2.sf(chi2, n - 1))
    ks = scipy.stats.kstest(z, "norm")
    lag1 = float(np.corrcoef(z[:-1], z[1:])[0, 1])
    p_lag = 2 * scipy.stats.norm.sf(abs(lag1) * math.sqrt(n - 1))
    checks = [
        _p_check(f"{label} mean", f"{mean:+.4f}", p_mean),
        _p_check(f"{label} std", f"{std:.4f}", p_var),
        _p_check(f"{label} KS vs N(0,1)", f"D = {ks.statistic:.4f}", ks.pvalue),
        _p_check(f"{label} lag-1 correlation", f"{lag1:+.4f}", p_lag),
    ]
    for k in (3, 4):
        expected = 2 * scipy.stats.norm.sf(k)
        count = int((np.abs(z) > k).sum())
        p = scipy.stats.binomtest(count, n, expected).pvalue
        checks.append(_p_check(f"{label} tail beyond {k}σ", f"{count / n:.2e} (expect {expected:.2e})", p))
    return checks


def independence_check(a: torch.Tensor, b: torch.Tensor, name: str) -> Check:
    """Correlation of two noise samples that should be independent."""
    x, y = to_reference(a).flatten().numpy(), to_reference(b).flatten().numpy()
    r = float(np.corrcoef(x, y)[0, 1])
    return _p_check(name, f"r = {r:+.4f}", 2 * scipy.stats.norm.sf(abs(r) * math.sqrt(x.size)))


def accuracy_check(x0: torch.Tensor, t, schedule: NoiseSchedule, *, backend: str) -> Check:
    """Given noise: the fused result against the float64 textbook formula."""
    noise = torch.randn(x0.shape, generator=torch.Generator().manual_seed(1)).to(x0.device, x0.dtype)
    out = q_sample(x0, t, schedule, noise, backend=backend)
    expected = reference.q_sample(to_reference(x0), torch.as_tensor(t).cpu(), schedule.alpha_bars,
                                  to_reference(noise))
    err = float((to_reference(out) - expected).abs().max())
    excess = excess_error(out, expected, x0.dtype)
    tol = TOLERANCE[x0.dtype]
    return Check(f"given noise, {str(x0.dtype).replace('torch.', '')}",
                 f"max |err| = {err:.2e} ({excess:.2f} of tolerance rtol={tol['rtol']:g}, atol={tol['atol']:g})",
                 excess <= 1.0)


def closed_form_vs_steps(device: torch.device, schedule: NoiseSchedule, steps, *, copies: int, seed: int,
                         backend: str, image: torch.Tensor | None = None) -> list[Check]:
    """Two-sample KS tests, at each t in ``steps``, of q_sample against the fused step-by-step trajectory,
    and at the first t of the fused trajectory against forward_step applied t + 1 times.

    ``copies`` noisings of one real image (a scikit-learn digit by default)
    each way; every pixel is standardised by its exact mean sqrt(ᾱ_t)·x0 and
    std sqrt(1 − ᾱ_t), so both samples should be the same N(0, 1) sample.
    """
    from . import images
    from .noising.entry import forward_step
    from .trajectory.entry import forward_trajectory

    image = (images.digits(1)[0] if image is None else image).to(device)
    batch = image.expand(copies, *image.shape).contiguous()
    steps = sorted(steps)
    _, stepped = forward_trajectory(batch, schedule, steps[-1], seed=seed, snapshots=steps, backend=backend)
    def standardised(x, t):
        ab = float(schedule.alpha_bars[t])
        return ((to_reference(x) - ab**0.5 * to_reference(image)) / (1 - ab) ** 0.5).flatten().numpy()

    checks = []
    for k, t in enumerate(steps):
        closed = q_sample(batch, t, schedule, seed=seed + 1 + k, backend=backend)
        ks = scipy.stats.ks_2samp(standardised(closed, t), standardised(stepped[t], t))
        checks.append(_p_check(f"closed form vs steps, t={t}", f"D = {ks.statistic:.4f}", ks.pvalue))
    # The fused loop against forward_step called once per step (one launch each), at the first t.
    t = steps[0]
    x = batch
    for s in range(t + 1):
        x = forward_step(x, s, schedule, seed=seed + 10_000 + s, backend=backend)
    ks = scipy.stats.ks_2samp(standardised(x, t), standardised(stepped[t], t))
    checks.append(_p_check(f"fused steps vs forward_step, t={t}", f"D = {ks.statistic:.4f}", ks.pvalue))
    return checks


def run(device: torch.device, *, dtypes=(torch.float32, torch.bfloat16, torch.float16), numel: int = 1 << 16,
        seed: int = 0, backend: str = "auto", progress: bool = True, trajectory_steps=(),
        trajectory_copies: int = 64) -> Report:
    """Validate q_sample on ``device``: accuracy per dtype and the statistics of the drawn noise.

    With ``trajectory_steps`` it also tests, at each of those t, that the
    closed form and the fused step-by-step process agree in distribution.
    """
    from tqdm.auto import tqdm

    from . import dispatch

    schedule = NoiseSchedule.linear()
    batch = 8
    shape = (batch, max(numel // batch, 1))
    t = torch.linspace(0, schedule.T - 1, batch).long()
    gen = torch.Generator().manual_seed(seed)
    steps = [("accuracy", d) for d in dtypes] + [("noise", None), ("independence", None)]
    if trajectory_steps:
        steps.append(("trajectory", None))
    picked = dispatch.select(backend, torch.empty(0, device=device))
    checks: list[Check] = []
    for kind, dtype in tqdm(steps, desc="validating", disable=not progress, leave=False):
        if kind == "trajectory":
            checks.extend(closed_form_vs_steps(device, schedule, trajectory_steps, copies=trajectory_copies,
                                               seed=seed, backend=backend))
        elif kind == "accuracy":
            x0 = torch.randn(shape, generator=gen).to(device=device, dtype=dtype)
            checks.append(accuracy_check(x0, t, schedule, backend=backend))
        elif kind == "noise":
            x0 = torch.zeros(shape, device=device)
            _, eps = q_sample(x0, t, schedule, seed=seed, return_noise=True, backend=backend)
            checks.extend(noise_checks(eps))
        else:
            x0 = torch.zeros(shape, device=device)
            first = q_sample(x0, schedule.T - 1, schedule, generator=gen, backend=backend)
            second = q_sample(x0, schedule.T - 1, schedule, generator=gen, backend=backend)
            checks.append(independence_check(first, second, "consecutive calls independent"))
    if device.type == "cuda":
        name = f"{device} ({torch.cuda.get_device_name(device)})"
    else:
        name = f"{device}{dispatch.where(picked, device)}"
    return Report(device=name, backend=picked, checks=checks)
