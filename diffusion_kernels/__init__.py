"""diffusion-kernels: fused, reproducible noising (q_sample) for diffusion-model training."""
from . import reference
from .api import forward_step, forward_trajectory, q_sample
from .autograd import QSample
from .forward import ForwardDiffusion
from .schedules import NoiseSchedule
from .seeding import DeviceSeed

__all__ = [
    "DeviceSeed", "ForwardDiffusion", "NoiseSchedule", "QSample", "forward_step", "forward_trajectory", "q_sample",
    "reference",
]
__version__ = "0.1.0"
