"""The providers: one callable per (provider, mode) unit of work, on the same inputs."""
from __future__ import annotations

import torch
import torch.nn.functional as F

from .. import dispatch, reference
from ..loss.entry import noise_mse
from ..noising.entry import forward_step, q_sample
from ..trajectory.entry import forward_trajectory
from .spec import TRAINING_MODES, TRAJECTORY_STEPS
from .training import training_step

DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}


def _textbook(x0, t, ab, noise=None):
    """The eager textbook q_sample: randn_like when no noise is given, then the reference formula."""
    if noise is None:
        noise = torch.randn_like(x0)
    return reference.q_sample(x0, t, ab, noise), noise


OURS = {"fused": "auto", "cpu": "cpu", "reference": "reference"}  # provider -> the backend it calls


def _offered(backend: str, x0: torch.Tensor) -> bool:
    """Whether ``backend`` runs on ``x0`` here (the dispatch point refuses it otherwise: the CPU loop on a GPU
    tensor or without numba)."""
    try:
        dispatch.select(backend, x0)
    except (RuntimeError, TypeError):
        return False
    return True


def _ours(backend, mode, x0, t, noise, grad, schedule):
    """Our call for ``mode`` on ``backend``."""
    steps = TRAJECTORY_STEPS - 1
    if mode == "backward":
        x = x0.detach().requires_grad_(True)
        y = q_sample(x, t, schedule, noise, backend=backend)
        return lambda: torch.autograd.grad(y, x, grad, retain_graph=True)
    if mode == "loss":
        _, handle = q_sample(x0, t, schedule, seed=1, return_noise="seed", backend=backend)
        return lambda: noise_mse(noise, handle, backend=backend)
    return {"xt_eps": lambda: q_sample(x0, t, schedule, return_noise=True, backend=backend),
            "xt": lambda: q_sample(x0, t, schedule, backend=backend),
            "given_noise": lambda: q_sample(x0, t, schedule, noise, backend=backend),
            "step": lambda: forward_step(x0, t, schedule, backend=backend),
            "trajectory": lambda: forward_trajectory(x0, schedule, steps, backend=backend)}[mode]


def _plain(mode, x0, t, noise, schedule, alphas):
    """The plain-PyTorch counterpart of the step, trajectory and loss modes, each drawing its ε with
    randn_like (for the loss too: noise_mse regenerates its ε, the counterpart draws one)."""
    if mode == "step":
        return lambda: reference.forward_step(x0, t, alphas, torch.randn_like(x0))

    def trajectory():
        x = x0
        for s in range(TRAJECTORY_STEPS):
            x = reference.forward_step(x, s, alphas, torch.randn_like(x))
        return x

    if mode == "trajectory":
        return trajectory
    return lambda: F.mse_loss(noise, torch.randn_like(noise))


def cases(provider, mode, x0, t, noise, grad, schedule, ab_device, compiled, scheduler):
    """The callable that performs one (provider, mode) unit of work on these inputs, or None if not offered."""
    if provider == "copy":
        out = torch.empty_like(x0)
        return lambda: out.copy_(x0)
    if provider in OURS and not _offered(OURS[provider], x0):
        return None
    if mode in TRAINING_MODES:
        return training_step(provider, mode, x0, schedule, OURS.get(provider))
    if provider in OURS:
        return _ours(OURS[provider], mode, x0, t, noise, grad, schedule)
    if mode in ("step", "trajectory", "loss"):
        if provider != "eager":
            return None
        return _plain(mode, x0, t, noise, schedule, schedule.alphas.to(x0.device))
    if mode == "backward":
        x = x0.detach().requires_grad_(True)
        if provider == "eager":
            y = reference.q_sample(x, t, ab_device, noise)
        elif provider == "compile":
            y = compiled["given"](x, t, ab_device, noise)
        elif provider == "diffusers" and scheduler is not None:
            y = scheduler.add_noise(x, noise, t)
        else:
            return None
        return lambda: torch.autograd.grad(y, x, grad, retain_graph=True)
    if provider == "eager":
        return {"xt_eps": lambda: _textbook(x0, t, ab_device),
                "xt": lambda: _textbook(x0, t, ab_device)[0],
                "given_noise": lambda: reference.q_sample(x0, t, ab_device, noise)}[mode]
    if provider == "compile":
        return {"xt_eps": lambda: compiled["drawn"](x0, t, ab_device),
                "xt": lambda: compiled["drawn_xt"](x0, t, ab_device),
                "given_noise": lambda: compiled["given"](x0, t, ab_device, noise)}[mode]
    if provider == "diffusers" and scheduler is not None:
        return {"xt_eps": lambda: (lambda n: (scheduler.add_noise(x0, n, t), n))(torch.randn_like(x0)),
                "xt": lambda: scheduler.add_noise(x0, torch.randn_like(x0), t),
                "given_noise": lambda: scheduler.add_noise(x0, noise, t)}[mode]
    return None


def compiled_providers():
    def drawn(x0, t, ab):
        return _textbook(x0, t, ab)

    def drawn_xt(x0, t, ab):
        return _textbook(x0, t, ab)[0]

    def given(x0, t, ab, noise):
        return reference.q_sample(x0, t, ab, noise)

    return {name: torch.compile(fn, dynamic=False)
            for name, fn in (("drawn", drawn), ("drawn_xt", drawn_xt), ("given", given))}


def diffusers_scheduler():
    try:
        from diffusers import DDPMScheduler
    except ImportError:
        return None
    return DDPMScheduler()


def compile_settings():
    """torch.compile settings for a fair sweep.

    The backward is timed by repeated autograd.grad(..., retain_graph=True) over
    one forward graph, which compiled graphs allow only without buffer
    donation; and every (size, dtype) gets its own specialised graph, so the
    recompile limit must exceed the number of cases.
    """
    import contextlib

    import torch._dynamo.config as dynamo_config
    import torch._functorch.config as functorch_config

    stack = contextlib.ExitStack()
    stack.enter_context(functorch_config.patch(donated_buffer=False))
    stack.enter_context(dynamo_config.patch(recompile_limit=256))
    return stack


