"""One noising call's shared path: check the drawing arguments, pick the backend, run the kernel or the reference."""
from __future__ import annotations

import dataclasses
from typing import TypeAlias

import torch

from . import backend as backends
from . import checks, cpu_noise, cpu_path, reference, seeding, sharding, transfer
from .autograd import noise_affine
from .forms import Form, compiling


@dataclasses.dataclass(frozen=True)
class NoiseHandle:
    """The ε of a call kept as its seed instead of a tensor (``return_noise="seed"``).

    ``noise_mse`` regenerates ε from it inside its kernel; ``materialize()``
    gives the tensor when one is wanted after all.
    """

    seed: int | torch.Tensor  # int, or a 1-element int64 device tensor
    stream: int
    shape: torch.Size
    rows_shape: torch.Size
    offset_strength: float
    dtype: torch.dtype
    device: torch.device
    # The noising form: its per-row coefficients and objective, for diffusion_loss's targets and weightings.
    form: Form | None = dataclasses.field(default=None, compare=False, repr=False)
    # Where the noised tensor sits in a global one (global_shape=, global_offset=), or None.
    block: sharding.Block | None = None

    def materialize(self, dtype: torch.dtype | None = None) -> torch.Tensor:
        """ε as a tensor, in ``dtype`` (default: the noised tensor's dtype)."""
        return reference.drawn_noise(self.seed, self.shape, self.rows_shape, stream=self.stream,
                                     offset_strength=self.offset_strength, device=self.device,
                                     draw=drawer("reference", self.block, self.device)).to(dtype or self.dtype)


# What a noising call returns: x_t, or x_t with ε (a tensor or its NoiseHandle) and v, in that order, as asked.
Noised: TypeAlias = "torch.Tensor | tuple[torch.Tensor | NoiseHandle, ...]"


def drawer(chosen: str, block: sharding.Block | None, device: torch.device, seed: object = 0):
    """The drawer of the stream's normals (reference.philox_normal's signature) for a call on ``chosen``:
    the compiled CPU loop's on 'cpu' (an int seed), else the reference's; for a shard (``block``) the
    normals of its global positions. None means reference.philox_normal itself."""
    compiled = chosen == "cpu" and not isinstance(seed, torch.Tensor)
    if block is None:
        return cpu_noise.philox_normal if compiled else None
    return reference.block_drawer(block, cpu_noise.block_normal if compiled else None, device=device)


def check_stream(stream, block: sharding.Block | None) -> int:
    """The stream word: as given; by default the rank of a process group, except for a shard of a global
    tensor, where positions, not ranks, separate the processes' noise (0)."""
    return seeding.check_stream(0 if stream is None and block is not None else stream)


def resolve_seed(seed, generator, device: torch.device, chosen: str):
    """An int, or a 1-element int64 tensor read at run time (a DeviceSeed, or any seed under torch.compile)."""
    if isinstance(seed, seeding.DeviceSeed):
        if generator is not None:
            raise ValueError("pass either seed or generator, not both")
        if seed.device != device:
            raise ValueError(f"DeviceSeed lives on {seed.device} but x0 is on {device}")
        return seed.take() if chosen == "triton" else int(seed.take().item()) % seeding.SEED_BOUND
    if seed is None and compiling():
        # No host sync inside a compiled graph: the seed stays a tensor (the kernel reads it on the device).
        return seeding.draw_seed_tensor(generator, device if chosen == "triton" else "cpu")
    if seed is None and chosen == "triton" and isinstance(generator, torch.Generator) \
            and generator.device.type == "cuda":
        # A GPU generator's draw stays where it is, for the kernel to read: an int would stall the host.
        return seeding.draw_seed_tensor(generator, device)
    return seeding.resolve_seed(seed, generator)


def follow_layout(x: torch.Tensor, t):
    """``t`` (shaped like ``x``) with the strides ``torch.empty_like(x)`` gives, copied only where they differ."""
    if t is None or (t.is_contiguous() and x.is_contiguous()) or backends.transform_in_use((x, t)):
        return t  # a transform's batched tensor hides its layout (and cannot be copied into a plain one)
    target = torch.empty_like(x, dtype=t.dtype)
    return t if target.stride() == t.stride() else target.copy_(t)


