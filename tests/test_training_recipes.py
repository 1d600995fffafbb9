"""The training losses of diffusers' scripts, computed as they compute them with the real
``diffusers.training_utils``, against diffusion_loss on the same t, σ and ε: text-to-image (ε and
v-prediction, min-SNR-γ, noise offset) and SD3 / Flux (flow matching, its weightings, preconditioned
outputs)."""
import pytest
import torch
import torch.nn.functional as F

import diffusion_kernels as dk

from tolerances import assert_grad_close, assert_loss_close

diffusers = pytest.importorskip("diffusers", reason="the recipes are compared with the diffusers package")
from diffusers.training_utils import compute_density_for_timestep_sampling, compute_loss_weighting_for_sd3, compute_snr  # noqa: E402


def _recipe_min_snr(scheduler, model_pred, target, timesteps, snr_gamma):
    """train_text_to_image.py's loss with --snr_gamma, as the script writes it."""
    snr = compute_snr(scheduler, timesteps)
    mse_loss_weights = torch.stack([snr, snr_gamma * torch.ones_like(timesteps)], dim=1).min(dim=1)[0]
    if scheduler.config.prediction_type == "epsilon":
        mse_loss_weights = mse_loss_weights / snr
    elif scheduler.config.prediction_type == "v_prediction":
        mse_loss_weights = mse_loss_weights / (snr + 1)
    loss = F.mse_loss(model_pred.float(), target.float(), reduction="none")
    loss = loss.mean(dim=list(range(1, len(loss.shape)))) * mse_loss_weights
    return loss.mean()


def _recipe_sd3(model_pred, target, weighting):
    """train_dreambooth_sd3.py / train_dreambooth_flux.py's loss, as the scripts write it."""
    return torch.mean((weighting.float() * (model_pred.float() - target.float()) ** 2).reshape(target.shape[0], -1),
                      1).mean()


def _grads(loss, pred):
    return torch.autograd.grad(loss, pred, retain_graph=True)[0]


@pytest.mark.parametrize("prediction_type", ["epsilon", "v_prediction"])
@pytest.mark.parametrize("snr_gamma", [None, 5.0])
@pytest.mark.parametrize("backend", ["triton", "cpu"])
def test_text_to_image_loss_equals_the_script_s(device, prediction_type, snr_gamma, backend):
    if backend == "cpu" and (device.type != "cpu" or not dk.dispatch.cpu_available()):
        pytest.skip("the cpu backend runs CPU tensors, with numba")
    scheduler = diffusers.DDPMScheduler(beta_schedule="scaled_linear", beta_start=0.00085, beta_end=0.012,
                                        prediction_type=prediction_type)
    latents = torch.randn(4, 4, 8, 8, generator=torch.Generator().manual_seed(0)).to(device)
    timesteps = torch.tensor([0, 37, 500, 999])
    noisy, handle = dk.q_sample(latents, timesteps, scheduler.alphas_cumprod, seed=7, return_noise="seed",
                                offset_noise=0.1, backend=backend)
    # The script's noise: randn_like plus its --noise_offset term, here the handle's ε.
    noise = handle.materialize(torch.float32).to(device)
    torch.testing.assert_close(noisy, scheduler.add_noise(latents, noise, timesteps.to(device)), rtol=1e-5, atol=2e-5)
    target = noise if prediction_type == "epsilon" else scheduler.get_velocity(latents, noise, timesteps.to(device))
    pred = torch.randn(latents.shape, generator=torch.Generator().manual_seed(1)).to(device).requires_grad_(True)
    if snr_gamma is None:
        expected = F.mse_loss(pred.float(), target.float(), reduction="mean")
    else:
        expected = _recipe_min_snr(scheduler, pred, target, timesteps.to(device), snr_gamma)
    ours = dk.diffusion_loss(pred, handle, target="eps" if prediction_type == "epsilon" else "v", x0=latents,
                             weighting=None if snr_gamma is None else "min_snr", snr_gamma=snr_gamma or 5.0,
                             backend=backend)
    assert_loss_close(ours, expected)
    assert_grad_close(_grads(ours, pred), _grads(expected, pred), torch.float32)


