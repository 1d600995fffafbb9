"""A plain q_sample call's decisions, made once for each kind of call and replayed.

A training loop noises every step the same way: one dtype, device, shape and schedule, t of one shape on
one device, ε drawn, no other option. What follows from those (that the arguments fit, the backend, the
coefficient tables where the backend reads them) is decided by the full path on the first call of a kind
and kept. What each call brings anew is checked anew: t's values (``checks.check_t_range``, the full path's
check), a transform, torch.compile or autograd in effect (the full path then runs), the default stream (the
rank of a process group started since), the seed. A backend without a plain pass (the reference) keeps
taking the full path.
"""
from __future__ import annotations

from typing import Any, Callable, NamedTuple

import torch
from torch.autograd import forward_ad

from .. import checks, dispatch, seeding
from ..forms import ddpm_form, ddpm_form_of
from ..schedules import NoiseSchedule
from .handle import NoiseHandle

# Read on every call: a forward-mode level or a torch.func transform in effect sends it down the full path.
_interpreter_stack = torch._C._functorch.get_interpreter_stack

LIMIT = 64  # kinds of call kept: a process that cycles through more starts over


class Plan(NamedTuple):
    plain: Callable[..., tuple]  # the backend's plain pass: noising/cpu.py or triton.py ``plain``
    tables: tuple  # (sqrt(ᾱ), sqrt(1 − ᾱ)) where the backend reads them
    T: int
    check_on_host: bool  # t lives on the host: its values are checked per call (on the GPU the kernel does)
    prepared: Any  # what the backend's plain pass keeps for the kind (its ``prepare_plain``)


_PLANS: dict = {}


def replay(x0: torch.Tensor, t: Any, schedule: Any, seed: Any, return_noise: Any, backend: str) -> Any:
    """The result of ``q_sample(x0, t, schedule, seed=seed, return_noise=return_noise, backend=backend)``
    from its kind's plan, or None where the full path must run it."""
    if (type(x0) is not torch.Tensor or type(t) is not torch.Tensor or type(schedule) is not NoiseSchedule
            or not (seed is None or type(seed) is int) or type(backend) is not str
            or not (return_noise is True or return_noise is False or (type(return_noise) is str and
                                                                      return_noise == "seed"))
            or not x0.is_contiguous() or torch.compiler.is_compiling()
            or forward_ad._current_level >= 0 or _interpreter_stack()
            or (x0.requires_grad and torch.is_grad_enabled())):
        return None
    plan = _PLANS.get((x0.dtype, x0.device, x0.shape, t.dtype, t.device, t.shape, schedule, backend, return_noise))
    if plan is None:
        plan = _learn(x0, t, schedule, backend, return_noise)
    if plan is False:
        return None
    if plan.check_on_host:
        checks.check_t_range(t, plan.T)
    stream = seeding.default_stream()
    call_seed = seeding.draw_seed() if seed is None else seeding.check_seed(seed)
    index = t if t.dtype is torch.int64 else t.to(torch.int64)
    out, eps = plan.plain(x0, index, plan.tables, call_seed, stream, return_noise is True, plan.prepared)
    if return_noise is False:
        return out
    if return_noise is True:
        return out, eps
    form = ddpm_form_of(index, schedule, checks.alpha_bars_of(schedule), True)
    return out, NoiseHandle.made(call_seed, stream, x0.shape, index.shape, x0.dtype, x0.device, form)


def _learn(x0: torch.Tensor, t: torch.Tensor, schedule: NoiseSchedule, backend: str, return_noise: Any) -> Plan | bool:
    """The plan of a new kind of call, made by the full path's own checks and choice (False: none, the full
    path runs every call of this kind); they raise, with the full path's messages, for arguments that do
    not fit."""
    form = ddpm_form(checks.check_x0(x0), t, schedule, check_t=True)
    implementation = dispatch.implementation("noising", backend, x0, None, *form.inputs)
    plain = getattr(implementation, "plain", None)
    plan: Plan | bool = False
    if plain is not None and x0.dtype in implementation.PLAIN_DTYPES and not form.inputs[0].requires_grad:
        tables = form.tables(x0.device)
        prepared = implementation.prepare_plain(x0, form.index, tables, return_noise is True, t.is_cuda)
        plan = Plan(plain, tables, form.inputs[0].numel(), not t.is_cuda, prepared)
    if len(_PLANS) >= LIMIT:
        _PLANS.clear()
    _PLANS[(x0.dtype, x0.device, x0.shape, t.dtype, t.device, t.shape, schedule, backend, return_noise)] = plan
    return plan

