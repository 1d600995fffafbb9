"""diffusion-kernels: fused, reproducible noising (q_sample) for diffusion-model training."""
from . import reference
from .api import q_sample
from .autograd import QSample
from .forward import ForwardDiffusion
from .schedules import NoiseSchedule

__all__ = ["ForwardDiffusion", "NoiseSchedule", "QSample", "q_sample", "reference"]
__version__ = "0.1.0"
