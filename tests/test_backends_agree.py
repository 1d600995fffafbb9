"""One behaviour on every backend: the same call on the kernels, the CPU loop and the reference gives the
same shapes, dtypes, memory layouts and values (to the stream's tolerance), or the same refusal. Code
tested on a CPU must not fail, or answer differently, on a GPU."""
import pytest
import torch
from cases import make_x0, runnable_backends
from tolerances import NOISE_ATOL, TOLERANCE

import diffusion_kernels as dk

SCHEDULE = dk.NoiseSchedule.linear()


def _x(shape, layout="contiguous", dtype=torch.float32, device="cpu", seed=0):
    return make_x0(shape, layout, dtype, device, generator=torch.Generator().manual_seed(seed))


def _learned():
    return SCHEDULE.alpha_bars.clone().requires_grad_()


def _sigma(n, device, hi=0.9):
    return torch.linspace(0.1, hi, n, device=device) if n else torch.zeros(0, device=device)


def _loss(noising, target, weighting, device, shape=(3, 2, 5), dtype=torch.float32):
    """A call of diffusion_loss on a noising's handle (made on the reference: the loss's backend varies)."""
    def call(backend):
        x0 = _x(shape, dtype=dtype, device=device)
        rows = shape[0]
        if noising == "ddpm":
            t = torch.arange(rows, device=device) * 300
            _, handle = dk.q_sample(x0, t, SCHEDULE, seed=5, return_noise="seed", backend="reference")
        elif noising == "flow":
            _, handle = dk.flow_match_sample(x0, _sigma(rows, device), seed=5, return_noise="seed",
                                             backend="reference")
        else:
            _, handle = dk.forward_step(x0, 4, SCHEDULE, seed=5, return_noise="seed", backend="reference")
        gen = torch.Generator().manual_seed(4)
        w = weighting
        if weighting == "tensor64":
            w = torch.rand(rows, dtype=torch.float64, generator=gen).to(device) + 0.5
        prediction = _x(shape, dtype=dtype, device=device, seed=1)
        return dk.diffusion_loss(prediction, handle, target=target, x0=x0, weighting=w, reduction="none",
                                 backend=backend)
    return call


