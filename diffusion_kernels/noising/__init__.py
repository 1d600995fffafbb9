"""The noising op: x_t = a[t]·x0 + b[t]·ε (and v) in one pass, for every form (q_sample, get_velocity,
flow matching, EDM, one forward step).

- ``entry``: the public calls, and the one path each takes;
- ``triton``, ``cpu``, ``reference``: the backends, with one signature (``dispatch`` picks one per call);
- ``function``: the Triton backend's autograd Function; ``launcher``: its host launcher of kernels/noising.py;
- ``handle``: ε kept as its seed (``return_noise="seed"``).
"""
from .entry import edm_sample, flow_match_sample, forward_step, get_velocity, q_sample
from .handle import Noised, NoiseHandle

__all__ = ["q_sample", "get_velocity", "flow_match_sample", "edm_sample", "forward_step", "NoiseHandle", "Noised"]
