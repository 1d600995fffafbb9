"""diffusion-kernels: fused, reproducible noising (q_sample) for diffusion-model training.

Submodules load on first use, so a program (or the command line) can still set
``TRITON_INTERPRET=1`` after ``import diffusion_kernels`` and before the first
call, as Triton requires it to be set before Triton itself is imported.
"""
import importlib

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
               "sampling", "objectives"}

__all__ = sorted(_EXPORTS) + ["reference"]


def __getattr__(name: str):
    if name in _EXPORTS:
        value = getattr(importlib.import_module(f".{_EXPORTS[name]}", __name__), name)
    elif name in _SUBMODULES:
        value = importlib.import_module(f".{name}", __name__)
    else:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    globals()[name] = value
    return value


def __dir__():
    return sorted(set(globals()) | set(_EXPORTS) | _SUBMODULES)
