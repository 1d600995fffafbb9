"""QSample: the fused kernel as a torch.autograd.Function."""
from __future__ import annotations

import torch

from . import launch


class QSample(torch.autograd.Function):
    """x_t = a[t]·x0 + b[t]·ε with a = sqrt(ᾱ), b = sqrt(1 − ᾱ) as float32 tables.

    Inputs: x0, t_rows (int64, one timestep per row), a, b, noise (or None),
    seed, stream, return_noise. Returns (x_t, ε or None). ε drawn in the kernel
    is not differentiable and is never saved: the backward regenerates it from
    the seed when the tables need a gradient.
    """

    @staticmethod
    def forward(ctx, x0, t_rows, sqrt_ab, sqrt_1m_ab, noise, seed, stream, return_noise):
        x_t, eps = launch.q_sample_forward(x0, t_rows, sqrt_ab, sqrt_1m_ab, noise, seed=seed, stream=stream,
                                           write_noise=return_noise)
        tables_need_grad = ctx.needs_input_grad[2] or ctx.needs_input_grad[3]
        ctx.save_for_backward(t_rows, sqrt_ab, sqrt_1m_ab, x0 if tables_need_grad else None,
                              noise if tables_need_grad else None)
        ctx.seed, ctx.stream = seed, stream
        ctx.x0_dtype = x0.dtype
        ctx.noise_dtype = noise.dtype if noise is not None else None
        if eps is not None:
            ctx.mark_non_differentiable(eps)
        return x_t, eps

    @staticmethod
    def backward(ctx, grad_xt, _grad_eps):
        t_rows, sqrt_ab, sqrt_1m_ab, x0, noise = ctx.saved_tensors
        gx, gn, ga, gb = launch.q_sample_backward(
            grad_xt, t_rows, sqrt_ab, sqrt_1m_ab, x0, noise, seed=ctx.seed, stream=ctx.stream,
            x0_dtype=ctx.x0_dtype if ctx.needs_input_grad[0] else None,
            noise_dtype=ctx.noise_dtype if ctx.needs_input_grad[4] else None,
            need_tables=ctx.needs_input_grad[2] or ctx.needs_input_grad[3],
        )
        return gx, None, ga, gb, gn, None, None, None