# name -> call(backend, device); dtype and layout vary inside the names that say so.
CALLS = {
    **{f"q_sample_{layout}_{str(dtype)[6:]}": (
        lambda backend, device, layout=layout, dtype=dtype: dk.q_sample(
            _x((2, 3, 4, 5), layout, dtype, device), torch.tensor([3, 800]), SCHEDULE, seed=1,
            return_noise=True, return_v=True, backend=backend))
       for layout in ("contiguous", "channels_last", "transposed", "sliced")
       for dtype in (torch.float32, torch.bfloat16)},
    "q_sample_empty": lambda backend, device: dk.q_sample(
        _x((0, 3, 4), device=device), torch.zeros(0, dtype=torch.long), SCHEDULE, seed=1, return_noise=True,
        return_v=True, backend=backend),
    "q_sample_empty_rows": lambda backend, device: dk.q_sample(
        _x((2, 0, 4), device=device), torch.tensor([1, 2]), SCHEDULE, seed=1, return_noise=True, backend=backend),
    "q_sample_offset_noise": lambda backend, device: dk.q_sample(
        _x((2, 3, 4, 4), "channels_last", device=device), torch.tensor([[5, 6, 7], [8, 9, 10]]), SCHEDULE, seed=2,
        offset_noise=0.1, return_noise=True, backend=backend),
    "q_sample_perturbation": lambda backend, device: dk.q_sample(
        _x((2, 3, 4), device=device), torch.tensor([5, 600]), SCHEDULE, seed=2, input_perturbation=0.1,
        return_noise=True, backend=backend),
    "q_sample_perturbation_learned_schedule": lambda backend, device: dk.q_sample(
        _x((2, 3, 4), device=device), torch.tensor([5, 600]), _learned(), seed=2, input_perturbation=0.1,
        backend=backend),
    "q_sample_learned_schedule": lambda backend, device: dk.q_sample(
        _x((2, 3, 4), device=device), torch.tensor([5, 600]), _learned(), seed=2, return_v=True, backend=backend),
    "get_velocity_channels_last": lambda backend, device: dk.get_velocity(
        _x((2, 3, 4, 5), "channels_last", device=device), _x((2, 3, 4, 5), "channels_last", device=device, seed=3),
        torch.tensor([3, 4]), SCHEDULE, backend=backend),
    **{f"flow_match_sample_{n}": (
        lambda backend, device, n=n: dk.flow_match_sample(
            _x((n, 4, 3), "contiguous", device=device), _sigma(n, device), seed=3, return_noise=True,
            return_v=True, backend=backend))
       for n in (0, 1, 3)},
    "flow_match_sample_channels_last": lambda backend, device: dk.flow_match_sample(
        _x((2, 3, 4, 5), "channels_last", device=device), _sigma(2, device), seed=3, return_noise=True,
        return_v=True, backend=backend),
    **{f"edm_sample_{n}": (
        lambda backend, device, n=n: dk.edm_sample(
            _x((n, 4, 3), device=device), _sigma(n, device, hi=2.0), seed=3, return_noise=True, backend=backend))
       for n in (0, 3)},
    "forward_step": lambda backend, device: dk.forward_step(
        _x((2, 3, 4, 5), "channels_last", device=device), torch.tensor([0, 900]), SCHEDULE, seed=4,
        return_noise=True, backend=backend),
    "forward_step_empty": lambda backend, device: dk.forward_step(
        _x((0, 3), device=device), torch.zeros(0, dtype=torch.long), SCHEDULE, seed=4, backend=backend),
    "forward_trajectory": lambda backend, device: dk.forward_trajectory(
        _x((2, 5), device=device), SCHEDULE, 6, seed=4, backend=backend),
    "forward_trajectory_empty": lambda backend, device: dk.forward_trajectory(
        _x((0, 5), device=device), SCHEDULE, 6, seed=4, backend=backend),
    "sample_timesteps_empty": lambda backend, device: dk.sample_timesteps(
        (0, 2), 1000, scheme="logit_normal", device=device, seed=1, backend=backend),
    "sample_sigmas": lambda backend, device: dk.sample_sigmas(
        7, scheme="mode", device=device, seed=1, backend=backend),
    "sample_sigmas_refused": lambda backend, device: dk.sample_sigmas(
        7, scheme="mode", mode_scale=3.0, device=device, seed=1, backend=backend),
    **{f"loss_{noising}_{target}_{weighting}": (
        lambda backend, device, noising=noising, target=target, weighting=weighting:
            _loss(noising, target, weighting, device)(backend))
       for noising in ("ddpm", "flow", "step")
       for target in ("eps", "v", "x0", "flow")
       for weighting in (None, "min_snr", "sigma_sqrt", "cosmap", "tensor64")},
    **{f"loss_empty_{noising}_{target}_{weighting}": (
        lambda backend, device, noising=noising, target=target, weighting=weighting:
            _loss(noising, target, weighting, device, shape=(0, 2, 5))(backend))
       for noising in ("ddpm", "flow")
       for target in ("eps", "v", "flow")
       for weighting in (None, "min_snr", "sigma_sqrt", "cosmap")},
    "loss_bfloat16": lambda backend, device: _loss("ddpm", "v", "min_snr", device, dtype=torch.bfloat16)(backend),
}


def _outcome(call, backend, device):
    try:
        result = call(backend, device)
    except Exception as error:  # the refusal itself is what is compared
        return type(error), str(error)
    items = result if isinstance(result, tuple) else (result,)
    return [item for item in items if isinstance(item, torch.Tensor)]


def _scale(name):
    # The largest coefficient of ε in the call's outputs (EDM's σ up to 2, offset noise's 1 + 0.1).
    return 2.0 if name.startswith("edm") else 1.2


@pytest.mark.parametrize("name", list(CALLS))
def test_every_backend_answers_alike(name, device):
    outcomes = {backend: _outcome(CALLS[name], backend, device) for backend in runnable_backends(device)}
    reference = outcomes.pop("reference")
    for backend, outcome in outcomes.items():
        if isinstance(reference, tuple) or isinstance(outcome, tuple):
            assert isinstance(outcome, tuple) and isinstance(reference, tuple), (
                f"{backend}: {outcome if isinstance(outcome, tuple) else 'ran'}; reference: "
                f"{reference if isinstance(reference, tuple) else 'ran'}")
            assert outcome[0] is reference[0], (backend, outcome, reference)
            continue
        assert len(outcome) == len(reference), backend
        for ours, theirs in zip(outcome, reference):
            assert ours.shape == theirs.shape and ours.dtype == theirs.dtype, (backend, ours.shape, ours.dtype,
                                                                               theirs.shape, theirs.dtype)
            assert ours.stride() == theirs.stride(), (backend, ours.stride(), theirs.stride())
            tol = TOLERANCE.get(ours.dtype)
            if name.startswith("loss"):
                torch.testing.assert_close(ours.double(), theirs.double(), rtol=1e-4 + tol["rtol"], atol=1e-5)
            elif ours.is_floating_point():
                torch.testing.assert_close(ours.double(), theirs.double(), rtol=tol["rtol"],
                                           atol=tol["atol"] + NOISE_ATOL * _scale(name))
            else:
                assert ours.numel() == 0 or int((ours - theirs).abs().max()) <= 1


