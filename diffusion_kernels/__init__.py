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
    from .api import NoiseHandle as NoiseHandle
    from .api import edm_sample as edm_sample
    from .api import flow_match_sample as flow_match_sample
    from .api import forward_step as forward_step
    from .api import forward_trajectory as forward_trajectory
    from .api import get_velocity as get_velocity
    from .api import q_sample as q_sample
    from .autograd import QSample as QSample
    from .forward import ForwardDiffusion as ForwardDiffusion
    from .loss import diffusion_loss as diffusion_loss
    from .loss import noise_mse as noise_mse
    from .sampling import sample_sigmas as sample_sigmas
    from .sampling import sample_timesteps as sample_timesteps
    from .sampling import script_recipe as script_recipe
    from .schedules import NoiseSchedule as NoiseSchedule
    from .seeding import DeviceSeed as DeviceSeed

__version__ = "0.1.0"

_EXPORTS = {
    "q_sample": "api", "get_velocity": "api", "flow_match_sample": "api", "edm_sample": "api",
    "forward_step": "api", "forward_trajectory": "api", "NoiseHandle": "api",
    "QSample": "autograd", "ForwardDiffusion": "forward", "noise_mse": "loss", "diffusion_loss": "loss",
    "NoiseSchedule": "schedules", "DeviceSeed": "seeding",
    "sample_timesteps": "sampling", "sample_sigmas": "sampling", "script_recipe": "sampling",
}
_SUBMODULES = {"reference", "seeding", "schedules", "validate", "figures", "images", "bench", "integrations",
               "launch", "backend", "checks", "tolerances", "api", "autograd", "loss", "forward", "cli",
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
