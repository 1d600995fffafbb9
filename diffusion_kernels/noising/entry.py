"""The noising op's public entry points (q_sample and its forms) and the one path every call takes:
check the arguments, let the dispatch point pick the backend (noising/triton.py, cpu.py or
reference.py, which take the same arguments), run it, and return what was asked for."""
from __future__ import annotations

import dataclasses
from typing import cast

import torch

from .. import checks, cpu_noise, dispatch, dtensors, reference, seeding, sharding
from ..checks import clamped
from ..forms import FLOAT32_MAX, Form, alphas_of, compiling, ddpm_form, sigma_form
from ..hints import Device, ReturnNoise, Shape, Sigma, Timesteps
from ..schedules import NoiseSchedule, Schedule, coefficient_tables
from ..seeding import Seed
from . import plans
from .handle import Noised, NoiseHandle

__all__ = ["q_sample", "get_velocity", "flow_match_sample", "edm_sample", "forward_step", "run"]


def q_sample(x0: torch.Tensor, t: Timesteps, schedule: Schedule, noise: torch.Tensor | None = None, *,
             seed: Seed = None, generator: torch.Generator | None = None, return_noise: ReturnNoise = False,
             return_v: bool = False, offset_noise: float = 0.0, input_perturbation: float = 0.0,
             backend: str = "auto", check_t: bool = True, stream: int | None = None,
             global_shape: Shape | None = None, global_offset: Shape | None = None) -> Noised:
    """Noise ``x0`` to step ``t``: x_t = sqrt(ᾱ[t])·x0 + sqrt(1 − ᾱ[t])·ε.

    Args:
        x0: clean data of any shape; float32, float16 or bfloat16 run the fused
            kernel (float32 arithmetic inside), float64 runs the reference.
        t: an int, a 0-d tensor, or an integer tensor whose shape is a leading
            prefix of ``x0.shape`` ((B,) per sample, (B, F) per frame, ...). It
            may live on the CPU while ``x0`` is on a GPU.
        schedule: a :class:`NoiseSchedule` or a 1-D ᾱ tensor (which may require
            grad, for learned schedules).
        noise: ε to use; when ``None`` it is drawn from the Philox stream of ``seed``.
        seed: an int in [0, 2**64) fixing the stream, or a :class:`DeviceSeed`
            (read on the device at run time: CUDA-graph safe). Without it one is
            drawn from ``generator`` or torch's default CPU generator.
        return_noise: also return ε. ``"seed"`` returns a :class:`NoiseHandle`
            instead of a tensor, for :func:`noise_mse`.
        return_v: also return the v-target sqrt(ᾱ)·ε − sqrt(1 − ᾱ)·x0, written in the same pass.
            The result is ``x_t``, ``(x_t, ε)``, ``(x_t, v)`` or ``(x_t, ε, v)``.
        offset_noise: with drawn noise, add this times one normal per entry of
            ``t`` (pass t of shape (B, C) for per-channel offset noise).
        input_perturbation: with drawn noise, diffusers' ``--input_perturbation`` γ: x_t is built from
            ε + γ·ε′ (ε′ a second normal per element, drawn in the same pass from the stream's
            PERTURB_STEP word) while the returned ε, its handle and v keep ε, the loss target.
        backend: ``"auto"`` (kernel on CUDA, and on CPU under TRITON_INTERPRET=1;
            on CPU otherwise the compiled CPU loop where numba is installed, else the
            reference), ``"triton"``, ``"cpu"`` or ``"reference"``.
        check_t: check that every t lies in [0, T): a ValueError for an int or a
            CPU tensor; for a GPU tensor the kernel checks on the device, with no
            host sync, and a bad t stops it with CUDA's device-side assert (as
            PyTorch's indexing does). Skipped under torch.compile. Unchecked
            values are clamped inside the kernel, never read out of bounds.
        stream: the Philox stream word in [0, 2**32); default the rank of an
            initialised torch.distributed group, else 0 (and 0 with ``global_shape``).
        global_shape, global_offset: ``x0`` is the block of a global tensor of ``global_shape`` that
            starts at ``global_offset`` (one int per dim): each element draws the noise of its global
            position, so any split of a batch over processes draws what one process draws for the whole
            batch. ``t`` is the block's own (its slice of the global t); offset noise and input
            perturbation follow the global positions too. See README, "Training on many GPUs".

    A DTensor ``x0`` (placed by Shard(d) and Replicate()) is noised the same way, as the block each rank
    holds, and the results come back as DTensors placed as ``x0``; ``t`` is then a DTensor or the global
    plain tensor.
    """
    if type(x0) is not torch.Tensor and dtensors.is_dtensor(x0) and not torch.compiler.is_compiling():
        # As the other entry points' follow_dtensor does (a decorator's frame costs every plain call).
        return _q_sample_blocks(x0, t, schedule, noise, seed=seed, generator=generator, return_noise=return_noise,
                                return_v=return_v, offset_noise=offset_noise, input_perturbation=input_perturbation,
                                backend=backend, check_t=check_t, stream=stream, global_shape=global_shape,
                                global_offset=global_offset)
    if (noise is None and generator is None and return_v is False and _zero(offset_noise)
            and _zero(input_perturbation) and check_t is True and stream is None and global_shape is None
            and global_offset is None):
        # The plain drawing call, a training loop's: its kind's decisions are kept (noising/plans.py).
        done = plans.replay(x0, t, schedule, seed, return_noise, backend)
        if done is not None:
            return done
    x0 = checks.check_x0(x0)
    noise = checks.check_noise(noise, x0)
    block = sharding.block_of(x0.shape, global_shape, global_offset)
    form = ddpm_form(x0, t, schedule, check_t=check_t, noise=noise)
    return run(x0, noise, form, seed=seed, generator=generator, return_noise=return_noise, return_v=return_v,
                backend=backend, stream=stream, offset_strength=offset_noise, perturbation=input_perturbation,
                block=block)


