"""The ranks of a real gloo process group noising shards of one global batch (run by test_sharded_ranks.py).

    python tests/sharded_ranks.py WORLD BACKEND OUTDIR

starts WORLD processes; rank r writes what it drew to OUTDIR/rank{r}.pt, and the test compares those with
one process's call on the whole batch. Every global tensor is made from a fixed generator, so each rank
builds the same ones without communicating.
"""
import os
import sys

import torch
import torch.distributed as dist
import torch.multiprocessing as mp

SEED = 2024
SCHEDULE_T = 1000
DATA = (8, 3, 5, 6)  # data parallel: (B, C, H, W)
VIDEO = (2, 3, 13, 4, 4)  # context parallel along 13 frames, which 2 and 4 ranks cannot divide
TOKENS = (2, 11, 8)  # sequence parallel along 11 tokens
MESH_2D = (4, 3, 13, 4)  # 2 data-parallel × 2 context-parallel ranks


def global_tensor(shape, k):
    return torch.randn(shape, generator=torch.Generator().manual_seed(k))


def spans(n, parts):
    """The [start, stop) ranges torch.tensor_split gives (the first n % parts one longer)."""
    sizes = [len(c) for c in torch.tensor_split(torch.arange(n), parts)]
    starts = [sum(sizes[:i]) for i in range(parts)]
    return [(s, s + z) for s, z in zip(starts, sizes)]


def draw_block(dk, full, dim, span, backend, seed):
    """(t, σ, x_t, ε) of the block of ``full`` over ``span`` along ``dim``, drawn at its global position."""
    local = full.narrow(dim, span[0], span[1] - span[0]).contiguous()
    offset = [0] * full.ndim
    offset[dim] = span[0]
    where = dict(global_shape=tuple(full.shape), global_offset=tuple(offset))
    t = dk.sample_timesteps(local.shape[0], SCHEDULE_T, seed=seed, backend=backend, **where)
    sigma = dk.sample_sigmas(local.shape[0], seed=seed + 1, backend=backend, **where)
    x_t, eps = dk.q_sample(local, t, dk.NoiseSchedule.linear(), seed=seed + 2, return_noise=True, offset_noise=0.1,
                           backend=backend, **where)
    return {"t": t, "sigma": sigma, "x_t": x_t, "eps": eps}


