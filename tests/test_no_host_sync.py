"""No noising call or loss makes the host wait for the GPU, whether t and σ live on the host or the device.

On a CUDA machine the calls run under ``torch.cuda.set_sync_debug_mode("error")``. Everywhere, the host
code of the GPU path runs on "meta" tensors standing in for GPU ones (the kernels replaced by stubs that
return outputs of the right shape), and every aten operation is watched: a copy between devices that
is not asynchronous, or a read of a device value by the host, fails the test.
"""
import pytest
import torch
from torch.utils._python_dispatch import TorchDispatchMode

import diffusion_kernels as dk
from diffusion_kernels import dispatch
from diffusion_kernels.bench.host import NoLaunch
from diffusion_kernels.kernels import noising as noising_kernels
from diffusion_kernels.loss import launcher as loss_launcher
from diffusion_kernels.noising import function as noising_function
from diffusion_kernels.trajectory import launcher as trajectory_launcher

aten = torch.ops.aten
HOST_READS = {aten._local_scalar_dense.default, aten.item.default}


class SyncWatch(TorchDispatchMode):
    """Records every blocking copy between two devices and every host read of a non-CPU tensor."""

    def __init__(self):
        super().__init__()
        self.syncs = []

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        if func in HOST_READS and args[0].device.type != "cpu":
            self.syncs.append(f"{func} reads a {args[0].device} value on the host")
        elif func is aten._to_copy.default and "device" in kwargs and kwargs["device"] is not None:
            src, dst = args[0].device, torch.device(kwargs["device"])
            if src.type != dst.type and not kwargs.get("non_blocking", False):
                self.syncs.append(f"blocking copy {src} -> {dst} of shape {tuple(args[0].shape)}")
        elif func is aten.copy_.default and args[0].device.type != args[1].device.type:
            if not (len(args) > 2 and args[2]) and not kwargs.get("non_blocking", False):
                self.syncs.append(f"blocking copy_ {args[1].device} -> {args[0].device}")
        return func(*args, **kwargs)


@pytest.fixture
def gpu_path_on_meta(monkeypatch):
    """The triton branch of every call, its launches stubbed, so its host code runs on meta tensors."""
    monkeypatch.setattr(dispatch, "select", lambda backend, x, *others: "triton")

    def noise_affine(x, t_rows, a, b, c, d, noise, seed, stream, offset, write_noise, return_v, check,
                     perturbation=0.0, runs=None):
        return (torch.empty_like(x), torch.empty_like(x) if write_noise else None,
                torch.empty_like(x) if return_v else None)

    monkeypatch.setattr(noising_function, "apply", noise_affine)
    # A plain call (noising/plans.py) launches the kernel itself: its launch is a no-op.
    monkeypatch.setattr(noising_kernels, "noising_fwd_contiguous_kernel",
                        NoLaunch(noising_kernels.noising_fwd_contiguous_kernel))
    monkeypatch.setattr(trajectory_launcher, "forward_trajectory",
                        lambda x0, a, b, t_end, seed, stream, snapshot_steps, runs=None: (
                            torch.empty_like(x0), torch.empty((len(snapshot_steps),) + x0.shape, device=x0.device)))
    monkeypatch.setattr(loss_launcher, "forward", lambda pred, rows, seed, stream, offset, target,
                        runs=None: (
        torch.empty((rows,), device=pred.device)), raising=False)
    return torch.device("meta")


