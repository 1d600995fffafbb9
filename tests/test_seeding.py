"""The seeding contract: DeviceSeed (CUDA-graph safe), ranks of a distributed job, seed draws."""
import os
import socket
import sys

import pytest
import torch
import torch.multiprocessing as mp

from tolerances import assert_noise_close

import diffusion_kernels as dk
from diffusion_kernels import reference, seeding


def test_device_seed_advances_per_call_and_matches_the_stream(device, schedule):
    ds = dk.DeviceSeed(2**64 - 2, device=device)
    x0 = torch.zeros(3, 40, device=device)
    outs = [dk.q_sample(x0, 0, dk.NoiseSchedule.from_alpha_bars(torch.zeros(1, dtype=torch.float64)),
                        seed=ds, backend="triton") for _ in range(3)]
    for k, out in enumerate(outs):  # call k uses seed S + k, wrapping mod 2**64
        expected = reference.philox_normal((2**64 - 2 + k) % 2**64, x0.shape)
        assert_noise_close(out.cpu(), expected)
    assert ds.peek() == 1


def test_device_seed_backward_regenerates_the_forward_noise(device, schedule):
    ds = dk.DeviceSeed(17, device=device)
    ab = schedule.alpha_bars[:20].clone().to(device).requires_grad_(True)
    x0 = torch.randn(2, 3, 8, device=device)
    x_t, eps = dk.q_sample(x0, torch.tensor([4, 9]), ab, seed=ds, return_noise=True, backend="triton")
    dk.q_sample(x0, 0, schedule, seed=ds, backend="triton")  # advance the seed before the backward runs
    (g,) = torch.autograd.grad(x_t.sum(), ab)
    ab_r = ab.detach().double().cpu().requires_grad_(True)
    x_r = reference.q_sample(x0.double().cpu(), torch.tensor([4, 9]), ab_r, eps.double().cpu())
    (g_r,) = torch.autograd.grad(x_r.sum(), ab_r)
    torch.testing.assert_close(g.double().cpu(), g_r, rtol=1e-4, atol=1e-4)


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="CUDA graph capture needs a CUDA device")
def test_cuda_graph_replay_draws_fresh_noise(schedule):
    ds = dk.DeviceSeed(5, device="cuda")
    x0 = torch.zeros(4, 1024, device="cuda")
    t = torch.full((4,), 999, device="cuda")  # a GPU t: its range check runs in the kernel, capturable

    def step():
        return dk.q_sample(x0, t, schedule, seed=ds)

    side = torch.cuda.Stream()
    side.wait_stream(torch.cuda.current_stream())
    with torch.cuda.stream(side):
        step()  # warm-up: compiles the kernel and caches the tables outside the capture
    torch.cuda.current_stream().wait_stream(side)
    graph = torch.cuda.CUDAGraph()
    with torch.cuda.graph(graph):
        out = step()
    first_seed = ds.peek()
    graph.replay()
    a = out.clone()
    graph.replay()
    b = out.clone()
    assert not torch.equal(a, b)
    assert ds.peek() == (first_seed + 2) % 2**64
    ab = float(schedule.alpha_bars[999])
    torch.testing.assert_close(a.cpu(), (1 - ab) ** 0.5 * reference.philox_normal(first_seed, x0.shape),
                               rtol=1e-5, atol=1e-5)


def test_seeds_drawn_from_the_default_generator_are_reproducible():
    torch.manual_seed(123)
    a = [seeding.resolve_seed() for _ in range(3)]
    torch.manual_seed(123)
    assert [seeding.resolve_seed() for _ in range(3)] == a
    assert len(set(a)) == 3 and all(0 <= s < 2**64 for s in a)


def test_seed_and_generator_together_is_an_error():
    with pytest.raises(ValueError, match="either seed or generator"):
        seeding.resolve_seed(1, torch.Generator())


def test_seed_halves_are_int32():
    for seed in (0, 2**31, 2**32 - 1, 2**63, 2**64 - 1):
        lo, hi = seeding.split_seed(seed)
        assert -(2**31) <= lo < 2**31 and -(2**31) <= hi < 2**31
        assert ((hi % 2**32) << 32) | (lo % 2**32) == seed


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _rank_worker(rank, world, port, results):
    import torch.distributed as dist

    os.environ.setdefault("TRITON_INTERPRET", "1")
    dist.init_process_group("gloo", init_method=f"tcp://127.0.0.1:{port}", rank=rank, world_size=world)
    try:
        torch.manual_seed(0)  # every rank shares the seed, as training scripts do
        x0 = torch.zeros(2, 256)
        x_t, eps = dk.q_sample(x0, 999, dk.NoiseSchedule.linear(), return_noise=True)
        gathered = [torch.empty_like(eps) for _ in range(world)]
        dist.all_gather(gathered, eps)
        torch.manual_seed(0)
        seed = seeding.resolve_seed()
        results[rank] = (seed, torch.stack(gathered))
    finally:
        dist.destroy_process_group()


@pytest.mark.skipif(sys.platform == "win32", reason="gloo over TCP on localhost")
def test_ranks_of_a_distributed_job_draw_independent_streams():
    world = 2
    manager = mp.Manager()
    results = manager.dict()
    mp.start_processes(_rank_worker, args=(world, _free_port(), results), nprocs=world, join=True,
                       start_method="spawn")
    seed, gathered = results[0]
    assert results[1][0] == seed  # one shared seed...
    for rank in range(world):  # ...and rank r draws stream r of it
        assert_noise_close(gathered[rank], reference.philox_normal(seed, (2, 256), stream=rank))
    r = torch.corrcoef(gathered.reshape(world, -1))[0, 1]
    assert abs(float(r)) < 5 / 512**0.5


def test_seed_tensor_holds_the_bits_of_the_int_draw():
    as_tensor = seeding.draw_seed_tensor(torch.Generator().manual_seed(5), "cpu")
    as_int = seeding.draw_seed(torch.Generator().manual_seed(5))
    assert as_tensor.shape == (1,) and as_tensor.dtype == torch.int64
    assert int(as_tensor) % 2**64 == as_int


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="a GPU generator needs a CUDA device")
def test_gpu_generator_seeds_the_kernel_without_a_host_sync(schedule):
    x0 = torch.randn(4, 3, 8, 8, device="cuda")
    t = torch.tensor([0, 10, 500, 999], device="cuda")
    dk.q_sample(x0, t, schedule, generator=torch.Generator("cuda").manual_seed(0))  # compile first
    torch.cuda.set_sync_debug_mode("error")
    try:
        a = dk.q_sample(x0, t, schedule, generator=torch.Generator("cuda").manual_seed(3))
        b = dk.q_sample(x0, t, schedule, generator=torch.Generator("cuda").manual_seed(3))
    finally:
        torch.cuda.set_sync_debug_mode("default")
    assert torch.equal(a, b)
    seed = seeding.draw_seed(torch.Generator("cuda").manual_seed(3))
    assert torch.equal(a, dk.q_sample(x0, t, schedule, seed=seed))