@cpu_noise.fork_safe
def run(x, noise, form: Form, *, seed, generator, return_noise, return_v, backend, stream,
         offset_strength: float = 0.0, perturbation: float = 0.0, block: sharding.Block | None = None):
    if isinstance(return_noise, str):
        if return_noise != "seed":
            raise ValueError(f"return_noise must be True, False or 'seed', got {return_noise!r}")
    else:
        return_noise = checks.check_flag(return_noise, "return_noise")
    return_v = checks.check_flag(return_v, "return_v")
    if return_v and form.velocity_tables is None:
        raise ValueError("this noising form has no v-target (return_v)")
    if return_noise == "seed" and noise is not None:
        raise ValueError("return_noise='seed' keeps a drawn ε as its seed; it cannot be used with a given noise")
    offset_strength = checks.check_real(offset_strength, "offset_noise")
    perturbation = checks.check_real(perturbation, "input_perturbation")
    if perturbation != 0.0 and noise is not None:
        raise ValueError("input_perturbation draws its ε′ with ε; with a given noise, pass noise + γ·ε′ instead")
    if noise is not None and (seed is not None or generator is not None or offset_strength != 0.0):
        given = [name for name, value in (("seed", seed), ("generator", generator)) if value is not None]
        given += ["offset_noise"] if offset_strength != 0.0 else []
        raise ValueError(f"noise was given, so nothing is drawn: {', '.join(given)} would be ignored; "
                         "pass either noise or the drawing arguments")
    if block is not None and noise is not None:
        raise ValueError("global_shape and global_offset place the drawn noise at its global positions; with "
                         "noise given nothing is drawn: leave them out")
    stream = check_stream(stream, block)
    block = sharding.partial(block)
    chosen = backends.select(backend, x, noise, *form.inputs)
    if noise is None and backends.under_vmap():
        # The stream is a function of the position in the tensor the call sees, which under vmap is
        # one sample: every vmapped sample would get the same ε.
        raise RuntimeError("drawing noise inside torch.vmap would give every vmapped sample the same ε; pass "
                           "noise=..., or noise the whole batch outside vmap")
    if perturbation != 0.0:
        checks.refuse_perturbation_grad(perturbation, torch.is_grad_enabled() and any(
            isinstance(t, torch.Tensor) and t.requires_grad for t in form.inputs))
    call_seed = resolve_seed(seed, generator, x.device, chosen) if noise is None else 0

    done = None
    if chosen == "cpu" and noise is None and not return_v and perturbation == 0.0 and block is None:
        done = cpu_path.fused(x, form, call_seed, stream, offset_strength, return_noise is True)
    if done is not None:
        out, eps = done
        v = None
    elif chosen in ("reference", "cpu"):
        eps = noise
        draw = drawer(chosen, block, x.device, call_seed)
        if eps is None:
            eps = reference.drawn_noise(call_seed, x.shape, form.index.shape, stream=stream,
                                        offset_strength=offset_strength, device=x.device,
                                        dtype=torch.promote_types(x.dtype, torch.float32), draw=draw)
        noised = eps if perturbation == 0.0 else reference.perturbed_noise(eps, call_seed, perturbation,
                                                                           stream=stream, draw=draw)
        out = form.reference(x, noised)
        v = form.reference_velocity(x, eps) if return_v else None
        eps = eps.to(x.dtype)
    else:
        a, b = form.tables(x.device)
        c, d = form.velocity_tables(x.device) if return_v else (None, None)
        t_rows = transfer.to_device(form.index, x.device)
        if t_rows.ndim != 1:
            t_rows = t_rows.reshape(-1)
        if t_rows.numel() == 0:
            t_rows = t_rows.new_zeros(1)
        runs = None
        if block is not None and x.numel():
            runs = sharding.units_of(block, form.index.ndim)
            t_rows = t_rows.repeat_interleave(runs.per_row)  # the kernels' rows are the shard's runs
        out, eps, v = noise_affine(x, t_rows, a, b, c, d, noise, call_seed, stream, offset_strength,
                                   return_noise is True and noise is None, return_v,
                                   form.check_index and form.index.device.type == "cuda" and not compiling(),
                                   perturbation, runs)
        if noise is not None:
            eps = noise
    if chosen != "triton":
        # Laid out as the kernels lay out theirs (torch.empty_like(x)): channels_last in, channels_last out.
        out, v = follow_layout(x, out), follow_layout(x, v)
        eps = follow_layout(x, eps) if noise is None else eps

    result = [out]
    if return_noise == "seed":
        result.append(NoiseHandle(call_seed, stream, x.shape, form.index.shape, offset_strength, x.dtype, x.device,
                                  form, block))
    elif return_noise:
        result.append(eps)
    if return_v:
        result.append(v)
    return result[0] if len(result) == 1 else tuple(result)
