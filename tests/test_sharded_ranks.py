"""Many processes, one result: ranks of a real gloo process group (1, 2 and 4 processes, spawned by
tests/sharded_ranks.py) draw for their shards exactly what one process draws for the whole batch: data,
context and sequence parallel, a 2-D mesh, DTensors, and the loss with its gradient."""
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import torch.distributed as dist

import diffusion_kernels as dk
from cases import runnable_backends
from diffusion_kernels.tolerances import LOSS_ATOL, LOSS_RTOL

sys.path.insert(0, str(Path(__file__).parent))
import sharded_ranks as ranks  # noqa: E402

pytestmark = pytest.mark.skipif(not (dist.is_available() and dist.is_gloo_available()),
                                reason="this torch build has no gloo backend to start a process group with")

BACKENDS = [b for b in runnable_backends(torch.device("cpu")) if b in ("cpu", "triton")]
_RESULTS = {}


def _ranks(world, backend, tmp_path_factory):
    """What each rank of a ``world``-process group wrote (run once per world size and backend)."""
    if (world, backend) not in _RESULTS:
        outdir = tmp_path_factory.mktemp(f"world{world}-{backend}")
        env = dict(os.environ, DIFFUSION_KERNELS_QUIET="1")
        done = subprocess.run([sys.executable, str(Path(ranks.__file__)), str(world), backend, str(outdir)],
                              capture_output=True, text=True, timeout=300, env=env)
        assert done.returncode == 0, done.stderr[-3000:]
        _RESULTS[world, backend] = [torch.load(outdir / f"rank{r}.pt") for r in range(world)]
    return _RESULTS[world, backend]


def _single(full, backend, seed):
    """One process's draws for the whole batch ``full`` (no process group: stream 0)."""
    t = dk.sample_timesteps(full.shape[0], ranks.SCHEDULE_T, seed=seed, backend=backend)
    sigma = dk.sample_sigmas(full.shape[0], seed=seed + 1, backend=backend)
    x_t, eps = dk.q_sample(full, t, dk.NoiseSchedule.linear(), seed=seed + 2, return_noise=True, offset_noise=0.1,
                           backend=backend)
    return {"t": t, "sigma": sigma, "x_t": x_t, "eps": eps}


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("world", [1, 2, 4])
@pytest.mark.parametrize("case, shape, k, dim", [("dp", ranks.DATA, 0, 0), ("cp_video", ranks.VIDEO, 1, 2),
                                                  ("sp_tokens", ranks.TOKENS, 2, 1)])
def test_each_rank_draws_its_block_of_the_single_process_batch(backend, world, case, shape, k, dim,
                                                               tmp_path_factory):
    results = _ranks(world, backend, tmp_path_factory)
    single = _single(ranks.global_tensor(shape, k), backend, ranks.SEED)
    for rank, (start, stop) in enumerate(ranks.spans(shape[dim], world)):
        got = results[rank][case]
        for name in ("x_t", "eps"):
            assert torch.equal(got[name], single[name].narrow(dim, start, stop - start)), (rank, name)
        rows = slice(start, stop) if dim == 0 else slice(None)
        for name in ("t", "sigma"):  # every context-parallel rank of a sample draws that sample's value
            assert torch.equal(got[name], single[name][rows]), (rank, name)


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("world", [2, 4])
def test_the_loss_over_plain_shards_is_the_single_process_loss(backend, world, tmp_path_factory):
    results = _ranks(world, backend, tmp_path_factory)
    video, prediction = ranks.global_tensor(ranks.VIDEO, 1), ranks.global_tensor(ranks.VIDEO, 3).requires_grad_()
    t = dk.sample_timesteps(ranks.VIDEO[0], ranks.SCHEDULE_T, seed=ranks.SEED, backend=backend)
    _, handle = dk.q_sample(video, t, dk.NoiseSchedule.linear(), seed=ranks.SEED + 2, return_noise="seed",
                            offset_noise=0.1, backend=backend)
    loss = dk.diffusion_loss(prediction, handle, target="v", x0=video, weighting="min_snr", backend=backend)
    loss.backward()
    for rank, (start, stop) in enumerate(ranks.spans(ranks.VIDEO[2], world)):
        got = results[rank]["plain_loss"]
        torch.testing.assert_close(got["loss"], loss.detach(), rtol=LOSS_RTOL, atol=LOSS_ATOL)
        torch.testing.assert_close(got["grad"], prediction.grad.narrow(2, start, stop - start), rtol=LOSS_RTOL,
                                   atol=LOSS_ATOL)


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("world, layout", [(2, "shard0"), (2, "shard2"), (2, "replicate"), (4, "shard2"),
                                           (4, "mesh2d")])