def run(rank, world, backend, outdir):
    if backend == "triton":
        os.environ["TRITON_INTERPRET"] = "1"
    dist.init_process_group("gloo", init_method=f"file://{outdir}/store", rank=rank, world_size=world)
    import diffusion_kernels as dk
    from torch.distributed.device_mesh import init_device_mesh
    from torch.distributed.tensor import Replicate, Shard, distribute_tensor

    out = {}
    # Data parallel: rank r holds its span of the global batch.
    out["dp"] = draw_block(dk, global_tensor(DATA, 0), 0, spans(DATA[0], world)[rank], backend, SEED)
    # Context / sequence parallel: every rank holds all samples, a span of frames or tokens.
    out["cp_video"] = draw_block(dk, global_tensor(VIDEO, 1), 2, spans(VIDEO[2], world)[rank], backend, SEED)
    out["sp_tokens"] = draw_block(dk, global_tensor(TOKENS, 2), 1, spans(TOKENS[1], world)[rank], backend, SEED)

    # The single-device loss from plain shards: each rank's sum over the global count, summed over ranks.
    video = global_tensor(VIDEO, 1)
    prediction = global_tensor(VIDEO, 3)
    span = spans(VIDEO[2], world)[rank]
    x_local = video.narrow(2, span[0], span[1] - span[0]).contiguous()
    p_local = prediction.narrow(2, span[0], span[1] - span[0]).contiguous().requires_grad_()
    where = dict(global_shape=VIDEO, global_offset=(0, 0, span[0], 0, 0))
    t = dk.sample_timesteps(VIDEO[0], SCHEDULE_T, seed=SEED, backend=backend, **where)
    _, handle = dk.q_sample(x_local, t, dk.NoiseSchedule.linear(), seed=SEED + 2, return_noise="seed",
                            offset_noise=0.1, backend=backend, **where)
    part = dk.diffusion_loss(p_local, handle, target="v", x0=x_local, weighting="min_snr", reduction="sum",
                             backend=backend) / prediction.numel()
    part.backward()
    total = part.detach().clone()
    dist.all_reduce(total)
    out["plain_loss"] = {"loss": total, "grad": p_local.grad}

    # DTensor in, DTensor out, on a 1-D mesh (and a 2-D one with four ranks).
    mesh = init_device_mesh("cpu", (world,))
    t_full = torch.randint(0, SCHEDULE_T, VIDEO[:1], generator=torch.Generator().manual_seed(4))
    layouts = {"shard0": (mesh, [Shard(0)]), "shard2": (mesh, [Shard(2)]), "replicate": (mesh, [Replicate()])}
    if world == 4:
        mesh2 = init_device_mesh("cpu", (2, 2), mesh_dim_names=("dp", "cp"))
        layouts["mesh2d"] = (mesh2, [Shard(0), Shard(2)])
    for name, (m, placements) in layouts.items():
        xd = distribute_tensor(video, m, placements)
        pd = distribute_tensor(prediction, m, placements).requires_grad_()
        x_t, eps = dk.q_sample(xd, t_full, dk.NoiseSchedule.linear(), seed=SEED + 5, return_noise=True,
                               backend=backend)
        _, handle = dk.q_sample(xd, t_full, dk.NoiseSchedule.linear(), seed=SEED + 5, return_noise="seed",
                                backend=backend)
        loss = dk.diffusion_loss(pd, handle, target="v", x0=xd, weighting="min_snr", backend=backend)
        loss.backward()
        # t as a DTensor: sharded along the batch as x0 is (its local block is what the call reads), or
        # replicated.
        t_placements = [Shard(0) if isinstance(p, Shard) and p.dim == 0 else Replicate() for p in placements]
        td = distribute_tensor(t_full, m, t_placements)
        x_t_dt = dk.q_sample(xd, td, dk.NoiseSchedule.linear(), seed=SEED + 5, backend=backend)
        sigma = distribute_tensor(t_full.double() / SCHEDULE_T, m, t_placements)  # σ as a DTensor
        flow = dk.flow_match_sample(xd, sigma, seed=SEED + 6, return_noise=True, return_v=True, backend=backend)
        out[f"dtensor_{name}"] = {"x_t": x_t.full_tensor(), "eps": eps.full_tensor(), "loss": loss.detach(),
                                  "grad": pd.grad.full_tensor(), "placements": str(x_t.placements),
                                  "x_t_dtensor_t": x_t_dt.full_tensor(),
                                  "flow": [value.full_tensor() for value in flow]}

    if world == 4:
        # 2 data-parallel replicas × 2 context-parallel ranks: rank = 2·dp + cp.
        dp, cp = divmod(rank, 2)
        full = global_tensor(MESH_2D, 5)
        rows = spans(MESH_2D[0], 2)[dp]
        frames = spans(MESH_2D[2], 2)[cp]
        local = full[rows[0]:rows[1], :, frames[0]:frames[1]].contiguous()
        where = dict(global_shape=MESH_2D, global_offset=(rows[0], 0, frames[0], 0))
        t = dk.sample_timesteps(local.shape[0], SCHEDULE_T, seed=SEED, backend=backend, **where)
        sigma = dk.sample_sigmas(local.shape[0], seed=SEED + 1, backend=backend, **where)
        x_t, eps = dk.q_sample(local, t, dk.NoiseSchedule.linear(), seed=SEED + 2, return_noise=True,
                               backend=backend, **where)
        out["mesh_2d"] = {"t": t, "sigma": sigma, "x_t": x_t, "eps": eps}

    torch.save(out, f"{outdir}/rank{rank}.pt")
    dist.barrier()
    dist.destroy_process_group()


if __name__ == "__main__":
    world, backend, outdir = int(sys.argv[1]), sys.argv[2], sys.argv[3]
    mp.start_processes(run, args=(world, backend, outdir), nprocs=world, start_method="spawn")
