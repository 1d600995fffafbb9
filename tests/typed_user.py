"""A user's training lines, type-checked with mypy --strict against the package's annotations (tests/test_types.py;
.ci/run checks it against the installed wheel). Not a test module: it is read, never collected."""
import torch

import diffusion_kernels as dk

schedule = dk.NoiseSchedule.cosine(T=1000)
x0 = torch.randn(4, 3, 8, 8)
t = dk.sample_timesteps(4, schedule.T, seed=0)
x_t, noised = dk.q_sample(x0, t, schedule, seed=1, return_noise="seed")
sigma: torch.Tensor = dk.sample_sigmas(4, shift=3.0)
scheme, weighting = dk.script_recipe("cosmap")
# q_sample's result is a union (x_t, or x_t with ε's tensor or handle): strict mode needs this ignore
# only if it read the annotations, so --warn-unused-ignores proves they were read.
loss: torch.Tensor = dk.noise_mse(torch.zeros_like(x0), noised)  # type: ignore[arg-type]
