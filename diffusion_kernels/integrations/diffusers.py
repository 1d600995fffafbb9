"""diffusers: a scheduler's ``add_noise`` and ``get_velocity`` on the fused kernel.

Only schedulers whose stock ``add_noise`` is the ᾱ formula by timestep,
sqrt(ᾱ[t])·x0 + sqrt(1 − ᾱ[t])·ε, are fused (``FUSED_SCHEDULERS``). The others
(Euler, Heun, LMS, KDPM2, DPM-SDE, DPMSolver, UniPC, DEIS, EDM, flow matching, ...)
noise with x0 + σ·ε or α_t·x0 + σ_t·ε by *step index* into their inference
sigmas, a different function of ``timesteps``; ``patch`` and the ``Fused*``
names refuse them with an error naming the scheduler, rather than return other
numbers.

The schedule is read from ``scheduler.alphas_cumprod`` on every call (its
tables are kept only while the buffer holds the same values) and its square
roots are taken in float64, so float32 results equal diffusers' own to float32
rounding, and bf16/fp16 results equal diffusers' float32 result cast to that
dtype (the stock path casts ᾱ to bf16 first, which rounds ᾱ_0 to 1 and drops the
noise of the first timesteps). ``timesteps`` broadcast as in stock diffusers: one
entry for the whole batch (shape () or (1,)) or one per sample, and the result
has the promoted dtype of the sample and the noise.

    from diffusion_kernels.integrations.diffusers import patch
    scheduler = patch(DDPMScheduler.from_pretrained(...))    # or FusedDDPMScheduler(...)

A ``Fused*`` scheduler saves as its stock class (``save_pretrained`` and a
pipeline's ``model_index.json`` name ``DDPMScheduler``), so a saved pipeline
loads anywhere; ``patch`` the loaded scheduler again to fuse it.
"""
from __future__ import annotations

import types

from collections.abc import Sequence
from typing import Any, TypeVar, cast

import torch

from ..noising.entry import get_velocity, q_sample
from ..hints import Timesteps

SchedulerT = TypeVar("SchedulerT")

# The diffusers schedulers whose own add_noise is sqrt(ᾱ[t])·x0 + sqrt(1 − ᾱ[t])·ε by timestep
# (and whose get_velocity, where they have one, is sqrt(ᾱ[t])·ε − sqrt(1 − ᾱ[t])·x0).
FUSED_SCHEDULERS = (
    "DDPMScheduler", "DDPMParallelScheduler", "DDIMScheduler", "DDIMParallelScheduler", "PNDMScheduler",
    "LCMScheduler", "TCDScheduler", "UnCLIPScheduler", "SASolverScheduler", "CogVideoXDDIMScheduler",
    "CogVideoXDPMScheduler",
)


class UnsupportedSchedulerError(TypeError, AttributeError):
    """A scheduler whose add_noise is not the ᾱ formula by timestep (an AttributeError too, so
    ``hasattr`` on a ``Fused*`` name that does not exist is False)."""


def _refusal(name: str) -> str:
    return (f"{name}: its add_noise is not sqrt(ᾱ[t])·x0 + sqrt(1 − ᾱ[t])·ε by timestep (σ-based and multistep "
            "schedulers noise by step index into their inference sigmas), so diffusion_kernels does not fuse it; "
            f"fused are {', '.join(FUSED_SCHEDULERS)}. For x0 + σ·ε noising use diffusion_kernels.edm_sample, "
            "for (1 − σ)·x0 + σ·ε diffusion_kernels.flow_match_sample")


def _stock_class(name: str) -> type | None:
    try:
        import diffusers
    except ModuleNotFoundError as missing:
        raise ModuleNotFoundError(f"Fused{name} builds on diffusers' {name}, and diffusers is not installed: "
                                  "pip install diffusers", name="diffusers") from missing

    return getattr(diffusers, name, None)


def _runs_stock(scheduler: Any, method: str) -> bool:
    """Whether the scheduler's class runs, as ``method``, the stock function of one of FUSED_SCHEDULERS
    (so a subclass that overrides add_noise is not taken for its parent)."""
    own = getattr(type(scheduler), method, None)
    if own is None:
        return False
    if own is {"add_noise": fused_add_noise, "get_velocity": fused_get_velocity}[method]:
        return True
    for name in FUSED_SCHEDULERS:
        cls = _stock_class(name)
        if cls is not None and getattr(cls, method, None) is own:
            return True
    return False


def _alphas_cumprod(scheduler: Any) -> torch.Tensor:
    alphas_cumprod = getattr(scheduler, "alphas_cumprod", None)
    if not isinstance(alphas_cumprod, torch.Tensor):
        raise TypeError(f"{type(scheduler).__name__} has no alphas_cumprod tensor to noise with")
    return alphas_cumprod


