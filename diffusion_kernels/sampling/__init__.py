"""Per-sample timesteps and noise levels drawn from the Philox stream (``sample_timesteps``,
``sample_sigmas``), with the training scripts' recipes.

- ``entry``: the public calls; ``triton``, ``cpu``, ``reference``: the backends' draws, with one signature;
- ``launcher``: the host launcher of kernels/sampling.py.
"""
from ..reference import SAMPLING_STEP
from .entry import (LOGIT_BOUND, MODE_SCALE_RANGE, NORMAL_BOUND, SCHEMES, SCRIPT_WEIGHTING_SCHEMES, sample_sigmas,
                    sample_timesteps, script_recipe, time_shift)

__all__ = ["sample_timesteps", "sample_sigmas", "script_recipe", "time_shift", "SAMPLING_STEP", "SCHEMES",
           "SCRIPT_WEIGHTING_SCHEMES", "MODE_SCALE_RANGE", "NORMAL_BOUND", "LOGIT_BOUND"]