def test_a_float64_weighting_gives_a_float32_loss_everywhere(device):
    for backend in runnable_backends(device):
        loss = _loss("ddpm", "eps", "tensor64", device)(backend)
        assert loss.dtype == torch.float32, backend


def test_outputs_follow_x0s_channels_last_layout(device):
    for backend in runnable_backends(device):
        x0 = _x((2, 3, 4, 5), "channels_last", device=device)
        for out in dk.q_sample(x0, torch.tensor([1, 2]), SCHEDULE, seed=1, return_noise=True, return_v=True,
                               backend=backend):
            assert out.is_contiguous(memory_format=torch.channels_last), backend


EMPTY_FORMS = {  # name -> call(n, backend, device) for a batch of n samples
    "q_sample": lambda n, b, d: dk.q_sample(_x((n, 3, 4), device=d), torch.arange(n, device=d), SCHEDULE, seed=1,
                                            return_noise=True, return_v=True, backend=b),
    "get_velocity": lambda n, b, d: dk.get_velocity(_x((n, 3), device=d), _x((n, 3), device=d, seed=2),
                                                    torch.arange(n, device=d), SCHEDULE, backend=b),
    "flow_match_sample": lambda n, b, d: dk.flow_match_sample(_x((n, 3), device=d), _sigma(n, d), seed=1,
                                                              return_noise=True, return_v=True, backend=b),
    "edm_sample": lambda n, b, d: dk.edm_sample(_x((n, 3), device=d), _sigma(n, d), seed=1, return_noise=True,
                                                backend=b),
    "forward_step": lambda n, b, d: dk.forward_step(_x((n, 3), device=d), torch.arange(n, device=d), SCHEDULE,
                                                    seed=1, return_noise=True, backend=b),
    **{f"loss_{noising}_{target}_{weighting}_{reduction}": (
        lambda n, b, d, noising=noising, target=target, weighting=weighting, reduction=reduction:
            _loss_reduced(noising, target, weighting, reduction, n, b, d))
       for noising, target, weighting in (("ddpm", "v", "min_snr"), ("ddpm", "x0", None), ("flow", "flow", "cosmap"),
                                          ("flow", "v", "sigma_sqrt"), ("step", "eps", None))
       for reduction in ("mean", "sum", "none")},
}


def _loss_reduced(noising, target, weighting, reduction, n, backend, device):
    x0 = _x((n, 2, 3), device=device)
    if noising == "ddpm":
        _, handle = dk.q_sample(x0, torch.arange(n, device=device), SCHEDULE, seed=5, return_noise="seed")
    elif noising == "flow":
        _, handle = dk.flow_match_sample(x0, _sigma(n, device), seed=5, return_noise="seed")
    else:
        _, handle = dk.forward_step(x0, torch.arange(n, device=device), SCHEDULE, seed=5, return_noise="seed")
    return dk.diffusion_loss(_x((n, 2, 3), device=device, seed=1), handle, target=target, x0=x0,
                             weighting=weighting, reduction=reduction, backend=backend)


@pytest.mark.parametrize("name", list(EMPTY_FORMS))
def test_an_empty_batch_answers_in_the_form_of_a_full_one(name, device):
    for backend in runnable_backends(device):
        full, empty = (EMPTY_FORMS[name](n, backend, device) for n in (2, 0))
        full, empty = (r if isinstance(r, tuple) else (r,) for r in (full, empty))
        assert len(full) == len(empty), backend
        for f, e in zip(full, empty):
            assert e.dtype == f.dtype and e.ndim == f.ndim, (backend, e.dtype, f.dtype, e.shape, f.shape)
            assert e.shape == tuple(0 if i == 0 and f.ndim and not name.endswith(("_mean", "_sum")) else s
                                    for i, s in enumerate(f.shape)), (backend, e.shape, f.shape)
