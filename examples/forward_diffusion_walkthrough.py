"""The forward-diffusion story, told with diffusion-kernels.

1. A noise schedule: how much signal survives to each step.
2. The step-by-step process q(x_t | x_{t-1}), one step at a time and fused.
3. The closed-form jump q(x_t | x_0).
4. Verification: both reach the same distribution.
5. Figures.

Runs headless on a GPU or, without one, through Triton's interpreter:
    python examples/forward_diffusion_walkthrough.py --out walkthrough
"""
import argparse
import os
from pathlib import Path

import torch

if not torch.cuda.is_available():
    os.environ.setdefault("TRITON_INTERPRET", "1")  # before Triton is first imported

import scipy.stats  # noqa: E402

import diffusion_kernels as dk  # noqa: E402
from diffusion_kernels import figures, images  # noqa: E402


def main(out: str, seed: int = 0) -> None:
    device = "cuda" if torch.cuda.is_available() else "cpu"
    torch.manual_seed(seed)

    # 1. Schedules: ᾱ_t is the fraction of signal variance left at step t.
    linear, cosine = dk.NoiseSchedule.linear(), dk.NoiseSchedule.cosine()
    for sched in (linear, cosine):
        half = int((sched.alpha_bars < 0.5).nonzero()[0])
        print(f"{sched.name:>7}: ᾱ_0 = {sched.alpha_bars[0]:.5f}, ᾱ_999 = {sched.alpha_bars[-1]:.2e}, "
              f"half the signal is gone by t = {half}")

    # 2. Step by step: x_t = sqrt(α_t)·x_{t-1} + sqrt(β_t)·ε, first by hand, then fused.
    x0 = images.digits(1)[0].to(device)
    x = x0
    for t in range(10):
        x = dk.forward_step(x, t, linear)
    fused = dk.forward_trajectory(x0, linear, 9)
    print(f"ten single steps: std of the change {float((x - x0).std()):.4f}; "
          f"fused trajectory: {float((fused - x0).std()):.4f}")

    # 3. The closed form jumps straight to any t.
    t = torch.tensor([0, 100, 500, 999])
    batch = x0.expand(4, *x0.shape)
    x_t = dk.q_sample(batch, t, linear)
    for ti, xi in zip(t.tolist(), x_t):
        r = float(torch.corrcoef(torch.stack([xi.flatten(), x0.flatten()]))[0, 1])
        print(f"t = {ti:>3}: correlation with x_0 = {r:+.3f}")

    # 4. Verification: many samples of one pixel, closed form against the step-by-step process.
    samples, t_check = 4096, 100
    pixel = torch.full((samples,), float(x0.max()), device=device)
    closed = dk.q_sample(pixel, t_check, linear)
    stepped = dk.forward_trajectory(pixel, linear, t_check)
    ks = scipy.stats.ks_2samp(closed.cpu().numpy(), stepped.cpu().numpy())
    ab = float(linear.alpha_bars[t_check])
    print(f"t = {t_check}: closed form mean {float(closed.mean()):+.4f} std {float(closed.std()):.4f}; "
          f"step by step mean {float(stepped.mean()):+.4f} std {float(stepped.std()):.4f}; "
          f"expected {ab ** 0.5 * float(x0.max()):+.4f} and {(1 - ab) ** 0.5:.4f}; KS p = {ks.pvalue:.3f}")
    if ks.pvalue < 1e-4:
        raise SystemExit("closed form and step-by-step process disagree")

    # 5. Figures (the full set: `diffusion-kernels figures --out DIR`).
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    kw = dict(device=device, dtype=torch.float32, seed=seed)
    for path in (figures.schedule_curves(out),
                 figures.batch_grid(out, images.digits(8), linear, **kw),
                 figures.sine_signal(out, linear, **kw)):
        print(f"wrote {path}")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", default="walkthrough", help="folder for the figures")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    main(args.out, args.seed)
