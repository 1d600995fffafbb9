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
# The training losses of the README's recipes, on inputs it did not choose: a strided view of a
# larger buffer as the prediction, an expanded (stride-0) t, per-channel offset noise and input perturbation.
big = torch.randn(8, 4, 16, 32)
pred = big[..., ::2].clone().requires_grad_(True)
view = big[..., ::2]
t_channels = t[:, None].expand(-1, 4)
x_t, noised = dk.q_sample(x0, t_channels, schedule, return_noise="seed", offset_noise=0.1, input_perturbation=0.1)
for target in ("eps", "v", "x0"):
    fused = dk.diffusion_loss(view, noised, target=target, x0=x0, weighting="min_snr")
    ref = dk.diffusion_loss(view, noised, target=target, x0=x0, weighting="min_snr", backend="reference")
    torch.testing.assert_close(fused, ref, rtol=1e-5, atol=1e-6)
sigma = dk.sample_sigmas(8, scheme="logit_normal", shift=3.0)
x_s, flow = dk.flow_match_sample(x0, sigma, return_noise="seed")
loss = dk.diffusion_loss(pred, flow, target="flow", x0=x0, weighting="cosmap", reduction="none")
assert loss.shape == (8,)
loss.sum().backward()
assert pred.grad is not None and torch.isfinite(pred.grad).all()
fd = dk.ForwardDiffusion(dk.NoiseSchedule.linear())
fd.add_noise(x0, t)

from diffusion_kernels.integrations.denoising_diffusion_pytorch import FusedNoising  # noqa: E402,F401
from diffusion_kernels.integrations.guided_diffusion import GaussianDiffusionForward  # noqa: E402

GaussianDiffusionForward(schedule.betas.numpy()).q_sample(x0, t)
import diffusion_kernels.integrations.diffusers  # noqa: E402,F401

heavy = sorted(m for m in ("scipy", "matplotlib", "sklearn", "PIL", "tqdm") if m in sys.modules)
assert heavy == [], f"a noising call imported optional packages: {heavy}"
print("wheel snippets ok:", dk.__file__)

# The README's quickstart, as a user copies it, against the wheel (no numba here: the reference's stream).
sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "tests"))
import contextlib  # noqa: E402
import io  # noqa: E402

from readme_blocks import quickstart  # noqa: E402

code, printed = quickstart()
out = io.StringIO()
with contextlib.redirect_stdout(out):
    exec(compile(code, "README quickstart", "exec"), {})
assert out.getvalue() == printed, (out.getvalue(), printed)
print("README quickstart ok")
