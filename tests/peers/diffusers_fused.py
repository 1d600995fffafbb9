"""A pytest plugin that runs diffusers' own scheduler tests with this library's drop-ins in place.

    DK_FUSED=patch    every scheduler class that patch() accepts has add_noise/get_velocity fused
    DK_FUSED=classes  diffusers.<Name>Scheduler is replaced by Fused<Name>Scheduler for those classes

Run from a diffusers checkout (see run_diffusers_scheduler_tests.sh):

    DK_FUSED=patch python -m pytest tests/schedulers -p diffusers_fused

At the end it prints how many add_noise / get_velocity calls each fused class served, so a run that
never reached the fused code is visible as such.
"""
import collections
import os

import diffusers

from diffusion_kernels.integrations import diffusers as dk_diffusers

CALLS = collections.Counter()


def _counting(fn, label):
    def wrapper(scheduler, *args, **kwargs):
        CALLS[f"{type(scheduler).__name__}.{label}"] += 1
        return fn(scheduler, *args, **kwargs)

    wrapper.__wrapped__ = fn
    return wrapper


def pytest_configure(config):
    mode = os.environ.get("DK_FUSED", "patch")
    accepted = [name for name in dk_diffusers.FUSED_SCHEDULERS if hasattr(diffusers, name)]
    fused_add = _counting(dk_diffusers.fused_add_noise, "add_noise")
    fused_velocity = _counting(dk_diffusers.fused_get_velocity, "get_velocity")
    if mode == "patch":
        for name in accepted:
            cls = getattr(diffusers, name)
            cls.add_noise = fused_add
            if hasattr(cls, "get_velocity"):
                cls.get_velocity = fused_velocity
    elif mode == "classes":
        fused = {name: getattr(dk_diffusers, f"Fused{name}") for name in accepted}
        for name, cls in fused.items():
            cls.add_noise = fused_add
            if "get_velocity" in cls.__dict__:
                cls.get_velocity = fused_velocity
            setattr(diffusers, name, cls)
            setattr(diffusers.schedulers, name, cls)
    else:
        raise ValueError(f"DK_FUSED must be 'patch' or 'classes', got {mode!r}")


def pytest_terminal_summary(terminalreporter):
    terminalreporter.write_line(f"diffusion_kernels fused calls ({os.environ.get('DK_FUSED', 'patch')}):")
    for key, count in sorted(CALLS.items()):
        terminalreporter.write_line(f"  {key}: {count}")
    if not CALLS:
        terminalreporter.write_line("  none: the fused add_noise/get_velocity were never called")
