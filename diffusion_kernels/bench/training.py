"""The training-step modes: timestep or σ drawn, the batch noised, a stand-in model, the weighted loss
and its backward, as diffusers' scripts do them and as this library does.

train_eps   train_text_to_image.py: uniform t, ε-prediction, min-SNR-γ (γ = 5)
train_flow  train_dreambooth_sd3.py / _flux.py: logit-normal σ (shift 3), flow target, unit weighting

The model is ``x_t * w`` with ``w`` a scalar parameter, the same for every provider, so what differs
is the recipe's own work: drawing ε, keeping ε and the target for the backward, the weighting passes.
"""
from __future__ import annotations

import functools

import torch
import torch.nn.functional as F

from ..loss.entry import diffusion_loss
from ..noising.entry import flow_match_sample, q_sample
from ..sampling.entry import sample_sigmas, sample_timesteps, time_shift

SNR_GAMMA = 5.0
SHIFT = 3.0  # SD3's FlowMatchEulerDiscreteScheduler shift


def _eager_eps(x0, w, alphas_cumprod):
    """The ε / min-SNR recipe in plain PyTorch on the device (no host sync), ε and the target stored."""
    t = torch.randint(0, alphas_cumprod.numel(), (x0.shape[0],), device=x0.device)
    noise = torch.randn_like(x0)
    ab = alphas_cumprod[t].reshape(-1, *[1] * (x0.ndim - 1))
    noisy = ab.sqrt() * x0 + (1 - ab).sqrt() * noise
    snr = ab.flatten() / (1 - ab.flatten())
    weights = torch.clamp(snr, max=SNR_GAMMA) / snr
    loss = F.mse_loss((noisy * w).float(), noise.float(), reduction="none")
    return (loss.mean(dim=list(range(1, loss.ndim))) * weights).mean()


def _eager_flow(x0, w):
    """The flow / logit-normal recipe in plain PyTorch on the device, ε and the target stored."""
    sigma = time_shift(torch.sigmoid(torch.randn(x0.shape[0], device=x0.device)), SHIFT)
    sigma = sigma.reshape(-1, *[1] * (x0.ndim - 1))
    noise = torch.randn_like(x0)
    noisy = (1.0 - sigma) * x0 + sigma * noise
    target = noise - x0
    return torch.mean((((noisy * w).float() - target.float()) ** 2).reshape(x0.shape[0], -1), 1).mean()


def _diffusers_eps(x0, w, scheduler):
    """train_text_to_image.py's step with --snr_gamma, as the script writes it."""
    from diffusers.training_utils import compute_snr

    noise = torch.randn_like(x0)
    timesteps = torch.randint(0, scheduler.config.num_train_timesteps, (x0.shape[0],), device=x0.device).long()
    noisy = scheduler.add_noise(x0, noise, timesteps)
    model_pred = noisy * w
    snr = compute_snr(scheduler, timesteps)
    mse_loss_weights = torch.stack([snr, SNR_GAMMA * torch.ones_like(timesteps)], dim=1).min(dim=1)[0] / snr
    loss = F.mse_loss(model_pred.float(), noise.float(), reduction="none")
    return (loss.mean(dim=list(range(1, len(loss.shape)))) * mse_loss_weights).mean()


def _diffusers_flow(x0, w, scheduler):
    """train_dreambooth_sd3.py's step (logit-normal weighting scheme), as the script writes it, with its
    get_sigmas (a host lookup per sample)."""
    from diffusers.training_utils import compute_density_for_timestep_sampling, compute_loss_weighting_for_sd3

    noise = torch.randn_like(x0)
    bsz = x0.shape[0]
    u = compute_density_for_timestep_sampling(weighting_scheme="logit_normal", batch_size=bsz, logit_mean=0.0,
                                              logit_std=1.0, mode_scale=1.29)
    indices = (u * scheduler.config.num_train_timesteps).long()
    timesteps = scheduler.timesteps[indices].to(device=x0.device)
    sigmas = scheduler.sigmas.to(device=x0.device, dtype=x0.dtype)
    schedule_timesteps = scheduler.timesteps.to(x0.device)
    step_indices = [(schedule_timesteps == t).nonzero().item() for t in timesteps]
    sigma = sigmas[step_indices].flatten()
    while len(sigma.shape) < x0.ndim:
        sigma = sigma.unsqueeze(-1)
    noisy = (1.0 - sigma) * x0 + sigma * noise
    model_pred = noisy * w
    weighting = compute_loss_weighting_for_sd3(weighting_scheme="logit_normal", sigmas=sigma)
    target = noise - x0
    return torch.mean((weighting.float() * (model_pred.float() - target.float()) ** 2).reshape(bsz, -1), 1).mean()


