"""The forward-diffusion figures, drawn from the library's own public API.

Each function writes one PNG and returns its path; ``make_all`` writes the set.
Images come from scikit-learn's bundled sets unless the caller passes its own.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import scipy.stats
import torch

from . import images as image_sets
from .noising.entry import q_sample
from .trajectory.entry import forward_trajectory
from .schedules import NoiseSchedule

STRIP_STEPS = [0, 100, 200, 300, 400, 500, 600, 700, 800, 900, 999]
ROW_STEPS = [0, 50, 100, 200, 300, 400, 500, 700, 850, 999]
STEPWISE_STEPS = [0, 99, 249, 499, 749, 999]
SINE_STEPS = [0, 100, 250, 500, 750, 999]
HIST_STEPS = [10, 100, 500, 999]


def _pyplot():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def builtin_schedules(T: int = 1000) -> dict[str, NoiseSchedule]:
    return {
        "linear": NoiseSchedule.linear(T),
        "cosine": NoiseSchedule.cosine(T),
        "scaled_linear": NoiseSchedule.scaled_linear(T),
        "sigmoid": NoiseSchedule.sigmoid(T),
        "linear, zero terminal SNR": NoiseSchedule.linear(T).rescale_zero_terminal_snr(),
    }


def _show(ax, x: torch.Tensor, title: str | None = None):
    """Draw an image in [-1, 1] of shape (C, H, W) or (H, W)."""
    x = x.detach().float().cpu().clamp(-1, 1)
    if x.ndim == 3 and x.shape[0] == 1:
        x = x[0]
    if x.ndim == 3:
        ax.imshow(((x.permute(1, 2, 0) + 1) / 2).numpy())
    else:
        ax.imshow(x.numpy(), cmap="gray", vmin=-1, vmax=1)
    if title:
        ax.set_title(title, fontsize=9)
    ax.axis("off")


def _save(fig, path: Path) -> Path:
    fig.savefig(path, dpi=100, bbox_inches="tight")
    _pyplot().close(fig)
    return path


def schedule_curves(out: Path) -> Path:
    """ᾱ_t and log-SNR of every built-in schedule, with the 50 % signal line, and the last steps magnified."""
    plt = _pyplot()
    fig, (ax_ab, ax_snr) = plt.subplots(1, 2, figsize=(13, 4.6))
    # The zero-terminal-SNR variant follows its base schedule until the last steps: drawn in its own colour,
    # thin and dashed over the base's wide solid line, with the last steps magnified where the two part.
    inset = ax_ab.inset_axes([0.5, 0.42, 0.46, 0.36])
    tail = slice(850, None)
    for k, (name, sched) in enumerate(builtin_schedules().items()):
        variant = "," in name
        style = dict(color=f"C{k}", linestyle="--", linewidth=1.6) if variant else dict(color=f"C{k}", linewidth=2.6)
        ab = sched.alpha_bars.numpy()
        ax_ab.plot(ab, label=name, **style)
        if name.startswith("linear"):
            inset.plot(np.arange(len(ab))[tail], ab[tail], **style)
        with np.errstate(divide="ignore"):
            ax_snr.plot(np.log(sched.snr.numpy()), label=name, **style)
    inset.set_title("linear, last steps: ᾱ reaches 0 only with zero terminal SNR", fontsize=7)
    inset.tick_params(labelsize=6)
    inset.grid(True, alpha=0.3)
    ax_ab.axhline(0.5, color="r", linestyle=":", alpha=0.5, label="50% signal")
    ax_ab.set(xlabel="time step t", ylabel="ᾱ_t", title="Signal remaining, ᾱ_t")
    ax_snr.set(xlabel="time step t", ylabel="log SNR = log(ᾱ / (1 − ᾱ))", title="Log signal-to-noise ratio")
    for ax in (ax_ab, ax_snr):
        ax.grid(True, alpha=0.3)
    ax_ab.legend(fontsize=8, loc="lower left")
    ax_snr.legend(fontsize=8, loc="lower left")
    return _save(fig, out / "schedules.png")


def noising_strip(out: Path, image: torch.Tensor, schedule: NoiseSchedule, *, device, dtype, seed: int) -> Path:
    """One image noised by the closed form at t = 0 … 999."""
    plt = _pyplot()
    x0 = image.to(device=device, dtype=dtype).expand(len(STRIP_STEPS), *image.shape)
    x_t = q_sample(x0, torch.tensor(STRIP_STEPS), schedule, seed=seed)
    # Two rows of large thumbnails: one row of eleven would leave each a few dozen pixels wide.
    columns = (len(STRIP_STEPS) + 1) // 2
    aspect = image.shape[-2] / image.shape[-1]
    fig, axes = plt.subplots(2, columns, figsize=(3.6 * columns, 2 * (3.6 * aspect + 0.55)))
    for ax in axes.flat[len(STRIP_STEPS):]:
        ax.axis("off")
    for ax, t, x in zip(axes.flat, STRIP_STEPS, x_t):
        _show(ax, x, f"t={t}\nᾱ={float(schedule.alpha_bars[t]):.3f}")
    fig.suptitle("Closed-form forward diffusion: x_t = sqrt(ᾱ_t)·x_0 + sqrt(1 − ᾱ_t)·ε")
    return _save(fig, out / "noising_strip.png")


def noising_two_rows(out: Path, pair: torch.Tensor, schedule: NoiseSchedule, *, device, dtype, seed: int) -> Path:
    """Two images, each from clean to pure noise."""
    plt = _pyplot()
    # The figure is as tall as two rows of panels of the images' own aspect plus their titles, so no
    # band of empty space opens between the rows.
    width = 1.6
    height = 0.94 * width * pair.shape[-2] / pair.shape[-1]  # 0.94: the panels share the width with gaps
    fig, axes = plt.subplots(2, len(ROW_STEPS), figsize=(width * len(ROW_STEPS), 2 * (height + 0.35) + 0.4),
                             gridspec_kw=dict(left=0.005, right=0.995, bottom=0.01, top=0.86, wspace=0.06,
                                              hspace=0.3))
    t = torch.tensor(ROW_STEPS)
    for row, image in enumerate(pair[:2]):
        x0 = image.to(device=device, dtype=dtype).expand(len(ROW_STEPS), *image.shape)
        x_t = q_sample(x0, t, schedule, seed=seed + row)
        for col, x in enumerate(x_t):
            _show(axes[row][col], x, f"t={ROW_STEPS[col]}")
    fig.suptitle("Forward diffusion: from clean image to pure noise")
    return _save(fig, out / "noising_two_rows.png")


def step_by_step(out: Path, image: torch.Tensor, schedule: NoiseSchedule, *, device, dtype, seed: int) -> Path:
    """The fused step-by-step process q(x_t | x_{t−1}), snapshots along the way."""
    plt = _pyplot()
    x0 = image.to(device=device, dtype=dtype)
    _, snaps = forward_trajectory(x0, schedule, STEPWISE_STEPS[-1], seed=seed, snapshots=STEPWISE_STEPS)
    fig, axes = plt.subplots(1, len(STEPWISE_STEPS) + 1, figsize=(2.2 * (len(STEPWISE_STEPS) + 1), 2.4))
    _show(axes[0], x0, "x_0")
    for ax, s in zip(axes[1:], STEPWISE_STEPS):
        _show(ax, snaps[s], f"after {s + 1} step{'s' if s else ''}")
    fig.suptitle("Step-by-step forward diffusion (one fused kernel, noise drawn per step)")
    return _save(fig, out / "step_by_step.png")


def batch_grid(out: Path, batch: torch.Tensor, schedule: NoiseSchedule, *, device, dtype, seed: int) -> Path:
    """A batch at t = 0 (clean) against the same batch at t = 500."""
    plt = _pyplot()
    batch = batch[:8].to(device=device, dtype=dtype)
    noised = q_sample(batch, torch.full((batch.shape[0],), 500), schedule, seed=seed)
    fig, axes = plt.subplots(2, batch.shape[0], figsize=(1.8 * batch.shape[0], 4))
    for i in range(batch.shape[0]):
        _show(axes[0][i], batch[i], "t=0")
        _show(axes[1][i], noised[i], "t=500")
    fig.suptitle("A batch, clean (t=0) and noised (t=500), one q_sample call with per-sample t")
    return _save(fig, out / "batch_t0_vs_t500.png")


def sine_signal(out: Path, schedule: NoiseSchedule, *, device, dtype, seed: int) -> Path:
    """A 1-D sine wave noised to t = 0, 100, 250, 500, 750, 999 (per-sample t on a (B, L) batch)."""
    plt = _pyplot()
    length = 100
    x = torch.sin(torch.linspace(0, 4 * np.pi, length, dtype=torch.float64)).float()
    x0 = x.to(device=device, dtype=dtype).expand(len(SINE_STEPS), length)
    x_t = q_sample(x0, torch.tensor(SINE_STEPS), schedule, seed=seed).float().cpu()
    fig, axes = plt.subplots(2, 3, figsize=(12, 5.5), sharex=True, sharey=True)
    for ax, t, row in zip(axes.flat, SINE_STEPS, x_t):
        ax.plot(x.numpy(), color="#4263eb", linewidth=2.5, alpha=0.5, label="x_0")
        ax.plot(row.numpy(), color="#f03e3e", linewidth=1.2, label=f"x_{t}")
        ax.set_title(f"t={t}, ᾱ={float(schedule.alpha_bars[t]):.3f}", fontsize=10)
        ax.set_ylim(-3, 3)
        ax.grid(True, alpha=0.3)
        ax.legend(fontsize=8, loc="lower left")
    fig.supxlabel("signal index")
    fig.supylabel("amplitude")
    fig.suptitle("Forward diffusion of a 1-D sine signal (one q_sample call, t per row)")
    fig.tight_layout()
    return _save(fig, out / "sine_1d.png")


def closed_form_vs_steps(out: Path, image: torch.Tensor, schedule: NoiseSchedule, *, device, dtype, seed: int,
                         samples: int = 4096) -> Path:
    """Histograms at one pixel: the closed-form jump against the step-by-step process."""
    plt = _pyplot()
    value = image.flatten()[image.flatten().argmax()]  # a pixel on the stroke, not the background
    x0 = torch.full((samples,), float(value), device=device, dtype=dtype)
    _, stepped = forward_trajectory(x0, schedule, HIST_STEPS[-1], seed=seed, snapshots=HIST_STEPS)
    fig, axes = plt.subplots(1, len(HIST_STEPS), figsize=(4 * len(HIST_STEPS), 3.4))
    for k, (ax, t) in enumerate(zip(axes, HIST_STEPS)):
        closed = q_sample(x0, t, schedule, seed=seed + 1 + k).float().cpu().numpy()
        steps = stepped[t].float().cpu().numpy()
        p = scipy.stats.ks_2samp(closed, steps).pvalue
        bins = np.linspace(min(closed.min(), steps.min()), max(closed.max(), steps.max()), 50)
        ax.hist(closed, bins=bins, alpha=0.55, density=True, label="closed form")
        ax.hist(steps, bins=bins, alpha=0.55, density=True, label="step by step")
        ab = float(schedule.alpha_bars[t])
        grid = np.linspace(bins[0], bins[-1], 200)
        ax.plot(grid, scipy.stats.norm.pdf(grid, ab**0.5 * float(value), (1 - ab) ** 0.5), "k--", linewidth=1,
                label="N(sqrt(ᾱ)x_0, 1 − ᾱ)")
        ax.set_title(f"t={t}   KS p = {p:.2f}", fontsize=10)
        ax.legend(fontsize=7)
    fig.suptitle(f"Closed form vs step by step at one pixel (x_0 = {float(value):.2f}), {samples} samples each way")
    fig.tight_layout()
    return _save(fig, out / "closed_form_vs_steps.png")


def x_T_statistics(out: Path, batch: torch.Tensor, schedule: NoiseSchedule, *, device, dtype, seed: int) -> Path:
    """x_T of a batch against N(0, 1): histogram with the density, and a normal Q–Q plot."""
    plt = _pyplot()
    x_T = q_sample(batch.to(device=device, dtype=dtype), schedule.T - 1, schedule, seed=seed)
    z = x_T.double().cpu().flatten().numpy()
    ks = scipy.stats.kstest(z, "norm")
    fig, (ax_h, ax_q) = plt.subplots(1, 2, figsize=(11, 4))
    ax_h.hist(z, bins=80, density=True, alpha=0.6, label="x_T")
    grid = np.linspace(-4.5, 4.5, 300)
    ax_h.plot(grid, scipy.stats.norm.pdf(grid), "k--", label="N(0, 1)")
    ax_h.set_title(f"mean {z.mean():+.4f}, std {z.std():.4f}, KS p = {ks.pvalue:.2f}", fontsize=10)
    ax_h.legend()
    scipy.stats.probplot(z[:: max(1, z.size // 20000)], dist="norm", plot=ax_q)
    ax_q.set_title("normal Q–Q plot", fontsize=10)
    fig.suptitle(f"x_T (t = {schedule.T - 1}) of {batch.shape[0]} images is standard normal")
    return _save(fig, out / "x_T_statistics.png")


def make_all(out, *, device="cpu", dtype=torch.float32, seed: int = 0, images_path=None,
             progress: bool = True) -> list[Path]:
    """Write every figure into ``out``; returns the paths."""
    from tqdm.auto import tqdm

    out = Path(out)
    schedule = NoiseSchedule.linear()
    # The images first: a bad --images path fails before anything is written.
    photos = image_sets.load_images(images_path) if images_path is not None else image_sets.photos()
    out.mkdir(parents=True, exist_ok=True)
    pair = photos if photos.shape[0] >= 2 else photos.repeat(2, 1, 1, 1)
    digits = image_sets.digits(64)
    kw = dict(device=device, dtype=dtype, seed=seed)
    jobs = [
        ("schedules", lambda: schedule_curves(out)),
        ("noising strip", lambda: noising_strip(out, photos[0], schedule, **kw)),
        ("two-row strip", lambda: noising_two_rows(out, pair, schedule, **kw)),
        ("batch grid", lambda: batch_grid(out, digits, schedule, **kw)),
        ("1-D sine", lambda: sine_signal(out, schedule, **kw)),
        ("x_T statistics", lambda: x_T_statistics(out, digits, schedule, **kw)),
        ("step by step", lambda: step_by_step(out, digits[0], schedule, **kw)),
        ("closed form vs steps", lambda: closed_form_vs_steps(out, digits[0], schedule, **kw)),
    ]
    paths = []
    bar = tqdm(jobs, desc="figures", disable=not progress)
    for name, job in bar:
        bar.set_postfix_str(name)
        paths.append(job())
    return paths
