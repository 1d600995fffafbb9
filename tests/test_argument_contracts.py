"""Arguments are read by what they mean, never by truthiness or by silently ignoring them."""
import numpy as np
import pytest
import torch

import diffusion_kernels as dk


@pytest.fixture(params=["triton", "reference"])
def backend(request, device):
    return request.param


@pytest.mark.parametrize("flag", [True, 1, np.bool_(True), torch.tensor(True)], ids=["True", "1", "np", "tensor"])
def test_return_noise_given_as_any_true_value_returns_the_noise(device, backend, schedule, flag):
    x0 = torch.randn(3, 9, device=device)
    x_t, eps = dk.q_sample(x0, torch.tensor([1, 2, 3]), schedule, seed=5, return_noise=flag, backend=backend)
    assert isinstance(eps, torch.Tensor) and eps.shape == x0.shape
    torch.testing.assert_close(x_t, dk.q_sample(x0, torch.tensor([1, 2, 3]), schedule, eps, backend="reference"))


@pytest.mark.parametrize("flag", [False, 0, np.bool_(False)], ids=["False", "0", "np"])
def test_return_noise_false_values_return_x_t_alone(device, schedule, flag):
    out = dk.q_sample(torch.randn(2, 4, device=device), 5, schedule, seed=1, return_noise=flag)
    assert isinstance(out, torch.Tensor)


@pytest.mark.parametrize("flag", ["yes", [1], 2, torch.tensor([1, 1])], ids=["str", "list", "two", "tensor2"])
def test_return_flags_that_are_not_booleans_are_refused(device, schedule, flag):
    with pytest.raises((TypeError, ValueError), match="return_noise"):
        dk.q_sample(torch.randn(2, 4, device=device), 5, schedule, return_noise=flag)


# Beyond both ends, and int64 values whose low word alone would be a valid step (2**32 + 5) or whose
# high word is 0 or all ones (the kernels clamp an int64 t from its two 32-bit words).
@pytest.mark.parametrize("t_value", [-1, -5, 1000, 5000, -2**31 - 1, 2**31, 2**32 - 1, 2**32, 2**32 + 5,
                                     -2**32 + 5, 2**40 + 3, 2**63 - 1, -2**63])
@pytest.mark.parametrize("form", ["int", "cpu_tensor", "device_tensor"])
def test_unchecked_t_is_clamped_on_both_paths(device, schedule, t_value, form):
    x0 = torch.randn(2, 6, device=device)
    noise = torch.randn_like(x0)
    clamped = min(max(t_value, 0), schedule.T - 1)
    t = {"int": t_value, "cpu_tensor": torch.tensor([t_value, 3]),
         "device_tensor": torch.tensor([t_value, 3], device=device)}[form]
    t_clamped = clamped if form == "int" else torch.tensor([clamped, 3])
    expected = dk.q_sample(x0, t_clamped, schedule, noise, backend="reference")
    for backend in ("triton", "reference"):
        torch.testing.assert_close(dk.q_sample(x0, t, schedule, noise, backend=backend, check_t=False), expected)
        torch.testing.assert_close(dk.forward_step(x0, t, schedule, noise, backend=backend, check_t=False),
                                   dk.forward_step(x0, t_clamped, schedule, noise, backend="reference"))


@pytest.mark.parametrize("t_value", [-2**31, -7, 0, 999, 1000, 2**31 - 1])
def test_an_int32_t_is_clamped_as_an_int64_one(device, schedule, t_value):
    x0 = torch.randn(2, 6, device=device)
    t32 = torch.tensor([t_value, 3], dtype=torch.int32, device=device)
    for backend in ("triton", "reference"):
        torch.testing.assert_close(dk.q_sample(x0, t32, schedule, seed=4, backend=backend, check_t=False),
                                   dk.q_sample(x0, t32.long(), schedule, seed=4, backend=backend, check_t=False))


@pytest.mark.parametrize("strength", [float("nan"), float("inf"), "0.5", None, [0.1]], ids=str)
def test_offset_noise_must_be_a_finite_number(device, schedule, strength):
    with pytest.raises((TypeError, ValueError), match="offset_noise"):
        dk.q_sample(torch.randn(2, 4, device=device), 3, schedule, offset_noise=strength)


@pytest.mark.parametrize("extra", [dict(seed=3), dict(offset_noise=0.1), dict(generator=torch.Generator())],
                         ids=["seed", "offset_noise", "generator"])
def test_given_noise_with_drawing_arguments_is_refused(device, schedule, extra):
    x0 = torch.randn(2, 4, device=device)
    with pytest.raises(ValueError, match="noise was given.*" + next(iter(extra))):
        dk.q_sample(x0, 3, schedule, torch.randn_like(x0), **extra)


def test_edm_sigma_beyond_float32_is_refused(device):
    with pytest.raises(ValueError, match="EDM needs sigma"):
        dk.edm_sample(torch.randn(2, 3, device=device), 1e39)


