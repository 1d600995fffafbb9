"""The noising op in plain PyTorch: the textbook formula of the call's form over the stream's ε (drawn by
``reference.philox_normal``). What float64, torch.func transforms and forward-mode AD take, and what the
kernels are tested against."""
from __future__ import annotations

import torch

from .. import reference, sharding
from ..forms import Form

SEED_ON_DEVICE = False  # the seed is read on the host (an int), never by a kernel


def drawer(block: sharding.Block | None, device: torch.device, seed: object = 0):
    """The drawer of the stream's normals (``reference.philox_normal``'s signature); for a shard
    (``block``) the normals of its global positions. None means ``reference.philox_normal`` itself."""
    return None if block is None else reference.block_drawer(block, None, device=device)


def follow_layout(x: torch.Tensor, t):
    """``t`` (shaped like ``x``) with the strides ``torch.empty_like(x)`` gives, as the kernels lay out their
    outputs (channels_last in, channels_last out); copied only where they differ."""
    from ..dispatch import transform_in_use

    if t is None or (t.is_contiguous() and x.is_contiguous()) or transform_in_use((x, t)):
        return t  # a transform's batched tensor hides its layout (and cannot be copied into a plain one)
    target = torch.empty_like(x, dtype=t.dtype)
    return t if target.stride() == t.stride() else target.copy_(t)


def formula(x: torch.Tensor, noise, form: Form, *, seed, stream: int, offset_strength: float, perturbation: float,
            write_v: bool, draw) -> tuple:
    """(out, ε, v or None) from the form's formulas, ε drawn by ``draw`` unless given."""
    eps = noise
    if eps is None:
        eps = reference.drawn_noise(seed, x.shape, form.index.shape, stream=stream, offset_strength=offset_strength,
                                    device=x.device, dtype=torch.promote_types(x.dtype, torch.float32), draw=draw)
    noised = eps if perturbation == 0.0 else reference.perturbed_noise(eps, seed, perturbation, stream=stream,
                                                                       draw=draw)
    out = form.reference(x, noised)
    v = form.reference_velocity(x, eps) if write_v else None
    eps = eps.to(x.dtype)
    return follow_layout(x, out), (follow_layout(x, eps) if noise is None else eps), follow_layout(x, v)


def noise(x: torch.Tensor, noise, form: Form, *, seed, stream: int, offset_strength: float, perturbation: float,
          block: sharding.Block | None, write_eps: bool, write_v: bool) -> tuple:
    """(out, ε, v or None): the backends' common signature (noising/triton.py, cpu.py)."""
    return formula(x, noise, form, seed=seed, stream=stream, offset_strength=offset_strength,
                   perturbation=perturbation, write_v=write_v, draw=drawer(block, x.device, seed))