# q_sample on a DTensor: its blocks noised at their global positions.
_q_sample_blocks = dtensors.follow_dtensor("t")(q_sample)


def _zero(value: object) -> bool:
    return (type(value) is float or type(value) is int) and value == 0


def get_velocity(x0: torch.Tensor, noise: torch.Tensor, t: Timesteps, schedule: Schedule, *,
                 backend: str = "auto", check_t: bool = True) -> torch.Tensor:
    """The v-target v = sqrt(ᾱ[t])·ε − sqrt(1 − ᾱ[t])·x0 for a given ε, in one fused pass."""
    x0 = checks.check_x0(x0)
    if noise is None:
        raise ValueError("get_velocity needs the noise ε")
    noise = checks.check_noise(noise, x0)
    form = ddpm_form(x0, t, schedule, check_t=check_t, noise=noise)
    form = dataclasses.replace(form, tables=form.velocity_tables, reference=form.reference_velocity)
    return cast(torch.Tensor, run(x0, noise, form, seed=None, generator=None, return_noise=False, return_v=False,
                                  backend=backend, stream=None))


@dtensors.follow_dtensor("sigma")
def flow_match_sample(x0: torch.Tensor, sigma: Sigma, noise: torch.Tensor | None = None, *, seed: Seed = None,
                      generator: torch.Generator | None = None, return_noise: ReturnNoise = False,
                      return_v: bool = False, backend: str = "auto", check_sigma: bool = True,
                      stream: int | None = None, global_shape: Shape | None = None,
                      global_offset: Shape | None = None) -> Noised:
    """Flow matching / rectified flow: x_σ = (1 − σ)·x0 + σ·ε (diffusers' ``scale_noise``).

    ``sigma`` in [0, 1] is a float or a tensor of shape () or a leading prefix
    of x0's. ``return_v`` also returns the velocity target ε − x0. Other
    arguments as in :func:`q_sample`.
    """
    x0 = checks.check_x0(x0)
    noise = checks.check_noise(noise, x0)
    block = sharding.block_of(x0.shape, global_shape, global_offset)
    index, tables, velocity_tables = sigma_form(x0, sigma, lo=0.0, hi=1.0, name="flow matching",
                                                 check=check_sigma, signal=lambda s: 1.0 - s, velocity=True)
    form = Form(index, tables, velocity_tables, lambda x, eps: reference.flow_match_sample(x, sigma, eps),
                 lambda x, eps: (eps.to(torch.promote_types(x.dtype, torch.float32))
                                 - x.to(torch.promote_types(x.dtype, torch.float32))).to(x.dtype),
                 inputs=(sigma,), objective="flow")
    return run(x0, noise, form, seed=seed, generator=generator, return_noise=return_noise, return_v=return_v,
                backend=backend, stream=stream, block=block)