def _ours_eps(x0, w, schedule, backend):
    t = sample_timesteps((x0.shape[0],), schedule.T, device=x0.device, backend=backend)
    x_t, handle = q_sample(x0, t, schedule, return_noise="seed", backend=backend)
    return diffusion_loss(x_t * w, handle, weighting="min_snr", snr_gamma=SNR_GAMMA, backend=backend)


def _ours_flow(x0, w, backend):
    sigma = sample_sigmas((x0.shape[0],), scheme="logit_normal", shift=SHIFT, device=x0.device, backend=backend)
    x_t, handle = flow_match_sample(x0, sigma, return_noise="seed", backend=backend)
    return diffusion_loss(x_t * w, handle, target="flow", x0=x0, backend=backend)


@functools.lru_cache(maxsize=None)
def _compiled(name):
    return torch.compile({"train_eps": _eager_eps, "train_flow": _eager_flow}[name], dynamic=False)


@functools.lru_cache(maxsize=None)
def _schedulers():
    from diffusers import DDPMScheduler, FlowMatchEulerDiscreteScheduler

    return DDPMScheduler(), FlowMatchEulerDiscreteScheduler(num_train_timesteps=1000, shift=SHIFT)


def training_step(provider: str, mode: str, x0: torch.Tensor, schedule, ours_backend: str | None):
    """A callable running one training step (forward and backward) of ``mode`` for ``provider``, or None
    (``ours_backend``: the backend our provider calls; None for the others)."""
    w = torch.ones((), device=x0.device, dtype=x0.dtype, requires_grad=True)
    alphas_cumprod = schedule.alpha_bars.float().to(x0.device)
    if ours_backend is not None:
        loss = (functools.partial(_ours_eps, schedule=schedule) if mode == "train_eps" else _ours_flow)
        return _stepper(lambda: loss(x0, w, backend=ours_backend), w, x0)
    if provider == "eager":
        return _stepper(lambda: _eager_eps(x0, w, alphas_cumprod) if mode == "train_eps" else _eager_flow(x0, w), w, x0)
    if provider == "compile":
        compiled = _compiled(mode)
        return _stepper(lambda: compiled(x0, w, alphas_cumprod) if mode == "train_eps" else compiled(x0, w), w, x0)
    if provider == "diffusers":
        try:
            ddpm, flow = _schedulers()
        except ImportError:
            return None
        return _stepper(lambda: _diffusers_eps(x0, w, ddpm) if mode == "train_eps" else _diffusers_flow(x0, w, flow),
                        w, x0)
    return None


class _stepper:
    """step(): loss and backward (returns the loss); ``saved_bytes()``: the bytes autograd keeps from that forward for the
    backward beyond the step's inputs (unique storages: x_t for the stand-in model, and what the recipe
    keeps: its ε, target or residual), measured on any device."""

    def __init__(self, loss_fn, w, x0):
        self.loss_fn, self.w = loss_fn, w
        self.inputs = {x0.untyped_storage().data_ptr(), w.untyped_storage().data_ptr()}

    def __call__(self):
        self.w.grad = None
        loss = self.loss_fn()
        loss.backward()
        return loss.detach()

    def saved_bytes(self) -> int:
        storages = {}

        def pack(tensor):
            storage = tensor.untyped_storage()
            if storage.data_ptr() not in self.inputs:
                storages[storage.data_ptr()] = storage.nbytes()
            return tensor

        with torch.autograd.graph.saved_tensors_hooks(pack, lambda tensor: tensor):
            loss = self.loss_fn()
        loss.backward()
        return sum(storages.values())
