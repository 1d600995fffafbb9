"""The wheel as built ships every module of the source tree (kernels/ as diffusion_kernels.kernels),
and declares only torch, triton and numpy as requirements."""
import importlib.util
import os
import pathlib
import subprocess
import sys
import zipfile

import pytest

ROOT = pathlib.Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def wheel(tmp_path_factory):
    out = tmp_path_factory.mktemp("wheel")
    result = subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q",
                             "-w", str(out), str(ROOT)], capture_output=True, text=True)
    if result.returncode != 0 and "No module named pip" in result.stderr:
        pytest.skip("pip is not installed in this environment")
    assert result.returncode == 0, result.stderr
    (path,) = out.glob("diffusion_kernels-*.whl")
    return zipfile.ZipFile(path)


def test_wheel_holds_every_source_module(wheel):
    expected = {f"diffusion_kernels/{p.relative_to(ROOT / 'diffusion_kernels').as_posix()}"
                for p in (ROOT / "diffusion_kernels").rglob("*.py")}
    expected |= {f"diffusion_kernels/kernels/{p.name}" for p in (ROOT / "kernels").glob("*.py")}
    shipped = {name for name in wheel.namelist() if name.endswith(".py")}
    assert expected - shipped == set()
    assert "diffusion_kernels/integrations/diffusers.py" in shipped


def test_wheel_requires_only_the_framework_and_the_compiler(wheel):
    (metadata,) = [n for n in wheel.namelist() if n.endswith(".dist-info/METADATA")]
    requires = [line.split(":", 1)[1].strip() for line in wheel.read(metadata).decode().splitlines()
                if line.startswith("Requires-Dist:") and "extra ==" not in line]
    names = {r.split(";")[0].split(">")[0].split("<")[0].split("=")[0].split("!")[0].strip() for r in requires}
    assert names == {"torch", "triton", "numpy"}


NOISING_SCRIPT = """
import sys
if sys.argv[1] == "without_numba":
    sys.modules["numba"] = None  # as where the [cpu] extra is not installed
import torch, triton
before = set(sys.modules)  # what torch and Triton load themselves (torch 2.13 loads tqdm) is not ours
if sys.argv[1] == "with_numba":
    import numba  # numba's own imports (it loads scipy when that is installed) are not ours either
    before = set(sys.modules)
import diffusion_kernels as dk
s = dk.NoiseSchedule.cosine(50)
x = torch.randn(2, 3, 4)
t = torch.tensor([1, 40])
xt, h = dk.q_sample(x, t, s, seed=1, return_noise="seed")
dk.noise_mse(xt, h)
dk.get_velocity(x, torch.randn_like(x), t, s)
dk.flow_match_sample(x, torch.tensor([0.2, 0.9]), seed=2)
dk.edm_sample(x, torch.tensor([0.5, 3.0]), seed=3)
dk.forward_step(x, t, s, seed=4)
dk.forward_trajectory(x, s, 3, seed=5)
extras = ("scipy", "matplotlib", "sklearn", "PIL", "tqdm", "diffusers", "hypothesis")
if sys.argv[1] == "with_numba":
    extras = extras[1:]  # numba's first compilation loads scipy.linalg (its BLAS bindings) where installed
print([m for m in set(sys.modules) - before if m.split(".")[0] in extras])
"""


@pytest.mark.parametrize("interpret", ["0", "1"])
@pytest.mark.parametrize("numba", ["without_numba", "with_numba"])
def test_noising_loads_none_of_the_extras(interpret, numba):
    # Every public noising call and the loss: on the compiled CPU path or the reference (no interpreter,
    # as a plain CPU install runs them) and on the interpreted kernels.
    if numba == "with_numba" and importlib.util.find_spec("numba") is None:
        pytest.skip("numba (the [cpu] extra) is not installed")
    env = {**os.environ, "TRITON_INTERPRET": interpret}
    run = subprocess.run([sys.executable, "-c", NOISING_SCRIPT, numba], capture_output=True, text=True, env=env)
    assert run.returncode == 0, run.stderr
    assert run.stdout.strip() == "[]", f"TRITON_INTERPRET={interpret}, {numba}: {run.stdout}"


@pytest.mark.skipif(sys.prefix == sys.base_prefix, reason="runs in a virtual environment (the make venv) only")
def test_the_venv_holds_its_own_test_runner():
    # An activated venv's `pytest` must be this Python's, not one found further down PATH.
    assert (pathlib.Path(sys.prefix) / "bin" / "pytest").exists()


def test_pytest_device_cuda_without_cuda_is_a_one_line_error(tmp_path):
    import torch

    if torch.cuda.is_available():
        pytest.skip("this machine has CUDA: --device cuda runs")
    run = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "--device", "cuda",
                          str(ROOT / "tests" / "test_seeding.py")], capture_output=True, text=True, cwd=ROOT)
    assert run.returncode != 0
    lines = [line for line in (run.stdout + run.stderr).splitlines() if line.strip()]
    assert lines == ["ERROR: --device cuda asked for, but torch sees no CUDA device"], lines


def test_the_wheel_carries_its_license_type_marker_and_version(wheel):
    import diffusion_kernels

    names = wheel.namelist()
    assert "diffusion_kernels/py.typed" in names
    (metadata,) = [n for n in names if n.endswith(".dist-info/METADATA")]
    text = wheel.read(metadata).decode()
    assert "License-Expression: MIT" in text
    assert f"Version: {diffusion_kernels.__version__}" in text
    assert any(n.endswith(".dist-info/licenses/LICENSE") for n in names)
