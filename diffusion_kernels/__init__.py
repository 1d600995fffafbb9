"""diffusion-kernels: fused, reproducible noising (q_sample) for diffusion-model training."""
from . import reference, seeding
from .api import (
    NoiseHandle, edm_sample, flow_match_sample, forward_step, forward_trajectory, get_velocity, q_sample,
)
from .autograd import QSample
from .forward import ForwardDiffusion
from .loss import noise_mse
from .schedules import NoiseSchedule
from .seeding import DeviceSeed

__all__ = [
    "DeviceSeed", "ForwardDiffusion", "NoiseHandle", "NoiseSchedule", "QSample", "edm_sample", "flow_match_sample",
    "forward_step", "forward_trajectory", "get_velocity", "noise_mse", "q_sample", "reference",
]
__version__ = "0.1.0"