@pytest.mark.parametrize("weighting_scheme", ["logit_normal", "sigma_sqrt", "cosmap"])
@pytest.mark.parametrize("precondition_outputs", [False, True])
def test_sd3_and_flux_flow_loss_equals_the_script_s(device, weighting_scheme, precondition_outputs):
    scheduler = diffusers.FlowMatchEulerDiscreteScheduler(num_train_timesteps=1000, shift=3.0)
    latents = torch.randn(4, 16, 8, 8, generator=torch.Generator().manual_seed(2)).to(device)
    torch.manual_seed(3)
    u = compute_density_for_timestep_sampling(weighting_scheme="logit_normal", batch_size=4, logit_mean=0.0,
                                              logit_std=1.0)
    indices = (u * scheduler.config.num_train_timesteps).long()
    # The script's get_sigmas: the scheduler's σ at each drawn timestep, shaped (B, 1, 1, 1).
    sigmas = scheduler.sigmas[indices].to(device).reshape(-1, 1, 1, 1)
    noisy, handle = dk.flow_match_sample(latents, sigmas.flatten(), seed=4, return_noise="seed", backend="triton")
    noise = handle.materialize(torch.float32).to(device)
    torch.testing.assert_close(noisy, (1.0 - sigmas) * latents + sigmas * noise, rtol=1e-5, atol=2e-5)
    raw = torch.randn(latents.shape, generator=torch.Generator().manual_seed(5)).to(device).requires_grad_(True)
    weighting = compute_loss_weighting_for_sd3(weighting_scheme=weighting_scheme, sigmas=sigmas)
    ours_weighting = weighting_scheme if weighting_scheme in ("sigma_sqrt", "cosmap") else None
    if precondition_outputs:
        model_pred = raw * (-sigmas) + noisy
        expected = _recipe_sd3(model_pred, latents, weighting)
        ours = dk.diffusion_loss(model_pred, handle, target="x0", x0=latents, weighting=ours_weighting,
                                 backend="triton")
        # The same loss from the raw output: the flow loss weighted by σ² as well.
        weights = compute_loss_weighting_for_sd3(weighting_scheme=weighting_scheme, sigmas=sigmas.flatten())
        from_raw = dk.diffusion_loss(raw, handle, target="flow", x0=latents, weighting=sigmas ** 2 * weights[:, None,
                                                                                                        None, None],
                                     backend="triton")
        assert_loss_close(from_raw, expected)
        assert_grad_close(_grads(from_raw, raw), _grads(expected, raw), torch.float32)
    else:
        expected = _recipe_sd3(raw, noise - latents, weighting)
        ours = dk.diffusion_loss(raw, handle, target="flow", x0=latents, weighting=ours_weighting, backend="triton")
    assert_loss_close(ours, expected)
    assert_grad_close(_grads(ours, raw), _grads(expected, raw), torch.float32)


def test_zero_terminal_snr_eps_weighting_is_the_scripts_guarded_one(device):
    """The zero-terminal-SNR scripts set the ε weight to 1 where SNR = 0 (train_text_to_image's own
    formula divides 0 by 0 there)."""
    scheduler = diffusers.DDPMScheduler(rescale_betas_zero_snr=True)
    latents = torch.randn(3, 4, 4, 4).to(device)
    timesteps = torch.tensor([5, 600, 999])
    _, handle = dk.q_sample(latents, timesteps, scheduler.alphas_cumprod, seed=1, return_noise="seed",
                            backend="triton")
    noise = handle.materialize(torch.float32).to(device)
    pred = torch.randn_like(latents)
    snr = compute_snr(scheduler, timesteps)
    weights = torch.stack([snr, 5.0 * torch.ones_like(timesteps)], dim=1).min(dim=1)[0] / snr
    assert torch.isnan(weights[-1])
    weights[snr == 0] = 1.0
    expected = (F.mse_loss(pred, noise, reduction="none").mean(dim=(1, 2, 3)) * weights.to(device)).mean()
    assert_loss_close(dk.diffusion_loss(pred, handle, weighting="min_snr", backend="triton"), expected)