@pytest.mark.parametrize("t", [-2**70, 2**70])
def test_huge_int_t_is_named(device, schedule, t):
    with pytest.raises(ValueError, match="outside \\[0, T\\)"):
        dk.q_sample(torch.randn(2, 3, device=device), t, schedule)


def test_meta_t_is_named(device, schedule):
    with pytest.raises(ValueError, match="meta device"):
        dk.q_sample(torch.randn(2, 3, device=device), torch.tensor([1, 2], device="meta"), schedule)


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the error on a machine without CUDA")
def test_device_seed_without_cuda_names_the_problem():
    with pytest.raises(RuntimeError, match="no CUDA device"):
        dk.DeviceSeed(5)


@pytest.mark.parametrize("snapshots", [[2.5], ["3"], [None]], ids=str)
def test_snapshot_steps_must_be_ints(device, schedule, snapshots):
    with pytest.raises(TypeError, match="snapshot steps must be ints"):
        dk.forward_trajectory(torch.randn(4, device=device), schedule, 5, snapshots=snapshots, seed=1)


@pytest.mark.parametrize("integer", [np.int64(3), np.int32(3), torch.tensor(3), torch.tensor([3])],
                         ids=["np.int64", "np.int32", "0-d tensor", "1-element tensor"])
def test_integer_likes_are_taken_wherever_an_int_is(device, schedule, integer):
    x0 = torch.randn(2, 5, device=device)
    assert torch.equal(dk.forward_trajectory(x0, schedule, integer, seed=integer, stream=integer),
                       dk.forward_trajectory(x0, schedule, 3, seed=3, stream=3))
    # (as t, a 1-element tensor is t of shape (1,), one per sample of a batch of one)
    t = integer if getattr(integer, "ndim", 0) == 0 else 3
    assert torch.equal(dk.q_sample(x0, t, schedule, seed=integer, stream=integer),
                       dk.q_sample(x0, 3, schedule, seed=3, stream=3))
    _, kept = dk.forward_trajectory(x0, schedule, 5, snapshots=[integer], seed=1)
    assert list(kept) == [3]
    assert dk.sample_timesteps(integer, integer, seed=1).shape == (3,)


class _Tagged(torch.Tensor):
    """A tensor subclass of the kind libraries wrap tensors in."""


@pytest.mark.parametrize("argument", ["x0", "noise", "t", "sigma", "schedule"])
def test_tensor_subclasses_are_refused_with_what_to_pass(argument):
    x0, noise, t, sigma = torch.randn(2, 3), torch.randn(2, 3), torch.tensor([1, 2]), torch.tensor([0.2, 0.5])
    schedule = dk.NoiseSchedule.linear().alpha_bars
    wrapped = {"x0": x0, "noise": noise, "t": t, "sigma": sigma, "schedule": schedule}
    wrapped[argument] = wrapped[argument].as_subclass(_Tagged)
    with pytest.raises(TypeError, match=f"{argument} is a _Tagged, a tensor subclass.*as_subclass\\(torch.Tensor\\)"):
        if argument == "sigma":
            dk.flow_match_sample(wrapped["x0"], wrapped["sigma"], seed=1)
        else:
            dk.q_sample(wrapped["x0"], wrapped["t"], wrapped["schedule"], wrapped["noise"])


def test_a_parameter_is_a_plain_tensor():
    x0 = torch.nn.Parameter(torch.randn(2, 3))
    assert dk.q_sample(x0, 4, dk.NoiseSchedule.linear(), seed=1).shape == (2, 3)


DTENSOR_SCRIPT = """
import os, torch, torch.distributed as dist
from torch.distributed.device_mesh import init_device_mesh
from torch.distributed.tensor import distribute_tensor, Shard
import diffusion_kernels as dk
dist.init_process_group("gloo", init_method="tcp://127.0.0.1:" + os.environ["PORT"], rank=0, world_size=1)
mesh = init_device_mesh("cpu", (1,))
x0 = distribute_tensor(torch.randn(4, 3), mesh, [Shard(0)])
for backend in ("cpu", "reference", "auto"):
    try:  # get_velocity takes no DTensor (q_sample and the other noising entries do: test_sharded_ranks.py)
        dk.get_velocity(x0, x0.to_local(), torch.tensor([1, 2, 3, 4]), dk.NoiseSchedule.linear(), backend=backend)
    except TypeError as error:
        print(error)
dist.destroy_process_group()
"""


def test_a_dtensor_where_a_call_takes_none_is_refused_naming_to_local_and_full_tensor():
    import socket
    import subprocess
    import sys

    dist = pytest.importorskip("torch.distributed")
    if not dist.is_available() or not dist.is_gloo_available():
        pytest.skip("torch.distributed with gloo is not available in this build")
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    run = subprocess.run([sys.executable, "-c", DTENSOR_SCRIPT], capture_output=True, text=True, timeout=300,
                         env={**__import__("os").environ, "PORT": str(port)})
    lines = run.stdout.splitlines()
    assert run.returncode == 0 and len(lines) == 3, run.stdout + run.stderr
    assert all("x0 is a DTensor" in line and "x0.to_local()" in line and "x0.full_tensor()" in line for line in lines)
