"""The public modules type-check under mypy --strict (pyproject.toml's [tool.mypy]), and a user's strictly
checked script sees the annotations (the package ships py.typed)."""
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
USER_SCRIPT = '''
import torch
import diffusion_kernels as dk

schedule = dk.NoiseSchedule.cosine(T=1000)
x0 = torch.randn(4, 3, 8, 8)
t = dk.sample_timesteps(4, schedule.T, seed=0)
x_t, noised = dk.q_sample(x0, t, schedule, seed=1, return_noise="seed")
sigma: torch.Tensor = dk.sample_sigmas(4, shift=3.0)
scheme, weighting = dk.script_recipe("cosmap")
loss: torch.Tensor = dk.noise_mse(torch.zeros_like(x0), noised)  # type: ignore[arg-type]
'''


def _mypy(*args: str) -> subprocess.CompletedProcess:
    pytest.importorskip("mypy", reason="mypy is a test dependency (pip install -e .[test])")
    return subprocess.run([sys.executable, "-m", "mypy", "--no-incremental", *args], capture_output=True, text=True,
                          cwd=ROOT, timeout=600)


def test_the_public_modules_pass_mypy_strict():
    run = _mypy()  # the files and settings of pyproject.toml
    assert run.returncode == 0, run.stdout + run.stderr


def test_a_users_strict_script_reads_the_annotations(tmp_path):
    script = tmp_path / "train.py"
    script.write_text(USER_SCRIPT)
    (tmp_path / "none.ini").write_text("[mypy]\n")  # not the project's settings: a user's own
    # (the package's own modules silent, as they are for a user whose copy is installed in site-packages)
    run = _mypy("--strict", "--ignore-missing-imports", "--warn-unused-ignores", "--follow-imports", "silent",
                "--config-file", str(tmp_path / "none.ini"), str(script))
    # The one ignore is needed because q_sample's result is a union (x_t, or x_t with its handle): strict mode
    # must see the handle's type to need it, so an unused ignore would mean the annotations were not read.
    assert run.returncode == 0, run.stdout + run.stderr
