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


def pytest_configure(config):
    # A device that cannot run is a usage error (one line, nonzero exit), not a suite of skips that passes.
    name = config.getoption("--device")
    if name is None:
        return
    try:
        device = torch.device(name)
    except RuntimeError:
        raise pytest.UsageError(f"--device {name!r}: choose cuda, cuda:N or cpu") from None
    if device.type == "cuda" and not torch.cuda.is_available():
        raise pytest.UsageError("--device cuda asked for, but torch sees no CUDA device")
    if device.type == "cpu" and os.environ.get("TRITON_INTERPRET") != "1":
        raise pytest.UsageError("--device cpu runs the kernels in Triton's interpreter: set TRITON_INTERPRET=1 "
                                "before pytest starts")
    if device.type not in ("cuda", "cpu"):
        raise pytest.UsageError(f"--device {name!r}: the kernels run on cuda (NVIDIA, ROCm) or cpu (interpreter)")


@pytest.fixture(scope="session")
def device(request) -> torch.device:
    return torch.device(request.config.getoption("--device") or ("cuda" if torch.cuda.is_available() else "cpu"))


@pytest.fixture
def schedule():
    from diffusion_kernels import NoiseSchedule

    return NoiseSchedule.linear()
