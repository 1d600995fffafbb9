"""Drop-in fused noising for the codebases people already train with.

- ``diffusers``: ``patch(scheduler)`` or ``FusedDDPMScheduler`` / ``FusedDDIMScheduler``.
- ``guided_diffusion``: a mixin for guided-/improved-diffusion's ``GaussianDiffusion``.
- ``denoising_diffusion_pytorch``: a mixin for denoising-diffusion-pytorch's ``GaussianDiffusion``.

Each module imports its host library only when a class that needs it is used.
"""
