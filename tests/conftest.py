"""Test setup: the same tests run on CUDA when a GPU is present, else through
Triton's interpreter on CPU tensors (TRITON_INTERPRET=1, set before Triton is
imported)."""
import os

import pytest
import torch

if not torch.cuda.is_available():
    os.environ.setdefault("TRITON_INTERPRET", "1")


def pytest_addoption(parser):
    parser.addoption("--device", default=None, help="device for kernel tests: cuda or cpu (default: cuda if present)")


@pytest.fixture(scope="session")
def device(request) -> torch.device:
    name = request.config.getoption("--device") or ("cuda" if torch.cuda.is_available() else "cpu")
    if name.startswith("cuda") and not torch.cuda.is_available():
        pytest.skip("--device cuda asked for, but torch sees no CUDA device")
    if name == "cpu" and os.environ.get("TRITON_INTERPRET") != "1":
        pytest.skip("kernel tests on CPU need TRITON_INTERPRET=1 set before Triton is imported")
    return torch.device(name)


@pytest.fixture
def schedule():
    from diffusion_kernels import NoiseSchedule

    return NoiseSchedule.linear()
