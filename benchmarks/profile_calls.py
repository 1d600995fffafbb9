"""One fused call per (dtype, mode) on a training-sized batch, for a profiler to attach to.

    ncu --kernel-name regex:noising_ python3 benchmarks/profile_calls.py

For float32 then bfloat16 the forward kernel runs for x_t and ε, x_t only and
given noise, then once more (given noise) followed by the backward kernel for
the gradient to x0, and last the channels-last kernel (x_t and ε) on the same
elements as 4 × 4 × 1024 × 1024 channels_last latents. The batch is 4 × 4M
elements (16M), per-sample t on the GPU.
"""
import torch

import diffusion_kernels as dk

NUMEL = 1 << 24


def main():
    schedule = dk.NoiseSchedule.linear()
    t = torch.tensor([10, 250, 500, 999], device="cuda")
    for dtype in (torch.float32, torch.bfloat16):
        x0 = torch.randn(4, NUMEL // 4, device="cuda", dtype=dtype)
        noise = torch.randn_like(x0)
        dk.q_sample(x0, t, schedule, seed=0, return_noise=True)
        dk.q_sample(x0, t, schedule, seed=0)
        dk.q_sample(x0, t, schedule, noise)
        x = x0.detach().requires_grad_(True)
        torch.autograd.grad(dk.q_sample(x, t, schedule, noise), x, torch.ones_like(x0))
        latents = x0.reshape(4, 4, 1024, 1024).to(memory_format=torch.channels_last)
        dk.q_sample(latents, t, schedule, seed=0, return_noise=True)
    torch.cuda.synchronize()
    print(f"profiled {NUMEL} elements per call")


if __name__ == "__main__":
    main()