@dtensors.follow_dtensor("sigma")
def edm_sample(x0: torch.Tensor, sigma: Sigma, noise: torch.Tensor | None = None, *, seed: Seed = None,
               generator: torch.Generator | None = None, return_noise: ReturnNoise = False, backend: str = "auto",
               check_sigma: bool = True, stream: int | None = None, global_shape: Shape | None = None,
               global_offset: Shape | None = None) -> Noised:
    """EDM / k-diffusion noising: x_σ = x0 + σ·ε, with ``sigma`` ≥ 0 per sample (or any leading prefix).
    Arguments as in :func:`q_sample`."""
    x0 = checks.check_x0(x0)
    noise = checks.check_noise(noise, x0)
    block = sharding.block_of(x0.shape, global_shape, global_offset)
    # Bounded by float32's largest value: the kernel's coefficient tables are float32.
    index, tables, _ = sigma_form(x0, sigma, lo=0.0, hi=FLOAT32_MAX, name="EDM", check=check_sigma,
                                   signal=torch.ones_like, velocity=False)
    form = Form(index, tables, None, lambda x, eps: reference.edm_sample(x, sigma, eps), None, inputs=(sigma,),
                 objective="edm")
    return run(x0, noise, form, seed=seed, generator=generator, return_noise=return_noise, return_v=False,
                backend=backend, stream=stream, block=block)


def forward_step(x_prev: torch.Tensor, t: Timesteps, schedule: Schedule, noise: torch.Tensor | None = None, *,
                 seed: Seed = None, generator: torch.Generator | None = None, return_noise: ReturnNoise = False,
                 backend: str = "auto", check_t: bool = True, stream: int | None = None,
                 global_shape: Shape | None = None, global_offset: Shape | None = None) -> Noised:
    """One step of the forward process, x_t ~ q(x_t | x_{t−1}) = N(sqrt(α_t)·x_{t−1}, β_t·I).

    Steps are 0-indexed like the schedule's tables: applying t = 0, 1, …, k to
    x0 gives x_k, distributed as ``q_sample(x0, k, schedule)``. Arguments as in
    :func:`q_sample`; the same fused kernel runs with the (sqrt(α), sqrt(β)) tables.
    """
    x_prev = checks.check_x0(x_prev, "x_prev")
    noise = checks.check_noise(noise, x_prev)
    block = sharding.block_of(x_prev.shape, global_shape, global_offset)
    alphas = alphas_of(schedule)
    checks.check_devices(x_prev, noise, alphas, t)
    index = checks.check_t(t, x_prev, alphas.numel(), check_range=check_t and not compiling())
    if isinstance(schedule, NoiseSchedule):
        tables = schedule.step_tables
    else:
        def tables(device: Device) -> tuple[torch.Tensor, torch.Tensor]:
            return coefficient_tables(alphas, device)
    form = Form(index, tables, None,
                 lambda x, eps: reference.forward_step(x, clamped(index, alphas.numel()), alphas, eps), None,
                 check_index=check_t, inputs=(alphas,))
    return run(x_prev, noise, form, seed=seed, generator=generator, return_noise=return_noise, return_v=False,
                backend=backend, stream=stream, block=block)