def _as_stock_call(sample: torch.Tensor, noise: torch.Tensor, timesteps: Timesteps | Sequence[int]
                   ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """(sample, noise, t) broadcast as the stock formula broadcasts them.

    Stock diffusers flattens ``timesteps`` to (n,), views its coefficients as
    (n, 1, …, 1) and lets the arithmetic broadcast; its result dtype is the
    promotion of the sample's and the noise's dtypes.
    """
    if not isinstance(sample, torch.Tensor) or not isinstance(noise, torch.Tensor):
        raise TypeError("the sample and the noise must be tensors, got "
                        f"{type(sample).__name__} and {type(noise).__name__}")
    t = timesteps if isinstance(timesteps, torch.Tensor) else torch.as_tensor(timesteps)
    t = t.reshape(-1)
    n = t.numel()
    rows = (n,) + (1,) * max(sample.ndim - 1, 0)
    try:
        shape = torch.broadcast_shapes(sample.shape, noise.shape, rows)
    except RuntimeError:
        raise ValueError(f"timesteps of {n} entries, a sample of shape {tuple(sample.shape)} and noise of shape "
                         f"{tuple(noise.shape)} do not broadcast: give one timestep, or one per sample") from None
    dtype = torch.promote_types(sample.dtype, noise.dtype)
    sample = sample.to(dtype).expand(shape) if sample.shape != shape or sample.dtype != dtype else sample
    noise = noise.to(dtype).expand(shape) if noise.shape != shape or noise.dtype != dtype else noise
    if n == 1 and (len(shape) == 0 or shape[0] != 1):
        t = t.reshape(())
    return sample, noise, t


def fused_add_noise(scheduler: Any, original_samples: torch.Tensor, noise: torch.Tensor,
                    timesteps: torch.Tensor) -> torch.Tensor:
    """``scheduler.add_noise`` in one fused pass: sqrt(ᾱ[t])·x0 + sqrt(1 − ᾱ[t])·ε."""
    x0, noise, t = _as_stock_call(original_samples, noise, timesteps)
    return cast(torch.Tensor, q_sample(x0, t, _alphas_cumprod(scheduler), noise))


def fused_get_velocity(scheduler: Any, sample: torch.Tensor, noise: torch.Tensor,
                       timesteps: torch.Tensor) -> torch.Tensor:
    """``scheduler.get_velocity`` in one fused pass: sqrt(ᾱ[t])·ε − sqrt(1 − ᾱ[t])·x0."""
    x0, noise, t = _as_stock_call(sample, noise, timesteps)
    return get_velocity(x0, noise, t, _alphas_cumprod(scheduler))


def patch(scheduler: SchedulerT) -> SchedulerT:
    """Route this scheduler instance's ``add_noise`` and ``get_velocity`` to the fused kernel; returns it.

    Raises UnsupportedSchedulerError for a scheduler whose add_noise is not the
    ᾱ formula by timestep (see FUSED_SCHEDULERS).
    """
    if not _runs_stock(scheduler, "add_noise"):
        raise UnsupportedSchedulerError(_refusal(type(scheduler).__name__))
    _alphas_cumprod(scheduler)
    setattr(scheduler, "add_noise", types.MethodType(fused_add_noise, scheduler))
    if _runs_stock(scheduler, "get_velocity"):
        setattr(scheduler, "get_velocity", types.MethodType(fused_get_velocity, scheduler))
    return scheduler


def _rebuild(base_name: str) -> Any:
    cls: Any = _fused_class(base_name)
    return cls.__new__(cls)


class _FusedNoising:
    add_noise = fused_add_noise
    _fused_base: str  # the stock class's name, set on each fused class

    def __repr__(self) -> str:
        return f"Fused{super().__repr__()}"

    def __reduce_ex__(self, protocol: Any) -> tuple[Any, ...]:
        # The class presents itself as the stock one (below); pickles name this module instead.
        return _rebuild, (self._fused_base,), self.__dict__.copy()


_CLASSES: dict[str, type] = {}


def _fused_class(base_name: str) -> type:
    if base_name in _CLASSES:
        return _CLASSES[base_name]
    base = _stock_class(base_name) if base_name in FUSED_SCHEDULERS else None
    if base is None:
        raise UnsupportedSchedulerError(_refusal(base_name) if base_name not in FUSED_SCHEDULERS else
                                        f"{base_name} is not in the installed diffusers")
    namespace: dict[str, Any] = {
        "__doc__": f"diffusers' {base_name} with add_noise and get_velocity on the fused kernel.",
        # Saved configs and pipelines' model_index.json name the class by __module__ and __name__:
        # presenting the stock ones makes a saved pipeline load with stock diffusers.
        "__module__": base.__module__,
        "_fused_base": base_name,
    }
    if hasattr(base, "get_velocity"):
        namespace["get_velocity"] = fused_get_velocity
    cls = type(base_name, (_FusedNoising, base), namespace)
    cls.__qualname__ = f"Fused{base_name}"
    _CLASSES[base_name] = cls
    return cls


def __getattr__(name: str) -> type:
    # FusedDDPMScheduler, FusedDDIMScheduler, ...: built on first use so that importing
    # this module does not import diffusers.
    if name.startswith("Fused") and name.endswith("Scheduler"):
        cls = _fused_class(name[len("Fused"):])
        globals()[name] = cls
        return cls
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
