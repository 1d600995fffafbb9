"""The cpu backend's one-pass noising: x_t (and ε) in one compiled loop where it applies, the reference's
formulas over the compiled drawer's ε everywhere else (autograd, v-targets, other dtypes and layouts);
and the loss's passes on the compiled loop."""
from __future__ import annotations

import torch

from . import cpu_noise


def _needs_grad(x: torch.Tensor, inputs) -> bool:
    return torch.is_grad_enabled() and any(isinstance(t, torch.Tensor) and t.requires_grad for t in (x, *inputs))


def fused(x: torch.Tensor, form, seed: int, stream: int, offset_strength: float, write_eps: bool):
    """(x_t, ε or None) from one pass over ``x``, or None where the pass does not apply.

    The loop computes a[row]·x + b[row]·ε in float32 with ε the stream's normal, as the reference's
    formula does over the same ε; a call that autograd must follow takes the formula instead.
    """
    if (x.dtype not in (torch.float32, torch.bfloat16, torch.float16) or isinstance(seed, torch.Tensor)
            or _needs_grad(x, form.inputs)):
        return None
    if x.dtype != torch.float32 or not x.is_contiguous():
        # 2-byte I/O (numba has no bfloat16) and strided layouts: the loop runs on a packed float32 copy,
        # the same float32 arithmetic the reference's formula does, rounded to the I/O dtype at the end.
        done = fused(x.float().contiguous(), form, seed, stream, offset_strength, write_eps)
        out, eps = done
        out = torch.empty_like(x).copy_(out.view(x.shape))
        return out, (torch.empty_like(x).copy_(eps.view(x.shape)) if eps is not None else None)
    a, b = form.tables(x.device)
    index = form.index.reshape(-1) if form.index.numel() else form.index.new_zeros(1)
    rows = index.numel()
    if not form.check_index:
        index = index.clamp(0, a.numel() - 1)  # unchecked rows read the table as the kernels do: clamped
    a_rows, b_rows = a.detach().float()[index], b.detach().float()[index]
    offset = cpu_noise.row_offsets(seed, rows, stream, offset_strength) if offset_strength else None
    return cpu_noise.noise_affine(x, x.numel() // rows if rows else 0, a_rows, b_rows, offset, seed, stream,
                                  write_eps)


# The loss passes on the compiled loop, with launch.noise_mse_forward / _backward's signatures
# (loss_function.DiffusionLoss runs either pair).
LOSS_PASSES = (cpu_noise.loss_sums, cpu_noise.loss_grad)


def loss_inputs(prediction: torch.Tensor, x0, handle):
    """(prediction, x0) as the loop reads them (contiguous float32; a conversion autograd follows back),
    or None where the loop does not apply (a seed held in a tensor)."""
    if isinstance(handle.seed, torch.Tensor) or any(
            t is not None and t.dtype not in (torch.float32, torch.bfloat16, torch.float16) for t in (prediction, x0)):
        return None  # float64 keeps the reference's precision
    return tuple(t if t is None else t.to(torch.float32).contiguous() for t in (prediction, x0))
