"""The ``sharded`` mode: a context-parallel group noising one global batch, two ways.

  broadcast  what the big trainers do: rank 0 draws the full-size ε and t, broadcasts them, every rank
             slices its frames and noises them (the eager formula)
  fused      each rank noises its own frames at their global position (q_sample with global_shape and
             global_offset, t from sample_timesteps likewise): nothing is broadcast

The global batch is (2, 4, F, H, W) latents split along F over the group's ranks. A step is timed on
rank 0 between two barriers (so it includes the broadcast's wait), median over ``reps`` steps. "moved MB"
is what the step sends between ranks: the broadcast recipe's ε and t to each of the other ranks, none for
fused; "full ε MB" what each rank allocates beyond its own block (the full-size ε it slices).

The group is gloo on CPU tensors; on a machine with a GPU per rank it is NCCL on the GPUs.
"""
from __future__ import annotations

import json
import os
import statistics
import tempfile
import time
from pathlib import Path

import torch

SIZES = (1 << 20, 1 << 22, 1 << 24)  # global elements: 1M, 4M, 16M
WORLD = 2
PROVIDERS = ("broadcast", "fused")
FILE = "sharded.json"


def global_shape(numel: int) -> tuple[int, int, int, int, int]:
    """(2, 4, F, H, W) latents of ``numel`` elements: 16 frames of square-ish planes."""
    plane = max(numel // (2 * 4 * 16), 1)
    height = 1 << ((plane.bit_length() - 1) // 2)
    return 2, 4, 16, height, max(plane // height, 1)


def backend_for(device: torch.device) -> str:
    """The fused provider's backend: the kernels on a GPU; on a CPU what a CPU user's "auto" takes outside
    Triton's interpreter (the compiled loop, else the reference), whatever the bench set for its own sweep."""
    from .. import cpu_noise

    if device.type == "cuda":
        return "triton"
    return "cpu" if cpu_noise.available() else "reference"


def _steps(rank: int, world: int, shape, dtype: torch.dtype, device: torch.device):
    """{provider: one step} for this rank's frames of a global batch of ``shape``."""
    import torch.distributed as dist

    from .. import NoiseSchedule, q_sample, sample_timesteps

    schedule = NoiseSchedule.linear()
    sqrt_ab, sqrt_1m = (v.to(device) for v in schedule.coefficient_tables(device))
    bounds = torch.tensor_split(torch.arange(shape[2]), world)[rank]
    start, stop = int(bounds[0]), int(bounds[-1]) + 1
    local = torch.randn(shape[0], shape[1], stop - start, *shape[3:], device=device).to(dtype)
    where = dict(global_shape=shape, global_offset=(0, 0, start, 0, 0))

    def broadcast():
        if rank == 0:
            eps = torch.randn(shape, device=device, dtype=dtype)
            t = torch.randint(0, schedule.T, (shape[0],), device=device)
        else:
            eps = torch.empty(shape, device=device, dtype=dtype)
            t = torch.empty(shape[0], device=device, dtype=torch.int64)
        dist.broadcast(eps, 0)
        dist.broadcast(t, 0)
        mine = eps[:, :, start:stop]
        a, b = sqrt_ab[t].view(-1, 1, 1, 1, 1), sqrt_1m[t].view(-1, 1, 1, 1, 1)
        return (a * local + b * mine).to(dtype), mine

    backend = backend_for(device)

    def fused():
        t = sample_timesteps(shape[0], schedule.T, device=device, backend=backend, **where)
        return q_sample(local, t, schedule, return_noise=True, backend=backend, **where)

    return {"broadcast": broadcast, "fused": fused}


def _rank(rank: int, world: int, sizes, dtypes, reps: int, store: str, out: str, use_cuda: bool) -> None:
    import torch.distributed as dist

    device = torch.device("cuda", rank) if use_cuda else torch.device("cpu")
    if use_cuda:
        torch.cuda.set_device(device)
    dist.init_process_group("nccl" if use_cuda else "gloo", init_method=f"file://{store}", rank=rank,
                            world_size=world)
    torch.set_num_threads(max(1, (os.cpu_count() or 1) // world))
    rows = []
    for numel in sizes:
        shape = global_shape(numel)
        for dtype_name in dtypes:
            dtype = getattr(torch, dtype_name)
            steps = _steps(rank, world, shape, dtype, device)
            times: dict[str, float] = {}
            for provider in PROVIDERS:
                step = steps[provider]
                samples = []
                for k in range(reps + 2):
                    dist.barrier()
                    begin = time.perf_counter()
                    step()
                    if use_cuda:
                        torch.cuda.synchronize(device)
                    dist.barrier()
                    if k >= 2:  # two warm-up steps
                        samples.append((time.perf_counter() - begin) * 1e3)
                times[provider] = statistics.median(samples)
            n = torch.Size(shape).numel()
            size = torch.empty((), dtype=dtype).element_size()
            moved = (world - 1) * (n * size + shape[0] * 8)
            for provider in PROVIDERS:
                rows.append({"provider": provider, "mode": "sharded", "dtype": dtype_name, "numel": n,
                             "shape": list(shape), "world": world, "ms": times[provider],
                             "moved_mb": (moved if provider == "broadcast" else 0) / 1e6,
                             "full_eps_mb": (n * size if provider == "broadcast" else 0) / 1e6,
                             "speedup": times["broadcast"] / times[provider]})
    if rank == 0:
        Path(out).write_text(json.dumps(rows))
    dist.barrier()
    dist.destroy_process_group()


def run(device: torch.device, *, sizes=SIZES, dtypes=("float32",), world: int = WORLD, reps: int = 20) -> dict:
    """The sharded mode's record: {"environment", "rows"}; a group of ``world`` processes is spawned."""
    import torch.multiprocessing as mp

    from .env import environment

    use_cuda = device.type == "cuda" and torch.cuda.device_count() >= world
    if device.type == "cuda" and not use_cuda:
        raise RuntimeError(f"the sharded mode on CUDA needs a GPU per rank ({world}); this machine has "
                           f"{torch.cuda.device_count()}: run it with --device cpu (gloo)")
    with tempfile.TemporaryDirectory() as folder:
        out = f"{folder}/rows.json"
        mp.start_processes(_rank, args=(world, tuple(sizes), tuple(dtypes), reps, f"{folder}/store", out, use_cuda),
                           nprocs=world, start_method="spawn")
        rows = json.loads(Path(out).read_text())
    env = environment(device)
    env["group"] = f"{'nccl' if use_cuda else 'gloo'}, {world} processes"
    env["fused_backend"] = backend_for(device)
    return {"environment": env, "rows": rows}


def format_rows(record: dict) -> str:
    lines = [f"{'provider':<10} {'dtype':<9} {'elements':>10} {'shape':<22} {'ms':>9} {'moved MB':>9} "
             f"{'full ε MB':>9} {'vs broadcast':>12}"]
    for r in record["rows"]:
        lines.append(f"{r['provider']:<10} {r['dtype']:<9} {r['numel']:>10} {str(tuple(r['shape'])):<22} "
                     f"{r['ms']:>9.3f} {r['moved_mb']:>9.1f} {r['full_eps_mb']:>9.1f} {r['speedup']:>11.2f}×")
    return "\n".join(lines)


def write(record: dict, out_dir) -> tuple[Path, Path]:
    """The record as ``sharded.json`` and its plot (ms per step against size) as ``sharded.png``."""
    from .plotting import save_record

    def draw(plt):
        dtypes = sorted({r["dtype"] for r in record["rows"]})
        fig, axes = plt.subplots(1, len(dtypes), figsize=(5 * len(dtypes), 3.6), squeeze=False)
        for ax, dtype in zip(axes[0], dtypes):
            for provider in PROVIDERS:
                points = sorted((r["numel"], r["ms"]) for r in record["rows"]
                                if r["provider"] == provider and r["dtype"] == dtype)
                ax.plot(*zip(*points), marker="o", label=provider)
            ax.set(xscale="log", yscale="log", xlabel="global elements", ylabel="ms per step",
                   title=f"sharded, {dtype}, {record['environment']['group']}")
            ax.legend()
        return fig

    return save_record(record, out_dir, Path(FILE).stem, draw)
