"""guided-diffusion or improved-diffusion, stock and with FusedForwardProcess mixed in, side by side.

    python tests/peers/compare_gaussian_diffusion.py CHECKOUT PACKAGE   (PACKAGE: guided_diffusion or
                                                                      improved_diffusion)

Their own ``training_losses`` (their loss types and model-variance types), their forward-process
methods on awkward t, a few optimizer steps of a small model with the same noise, and
``torch.compile(fullgraph=True)`` of the fused methods. Prints one line per check and exits 1 if any
differs beyond float32 rounding.
"""
import importlib
import os
import sys

os.environ.setdefault("TRITON_INTERPRET", "1")

import torch  # noqa: E402

from diffusion_kernels.integrations.guided_diffusion import FusedForwardProcess  # noqa: E402

from side_by_side import FAILURES, check  # noqa: E402


class TinyModel(torch.nn.Module):
    """Predicts ε (and the variance interpolation for learned-range variances) from x_t and t."""

    def __init__(self, channels, learned_variance):
        super().__init__()
        out = channels * (2 if learned_variance else 1)
        self.net = torch.nn.Conv2d(channels + 1, out, 3, padding=1)

    def forward(self, x, t):
        t_plane = (t.float() / 1000).reshape(-1, 1, 1, 1).expand(x.shape[0], 1, *x.shape[2:])
        return self.net(torch.cat([x, t_plane], dim=1))


def main(checkout, package):
    sys.path.insert(0, checkout)
    gd = importlib.import_module(f"{package}.gaussian_diffusion")

    class Fused(FusedForwardProcess, gd.GaussianDiffusion):
        pass

    torch.manual_seed(0)
    x0 = torch.randn(6, 3, 8, 8)
    noise = torch.randn_like(x0)
    ts = torch.randint(0, 1000, (12,))
    for schedule in ("linear", "cosine"):
        betas = gd.get_named_beta_schedule(schedule, 1000)
        for var_type in (gd.ModelVarType.FIXED_SMALL, gd.ModelVarType.LEARNED_RANGE):
            for loss_type in (gd.LossType.MSE, gd.LossType.RESCALED_MSE):
                kw = dict(betas=betas, model_mean_type=gd.ModelMeanType.EPSILON, model_var_type=var_type,
                          loss_type=loss_type)
                stock, fused = gd.GaussianDiffusion(**kw), Fused(**kw)
                label = f"{schedule}/{var_type.name}/{loss_type.name}"
                for t_name, t in (("per-sample", ts[:6]), ("strided", ts[::2]),
                                  ("expanded", torch.tensor(750).expand(6))):
                    check(f"{label} q_sample {t_name}", fused.q_sample(x0, t, noise), stock.q_sample(x0, t, noise))
                    for k, (a, b) in enumerate(zip(fused.q_mean_variance(x0, t), stock.q_mean_variance(x0, t))):
                        check(f"{label} q_mean_variance[{k}] {t_name}", a, b)
                    x_t = stock.q_sample(x0, t, noise)
                    for k, (a, b) in enumerate(zip(fused.q_posterior_mean_variance(x0, x_t, t),
                                                   stock.q_posterior_mean_variance(x0, x_t, t))):
                        check(f"{label} q_posterior_mean_variance[{k}] {t_name}", a, b)
                check(f"{label} q_sample float16 in", fused.q_sample(x0.half(), ts[:6], noise.half()),
                      stock.q_sample(x0.half(), ts[:6], noise.half()), rtol=1e-3, atol=1e-3)
                learned = var_type == gd.ModelVarType.LEARNED_RANGE
                models = [TinyModel(3, learned) for _ in range(2)]
                models[1].load_state_dict(models[0].state_dict())
                optimizers = [torch.optim.Adam(m.parameters(), lr=1e-3) for m in models]
                for step in range(3):
                    t = torch.randint(0, 1000, (6,))
                    step_noise = torch.randn_like(x0)
                    losses = []
                    for diffusion, model, opt in zip((stock, fused), models, optimizers):
                        loss = diffusion.training_losses(model, x0, t, noise=step_noise)["loss"].mean()
                        opt.zero_grad()
                        loss.backward()
                        opt.step()
                        losses.append(loss.detach())
                    check(f"{label} training_losses step {step}", losses[1], losses[0], rtol=1e-5, atol=1e-6)
                for p_fused, p_stock in zip(models[1].parameters(), models[0].parameters()):
                    check(f"{label} parameters after 3 Adam steps", p_fused, p_stock, rtol=1e-4, atol=1e-5)

    fused = Fused(betas=gd.get_named_beta_schedule("linear", 1000), model_mean_type=gd.ModelMeanType.EPSILON,
                  model_var_type=gd.ModelVarType.FIXED_SMALL, loss_type=gd.LossType.MSE)
    torch._dynamo.reset()
    compiled = torch.compile(lambda x, t, n: (fused.q_sample(x, t, n), *fused.q_posterior_mean_variance(x, n, t)),
                             fullgraph=True, backend="aot_eager")
    got = compiled(x0, ts[:6], noise)
    want = (fused.q_sample(x0, ts[:6], noise), *fused.q_posterior_mean_variance(x0, noise, ts[:6]))
    for k, (a, b) in enumerate(zip(got, want)):
        check(f"torch.compile(fullgraph=True) output {k}", a, b)
    print(f"{package}: {len(FAILURES)} failed")
    return 1 if FAILURES else 0


if __name__ == "__main__":
    sys.exit(main(*sys.argv[1:3]))