def test_dtensor_results_are_the_single_device_results(backend, world, layout, tmp_path_factory):
    results = _ranks(world, backend, tmp_path_factory)
    video, prediction = ranks.global_tensor(ranks.VIDEO, 1), ranks.global_tensor(ranks.VIDEO, 3).requires_grad_()
    t = torch.randint(0, ranks.SCHEDULE_T, ranks.VIDEO[:1], generator=torch.Generator().manual_seed(4))
    schedule = dk.NoiseSchedule.linear()
    x_t, eps = dk.q_sample(video, t, schedule, seed=ranks.SEED + 5, return_noise=True, backend=backend)
    _, handle = dk.q_sample(video, t, schedule, seed=ranks.SEED + 5, return_noise="seed", backend=backend)
    loss = dk.diffusion_loss(prediction, handle, target="v", x0=video, weighting="min_snr", backend=backend)
    loss.backward()
    flow = dk.flow_match_sample(video, t.double() / ranks.SCHEDULE_T, seed=ranks.SEED + 6, return_noise=True,
                                return_v=True, backend=backend)
    for rank in range(world):
        got = results[rank][f"dtensor_{layout}"]
        assert torch.equal(got["x_t"], x_t) and torch.equal(got["eps"], eps), rank
        assert torch.equal(got["x_t_dtensor_t"], x_t), rank  # t given as a DTensor
        assert all(torch.equal(a, b) for a, b in zip(got["flow"], flow)), rank  # σ given as a DTensor
        torch.testing.assert_close(got["loss"], loss.detach(), rtol=LOSS_RTOL, atol=LOSS_ATOL)
        torch.testing.assert_close(got["grad"], prediction.grad, rtol=LOSS_RTOL, atol=LOSS_ATOL)
    assert results[0][f"dtensor_{layout}"]["placements"].count("Shard") == {"replicate": 0, "mesh2d": 2}.get(layout, 1)


@pytest.mark.parametrize("backend", BACKENDS)
def test_a_2d_mesh_draws_one_t_per_sample_across_its_context_ranks(backend, tmp_path_factory):
    """2 data-parallel replicas × 2 context-parallel ranks (rank = 2·dp + cp): t and σ equal within a context
    group and those of each replica's own samples, ε each rank's block of the single-process ε."""
    results = _ranks(4, backend, tmp_path_factory)
    full = ranks.global_tensor(ranks.MESH_2D, 5)
    t = dk.sample_timesteps(full.shape[0], ranks.SCHEDULE_T, seed=ranks.SEED, backend=backend)
    sigma = dk.sample_sigmas(full.shape[0], seed=ranks.SEED + 1, backend=backend)
    eps = dk.q_sample(full, t, dk.NoiseSchedule.linear(), seed=ranks.SEED + 2, return_noise=True,
                      backend=backend)[1]
    got = [results[r]["mesh_2d"] for r in range(4)]
    for dp in (0, 1):
        first, second = got[2 * dp], got[2 * dp + 1]
        assert torch.equal(first["t"], second["t"]) and torch.equal(first["sigma"], second["sigma"])
        rows = ranks.spans(full.shape[0], 2)[dp]
        assert torch.equal(first["t"], t[rows[0]:rows[1]]) and torch.equal(first["sigma"], sigma[rows[0]:rows[1]])
        for cp in (0, 1):
            frames = ranks.spans(full.shape[2], 2)[cp]
            assert torch.equal(got[2 * dp + cp]["eps"], eps[rows[0]:rows[1], :, frames[0]:frames[1]])
    assert not torch.equal(got[0]["t"], got[2]["t"])  # the replicas draw their own samples' t
