"""diffusion-kernels: fused, reproducible noising (q_sample) for diffusion-model training.

Submodules load on first use, so a program (or the command line) can still set
``TRITON_INTERPRET=1`` after ``import diffusion_kernels`` and before the first
call, as Triton requires it to be set before Triton itself is imported.
"""
import importlib as _importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # what type checkers and editors see; at run time each name loads on first use
    from . import integrations as integrations
    from . import reference as reference
    from .forward import ForwardDiffusion as ForwardDiffusion
    from .loss.entry import diffusion_loss as diffusion_loss
    from .loss.entry import noise_mse as noise_mse
    from .noising.entry import edm_sample as edm_sample
    from .noising.entry import flow_match_sample as flow_match_sample
    from .noising.entry import forward_step as forward_step
    from .noising.entry import get_velocity as get_velocity
    from .noising.entry import q_sample as q_sample
    from .noising.function import QSample as QSample
    from .noising.handle import NoiseHandle as NoiseHandle
    from .sampling.entry import sample_sigmas as sample_sigmas
    from .sampling.entry import sample_timesteps as sample_timesteps
    from .sampling.entry import script_recipe as script_recipe
    from .trajectory.entry import forward_trajectory as forward_trajectory
    from .schedules import NoiseSchedule as NoiseSchedule
    from .seeding import DeviceSeed as DeviceSeed

__version__ = "0.1.0"

# Each public name and the module that defines it: one folder per op (noising, loss, sampling, trajectory),
# each with its entry, its backends and (for the kernels) its autograd Function and launcher.
_EXPORTS = {
    "q_sample": "noising.entry", "get_velocity": "noising.entry", "flow_match_sample": "noising.entry",
    "edm_sample": "noising.entry", "forward_step": "noising.entry", "NoiseHandle": "noising.handle",
    "QSample": "noising.function", "forward_trajectory": "trajectory.entry", "ForwardDiffusion": "forward",
    "noise_mse": "loss.entry", "diffusion_loss": "loss.entry", "NoiseSchedule": "schedules",
    "DeviceSeed": "seeding", "sample_timesteps": "sampling.entry", "sample_sigmas": "sampling.entry",
    "script_recipe": "sampling.entry",
}
_SUBMODULES = {"reference", "seeding", "schedules", "validate", "figures", "images", "bench", "integrations",
               "launch", "dispatch", "checks", "tolerances", "noising", "loss", "trajectory", "forward", "cli",
               "sampling", "objectives", "install"}

__all__ = sorted(_EXPORTS) + ["integrations", "reference"]


def __getattr__(name: str) -> Any:
    if name in _EXPORTS:
        value = getattr(_importlib.import_module(f".{_EXPORTS[name]}", __name__), name)
    elif name in _SUBMODULES:
        value = _importlib.import_module(f".{name}", __name__)
    else:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    # The public API: the entry points, the drop-ins and the reference (the other modules stay importable).
    return sorted([*__all__, "__version__"])
