"""denoising-diffusion-pytorch's GaussianDiffusion, stock and with FusedNoising mixed in, side by side.

    python tests/peers/compare_denoising_diffusion_pytorch.py PACKAGE_DIR

PACKAGE_DIR is the unpacked ``denoising_diffusion_pytorch`` package (``pip download --no-deps
denoising-diffusion-pytorch`` and unzip the wheel). Its training-loop modules need torchvision,
accelerate and ema-pytorch, which the noising path never touches: they are stood in for by empty
modules here, and only the module holding GaussianDiffusion is loaded (einops and scipy must be
installed). Compares their own ``p_losses`` for each objective and schedule, ``q_sample`` on
awkward t, ``immiscible=True``, and a few Adam steps of their Unet with the same noise.
"""
import importlib
import os
import sys
import types

os.environ.setdefault("TRITON_INTERPRET", "1")

import torch  # noqa: E402

from diffusion_kernels.integrations.denoising_diffusion_pytorch import FusedNoising  # noqa: E402

from side_by_side import FAILURES, check  # noqa: E402


def _load(package_dir):
    for name in ("torchvision", "ema_pytorch", "accelerate"):
        stub = types.ModuleType(name)
        stub.transforms = stub.utils = None
        stub.EMA = stub.Accelerator = object
        sys.modules.setdefault(name, stub)
    package = types.ModuleType("denoising_diffusion_pytorch")
    package.__path__ = [os.path.abspath(package_dir)]
    sys.modules["denoising_diffusion_pytorch"] = package
    return importlib.import_module("denoising_diffusion_pytorch.denoising_diffusion_pytorch")


def main(package_dir):
    ddp = _load(package_dir)

    class Fused(FusedNoising, ddp.GaussianDiffusion):
        pass

    torch.manual_seed(0)
    x0 = torch.randn(4, 3, 8, 8)
    noise = torch.randn_like(x0)
    ts = torch.randint(0, 1000, (8,))
    for schedule in ("linear", "cosine", "sigmoid"):
        for objective in ("pred_noise", "pred_v", "pred_x0"):
            label = f"{schedule}/{objective}"
            unets = [ddp.Unet(dim=8, dim_mults=(1, 2), flash_attn=False) for _ in range(2)]
            unets[1].load_state_dict(unets[0].state_dict())
            kw = dict(image_size=8, timesteps=1000, objective=objective, beta_schedule=schedule)
            stock, fused = ddp.GaussianDiffusion(unets[0], **kw), Fused(unets[1], **kw)
            for t_name, t in (("per-sample", ts[:4]), ("strided", ts[::2]), ("expanded", torch.tensor(600).expand(4))):
                check(f"{label} q_sample {t_name}", fused.q_sample(x0, t, noise), stock.q_sample(x0, t, noise))
                check(f"{label} predict_v {t_name}", fused.predict_v(x0, t, noise), stock.predict_v(x0, t, noise))
            optimizers = [torch.optim.Adam(d.parameters(), lr=1e-3) for d in (stock, fused)]
            for step in range(3):
                t = torch.randint(0, 1000, (4,))
                step_noise = torch.randn_like(x0)
                losses = []
                for diffusion, opt in zip((stock, fused), optimizers):
                    loss = diffusion.p_losses(x0, t, noise=step_noise.clone())
                    opt.zero_grad()
                    loss.backward()
                    opt.step()
                    losses.append(loss.detach())
                check(f"{label} p_losses step {step}", losses[1], losses[0], rtol=1e-5, atol=1e-6)
            for p_fused, p_stock in zip(fused.parameters(), stock.parameters()):
                check(f"{label} parameters after 3 Adam steps", p_fused, p_stock, rtol=1e-4, atol=1e-5)
    unet = ddp.Unet(dim=8, dim_mults=(1, 2), flash_attn=False)
    stock = ddp.GaussianDiffusion(unet, image_size=8, timesteps=1000, immiscible=True)
    fused = Fused(unet, image_size=8, timesteps=1000, immiscible=True)
    check("immiscible q_sample with given noise", fused.q_sample(x0, ts[:4], noise), stock.q_sample(x0, ts[:4], noise))
    print(f"denoising_diffusion_pytorch: {len(FAILURES)} failed")
    return 1 if FAILURES else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1]))
