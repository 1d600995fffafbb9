"""What a user meets first: dir() lists the public API, a missing host library is named with its install line,
and the first CPU call after an install says, once, that the loops are compiling."""
import os
import subprocess
import sys

import pytest

import diffusion_kernels as dk
from diffusion_kernels import cpu_noise


def test_dir_lists_the_public_api_only():
    names = dir(dk)
    assert names == sorted([*dk.__all__, "__version__"])
    assert "importlib" not in names and "api" not in names and "q_sample" in names


def test_a_fused_scheduler_without_diffusers_names_the_package(monkeypatch):
    import builtins

    from diffusion_kernels.integrations import diffusers as fused

    real = builtins.__import__

    def without_diffusers(name, *args, **kwargs):
        if name == "diffusers" or name.startswith("diffusers."):
            raise ModuleNotFoundError("No module named 'diffusers'", name="diffusers")
        return real(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", without_diffusers)
    monkeypatch.setattr(fused, "_CLASSES", {})
    with pytest.raises(ModuleNotFoundError, match="diffusers is not installed: pip install diffusers"):
        fused._fused_class("DDPMScheduler")


CALL = "import torch, diffusion_kernels as dk; dk.q_sample(torch.zeros(2, 3), 1, dk.NoiseSchedule.linear(), seed=1, " \
       "backend='cpu')"


@pytest.mark.skipif(not cpu_noise.available(), reason="the CPU loops need numba (the [cpu] extra)")
def test_the_first_cpu_call_after_an_install_says_it_compiles_once(tmp_path):
    # A fresh cache folder: the first process compiles (and says so, once), the second loads the cache (silent).
    env = {**os.environ, "NUMBA_CACHE_DIR": str(tmp_path)}
    env.pop(cpu_noise.QUIET, None)
    first = subprocess.run([sys.executable, "-c", CALL], capture_output=True, text=True, env=env, timeout=300)
    second = subprocess.run([sys.executable, "-c", CALL], capture_output=True, text=True, env=env, timeout=300)
    quiet = subprocess.run([sys.executable, "-c", CALL], capture_output=True, text=True, timeout=300,
                           env={**env, "NUMBA_CACHE_DIR": str(tmp_path / "other"), cpu_noise.QUIET: "1"})
    assert first.returncode == second.returncode == quiet.returncode == 0, first.stderr + second.stderr
    notices = [line for line in first.stderr.splitlines() if "compiling the CPU noise loops" in line]
    assert len(notices) == 1, first.stderr
    assert "compiling" not in second.stderr and "compiling" not in quiet.stderr