@pytest.mark.parametrize("layout", ["contiguous", "channels_last", "sliced"])
@pytest.mark.parametrize("backend", ["triton", "reference"])
def test_input_perturbation_noises_as_the_script_does_and_keeps_eps_the_target(device, layout, backend):
    """train_text_to_image.py --input_perturbation γ: new_noise = noise + γ·randn_like(noise), x_t from
    new_noise, the loss against noise."""
    from cases import make_x0
    from diffusion_kernels import reference

    scheduler = diffusers.DDPMScheduler(beta_schedule="scaled_linear", beta_start=0.00085, beta_end=0.012)
    latents = make_x0((4, 4, 8, 8), layout, torch.float32, device)
    timesteps = torch.tensor([3, 250, 640, 998])
    noisy, handle = dk.q_sample(latents, timesteps, scheduler.alphas_cumprod, seed=12, return_noise="seed",
                                offset_noise=0.05, input_perturbation=0.1, backend=backend)
    noise = handle.materialize(torch.float32).to(device)
    second = reference.philox_normal(12, latents.shape, step=reference.PERTURB_STEP).to(device)
    assert float((second - noise).abs().max()) > 1.0  # ε′ is a second draw, not ε again
    expected = scheduler.add_noise(latents, noise + 0.1 * second, timesteps.to(device))
    torch.testing.assert_close(noisy, expected, rtol=1e-5, atol=2e-5)
    _, eps = dk.q_sample(latents, timesteps, scheduler.alphas_cumprod, seed=12, return_noise=True,
                         offset_noise=0.05, input_perturbation=0.1, backend=backend)
    torch.testing.assert_close(eps, noise, rtol=0, atol=1e-5)
    pred = torch.randn_like(latents)
    assert_loss_close(dk.diffusion_loss(pred, handle, backend=backend), F.mse_loss(pred, noise))


def test_input_perturbation_refuses_what_it_cannot_do_exactly(device):
    x0 = torch.randn(2, 3, 4, device=device)
    learned = dk.NoiseSchedule.linear().alpha_bars.clone().requires_grad_(True)
    with pytest.raises(NotImplementedError, match="requires grad"):
        dk.q_sample(x0, torch.tensor([1, 2]), learned, seed=1, input_perturbation=0.1, backend="triton")
    with pytest.raises(ValueError, match="given noise"):
        dk.q_sample(x0, 1, dk.NoiseSchedule.linear(), noise=torch.randn_like(x0), input_perturbation=0.1)
    x0.requires_grad_(True)
    out = dk.q_sample(x0, torch.tensor([1, 900]), dk.NoiseSchedule.linear(), seed=1, input_perturbation=0.1,
                      backend="triton")
    (grad,) = torch.autograd.grad(out.sum(), x0)
    a = dk.NoiseSchedule.linear().alpha_bars[torch.tensor([1, 900])].sqrt().float()
    torch.testing.assert_close(grad, a[:, None, None].expand_as(x0).to(device))


@pytest.mark.parametrize("prediction_type", ["epsilon", "v_prediction"])
def test_the_readme_text_to_image_step_equals_the_script_s(device, prediction_type):
    """The README's "after" lines (per-channel offset noise through t of shape (B, C), input perturbation,
    min-SNR) against the script's "before" lines fed the same ε, ε′ and timesteps."""
    from diffusion_kernels import reference

    noise_scheduler = diffusers.DDPMScheduler(beta_schedule="scaled_linear", beta_start=0.00085, beta_end=0.012,
                                              prediction_type=prediction_type)
    schedule = dk.NoiseSchedule.from_alpha_bars(noise_scheduler.alphas_cumprod)
    latents = torch.randn(4, 4, 8, 8).to(device)
    bsz = latents.shape[0]
    timesteps = dk.sample_timesteps(bsz, 1000, device=latents.device, seed=3)
    noisy_latents, noised = dk.q_sample(latents, timesteps[:, None].expand(-1, latents.shape[1]), schedule,
                                        return_noise="seed", offset_noise=0.1, input_perturbation=0.1, seed=8)
    model_pred = torch.randn(latents.shape).to(device).requires_grad_(True)
    loss = dk.diffusion_loss(model_pred, noised, target="eps" if prediction_type == "epsilon" else "v",
                             x0=latents, weighting="min_snr", snr_gamma=5.0)

    offsets = reference.philox_normal(8, (bsz, latents.shape[1]), step=reference.OFFSET_STEP).to(device)
    noise = reference.philox_normal(8, latents.shape).to(device) + 0.1 * offsets[:, :, None, None]
    new_noise = noise + 0.1 * reference.philox_normal(8, latents.shape, step=reference.PERTURB_STEP).to(device)
    torch.testing.assert_close(noisy_latents, noise_scheduler.add_noise(latents, new_noise, timesteps),
                               rtol=1e-5, atol=2e-5)
    target = noise if prediction_type == "epsilon" else noise_scheduler.get_velocity(latents, noise, timesteps)
    expected = _recipe_min_snr(noise_scheduler, model_pred, target, timesteps, 5.0)
    assert_loss_close(loss, expected)
    assert_grad_close(_grads(loss, model_pred), _grads(expected, model_pred), torch.float32)
