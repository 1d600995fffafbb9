"""Triton JIT code for diffusion-kernels.

Only ``@triton.jit`` functions live here: the kernels and the small jit helpers
they share. Shapes, strides, allocation and launch grids belong to the host
launchers in ``diffusion_kernels``.
"""
