"""The README's usage and migration snippets, run against an installed wheel (not the source tree)."""
import os
import sys

os.environ.setdefault("TRITON_INTERPRET", "1")

import torch  # noqa: E402

import diffusion_kernels as dk  # noqa: E402

assert "site-packages" in dk.__file__, f"imported from the source tree: {dk.__file__}"

schedule = dk.NoiseSchedule.cosine(T=1000)
x0 = torch.randn(8, 4, 16, 16)
t = torch.randint(0, schedule.T, (8,))
x_t, eps = dk.q_sample(x0, t, schedule, return_noise=True)
torch.testing.assert_close(x_t, dk.q_sample(x0, t, schedule, eps, backend="reference"))
x_t, noised = dk.q_sample(x0, t, schedule, return_noise="seed")
assert dk.noise_mse(x_t, noised).ndim == 0
fd = dk.ForwardDiffusion(dk.NoiseSchedule.linear())
fd.add_noise(x0, t)

from diffusion_kernels.integrations.denoising_diffusion_pytorch import FusedNoising  # noqa: E402,F401
from diffusion_kernels.integrations.guided_diffusion import GaussianDiffusionForward  # noqa: E402

GaussianDiffusionForward(schedule.betas.numpy()).q_sample(x0, t)
import diffusion_kernels.integrations.diffusers  # noqa: E402,F401

heavy = sorted(m for m in ("scipy", "matplotlib", "sklearn", "PIL", "tqdm") if m in sys.modules)
assert heavy == [], f"a noising call imported optional packages: {heavy}"
print("wheel snippets ok:", dk.__file__)