def run(x: torch.Tensor, noise: torch.Tensor | None, form: Form, *, seed: Seed, generator: torch.Generator | None,
        return_noise: ReturnNoise, return_v: bool, backend: str, stream: int | None, offset_strength: float = 0.0,
        perturbation: float = 0.0, block: sharding.Block | None = None) -> Noised:
    """The path every noising call takes once its form is made: the drawing arguments checked, the backend
    picked (dispatch.implementation), the seed resolved in the form that backend reads, the backend run,
    and x_t returned with what else was asked for (ε, its NoiseHandle, v)."""
    if return_noise is not True and return_noise is not False:
        if isinstance(return_noise, str):
            if return_noise != "seed":
                raise ValueError(f"return_noise must be True, False or 'seed', got {return_noise!r}")
        else:
            return_noise = checks.check_flag(return_noise, "return_noise")
    if return_v is not False:
        return_v = checks.check_flag(return_v, "return_v")
        if return_v and form.velocity_tables is None:
            raise ValueError("this noising form has no v-target (return_v)")
    offset_strength = checks.check_real(offset_strength, "offset_noise")
    perturbation = checks.check_real(perturbation, "input_perturbation")
    if noise is not None:
        _check_nothing_drawn(return_noise, seed, generator, offset_strength, perturbation, block)
    stream = seeding.check_stream(stream, sharded=block is not None)
    block = sharding.partial(block)
    implementation = dispatch.implementation("noising", backend, x, noise, *form.inputs)
    if noise is None and dispatch.under_vmap():
        # The stream is a function of the position in the tensor the call sees, which under vmap is
        # one sample: every vmapped sample would get the same ε.
        raise RuntimeError("drawing noise inside torch.vmap would give every vmapped sample the same ε; pass "
                           "noise=..., or noise the whole batch outside vmap")
    if perturbation != 0.0:
        checks.refuse_perturbation_grad(perturbation, torch.is_grad_enabled() and any(
            isinstance(t, torch.Tensor) and t.requires_grad for t in form.inputs))
    threads = cpu_noise.one_thread_if_forked()
    try:
        call_seed = 0 if noise is not None else seeding.call_seed(seed, generator, x.device,
                                                                   implementation.SEED_ON_DEVICE)
        out, eps, v = implementation.noise(x, noise, form, seed=call_seed, stream=stream,
                                           offset_strength=offset_strength, perturbation=perturbation, block=block,
                                           write_eps=return_noise is True, write_v=return_v)
    finally:
        cpu_noise.restore_threads(threads)
    if return_noise is False:
        return out if return_v is False else (out, v)
    kept = eps if return_noise is True else NoiseHandle(call_seed, stream, x.shape, form.index.shape,
                                                        offset_strength, x.dtype, x.device, form, block)
    return (out, kept) if return_v is False else (out, kept, v)


def _check_nothing_drawn(return_noise: ReturnNoise, seed: Seed, generator: torch.Generator | None,
                         offset_strength: float, perturbation: float, block: sharding.Block | None) -> None:
    """With noise given nothing is drawn: the drawing arguments would be ignored, so they are refused."""
    if return_noise == "seed":
        raise ValueError("return_noise='seed' keeps a drawn ε as its seed; it cannot be used with a given noise")
    if perturbation != 0.0:
        raise ValueError("input_perturbation draws its ε′ with ε; with a given noise, pass noise + γ·ε′ instead")
    if seed is not None or generator is not None or offset_strength != 0.0:
        given = [name for name, value in (("seed", seed), ("generator", generator)) if value is not None]
        given += ["offset_noise"] if offset_strength != 0.0 else []
        raise ValueError(f"noise was given, so nothing is drawn: {', '.join(given)} would be ignored; "
                         "pass either noise or the drawing arguments")
    if block is not None:
        raise ValueError("global_shape and global_offset place the drawn noise at its global positions; with "
                         "noise given nothing is drawn: leave them out")