def _calls(device, schedule, places=("host", "device")):
    x = torch.empty(4, 3, 8, 8, device=device)
    t_host, sigma_host = torch.tensor([0, 10, 500, 999]), torch.tensor([0.1, 0.5, 0.7, 0.99])
    t_dev, sigma_dev = t_host.to(device, non_blocking=True), sigma_host.to(device, non_blocking=True)
    ab = schedule.alpha_bars.clone()
    calls = {}
    for where, t, sigma in (("host", t_host, sigma_host), ("device", t_dev, sigma_dev)):
        if where not in places:
            continue
        calls.update({
            f"q_sample, t on the {where}": lambda t=t: dk.q_sample(x, t, schedule, seed=1, return_noise=True),
            f"q_sample with v and offset noise, t on the {where}":
                lambda t=t: dk.q_sample(x, t, schedule, seed=1, return_v=True, offset_noise=0.1),
            f"q_sample on a user's alpha_bars, t on the {where}": lambda t=t: dk.q_sample(x, t, ab, seed=1),
            f"get_velocity, t on the {where}": lambda t=t: dk.get_velocity(x, x, t, schedule),
            f"flow_match_sample, sigma on the {where}":
                lambda sigma=sigma: dk.flow_match_sample(x, sigma, seed=1, return_v=True),
            f"edm_sample, sigma on the {where}": lambda sigma=sigma: dk.edm_sample(x, sigma * 10, seed=1),
            f"forward_step, t on the {where}": lambda t=t: dk.forward_step(x, t, schedule, seed=1),
            f"q_sample of a shard (frames 8-15 of 16), t on the {where}":
                lambda t=t: dk.q_sample(x, t, schedule, seed=1, return_noise=True, offset_noise=0.1,
                                        global_shape=(4, 3, 16, 8), global_offset=(0, 0, 8, 0)),
        })
    calls["q_sample with a generator"] = lambda: dk.q_sample(x, t_host, schedule,
                                                             generator=torch.Generator().manual_seed(3))
    _, handle = dk.q_sample(x, t_host, schedule, seed=1, return_noise="seed")
    calls["noise_mse"] = lambda: dk.noise_mse(x, handle)
    calls["q_sample with input perturbation"] = lambda: dk.q_sample(x, t_host, schedule, seed=1,
                                                                    input_perturbation=0.1)
    calls["diffusion_loss, v with min-SNR"] = lambda: dk.diffusion_loss(x, handle, target="v", x0=x,
                                                                       weighting="min_snr")
    _, flow_handle = dk.flow_match_sample(x, sigma_host, seed=1, return_noise="seed")
    calls["diffusion_loss, flow with cosmap"] = lambda: dk.diffusion_loss(x, flow_handle, target="flow", x0=x,
                                                                          weighting="cosmap", reduction="none")
    calls["diffusion_loss, a host weighting tensor"] = lambda: dk.diffusion_loss(
        x, flow_handle, weighting=torch.rand(4, 1, 1, 1))
    _, shard_handle = dk.q_sample(x, t_host, schedule, seed=1, return_noise="seed", global_shape=(8, 3, 8, 8),
                                  global_offset=(4, 0, 0, 0))
    calls["diffusion_loss of a shard's handle"] = lambda: dk.diffusion_loss(x, shard_handle, target="v", x0=x)
    calls["forward_trajectory with snapshots"] = lambda: dk.forward_trajectory(x, schedule, 20, seed=1,
                                                                               snapshots=[3, 9])
    try:
        from diffusers import DDPMScheduler

        from diffusion_kernels.integrations import diffusers as fused
    except ImportError:
        return calls
    scheduler = DDPMScheduler()
    calls["diffusers add_noise, timesteps on the host"] = lambda: fused.fused_add_noise(scheduler, x, x, t_host)
    calls["diffusers get_velocity, timesteps on the host"] = lambda: fused.fused_get_velocity(scheduler, x, x,
                                                                                               t_host)
    return calls


def test_no_call_blocks_the_host_on_the_gpu_path(gpu_path_on_meta, schedule):
    failures = {}
    # t and σ on the host (meta tensors hold no values to give as t or σ: the CUDA test covers those).
    for name, call in _calls(gpu_path_on_meta, schedule, places=("host",)).items():
        call()  # the first call may copy a schedule's tables to the device once; they are kept
        with SyncWatch() as watch:
            call()
        if watch.syncs:
            failures[name] = watch.syncs
    assert not failures, failures


def test_the_watch_catches_a_blocking_copy_and_a_host_read():
    # The guard itself: what the calls above must not do is seen.
    with SyncWatch() as watch:
        torch.tensor([1, 2]).to("meta")
        torch.empty(3, device="meta").copy_(torch.ones(3))
    assert len(watch.syncs) == 2
    with SyncWatch() as watch:
        torch.tensor([1, 2]).to("meta", non_blocking=True)
    assert not watch.syncs


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="CUDA's sync debug mode needs a CUDA device")
def test_no_call_synchronizes_on_cuda(schedule):
    device = torch.device("cuda")
    calls = _calls(device, schedule)
    calls["sample_timesteps"] = lambda: dk.sample_timesteps(64, 1000, device=device)
    calls["sample_sigmas, logit-normal with a shift"] = lambda: dk.sample_sigmas(64, shift=3.0, device=device)
    for call in calls.values():
        call()
    torch.cuda.synchronize()
    previous = torch.cuda.get_sync_debug_mode()
    torch.cuda.set_sync_debug_mode("error")
    try:
        for name, call in calls.items():
            call()
    finally:
        torch.cuda.set_sync_debug_mode(previous)


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="CUDA's sync debug mode needs a CUDA device")
def test_a_compiled_step_does_not_synchronize_on_cuda(schedule):
    device = torch.device("cuda")
    x = torch.randn(4, 3, 8, 8, device=device)
    t_host = torch.tensor([0, 10, 500, 999])

    @torch.compile(fullgraph=True)
    def step(x, t):
        x_t, handle = dk.q_sample(x, t, schedule, return_noise="seed")
        return dk.noise_mse(x_t, handle)

    for _ in range(2):
        step(x, t_host)
    torch.cuda.synchronize()
    previous = torch.cuda.get_sync_debug_mode()
    torch.cuda.set_sync_debug_mode("error")
    try:
        step(x, t_host)
    finally:
        torch.cuda.set_sync_debug_mode(previous)
