"""The training losses against a noising call's ε kept as its seed (``diffusion_loss``, ``noise_mse``):
ε and the target are regenerated in the kernels, never stored.

- ``entry``: the public calls; ``triton``, ``cpu``, ``reference``: the backends, with one signature;
- ``function``: the autograd Function both compiled backends run; ``launcher``: the host launcher of
  kernels/loss.py.
"""
from .entry import diffusion_loss, noise_mse

__all__ = ["diffusion_loss", "noise_mse"]
