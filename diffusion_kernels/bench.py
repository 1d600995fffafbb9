"""Benchmark sweep: the fused q_sample against the peers a user would pick instead.

Providers, side by side in one run:
  fused      diffusion_kernels.q_sample (one Triton kernel)
  eager      the textbook formula in eager PyTorch with a separate randn_like (reference.q_sample)
  compile    torch.compile of that textbook formula (Inductor fuses it, with its own Philox)
  diffusers  DDPMScheduler.add_noise fed by randn_like (when diffusers is installed)
  copy       a device-to-device copy of x0: the floor no noising pass can beat

Modes and the bytes each moves (N elements of s bytes):
  xt_eps       draw ε, write x_t and ε        3·N·s
  xt           draw ε, write x_t only         2·N·s
  given_noise  read x0 and ε, write x_t       3·N·s
  backward     gradient to x0 (read g, write) 2·N·s
  copy         read x0, write a copy          2·N·s

Layouts: contiguous x0 of shape (4, N/4), or channels_last latents 4 × 4 × H × W
(``layouts=("channels_last",)``; every tensor of the case in that layout).

Effective bandwidth is those bytes over the median time; "of copy" divides it
by the copy bandwidth measured in the same run at the same size and dtype.
On CUDA, times are triton.testing.do_bench medians (L2 flushed between runs).
Without a GPU the sweep still runs end to end on small sizes; the fused
provider then runs in Triton's interpreter and its rows are marked untimed.
"""
from __future__ import annotations

import dataclasses
import datetime
import json
import platform
import statistics
import time
from pathlib import Path

import torch

from . import reference
from .api import q_sample
from .loss import noise_mse
from .schedules import NoiseSchedule

MODES = ("xt_eps", "xt", "given_noise", "backward")
PROVIDERS = ("fused", "eager", "compile", "diffusers", "copy")
PASSES = {"xt_eps": 3, "xt": 2, "given_noise": 3, "backward": 2, "copy": 2}
LAYOUTS = ("contiguous", "channels_last")
GPU_SIZES = (4 * 4 * 64 * 64, 1 << 20, 1 << 24, 1 << 26)
CPU_SIZES = (4 * 4 * 16 * 16, 1 << 14)
DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}


@dataclasses.dataclass
class Row:
    provider: str
    mode: str
    dtype: str
    numel: int
    median_ms: float
    gbps: float
    of_copy: float | None = None
    speedup_of_fused: float | None = None  # this provider's time / fused time
    host_us: float | None = None
    temp_bytes: int | None = None
    timed: bool = True
    note: str = ""
    layout: str = "contiguous"


def batch_shape(numel: int, layout: str) -> tuple[int, ...]:
    """The benchmark's x0 shape: 4 samples; channels_last as 4 × 4 × H × W latents (H a power of two)."""
    if layout == "contiguous":
        return 4, max(numel // 4, 1)
    if layout != "channels_last":
        raise ValueError(f"unknown layout {layout!r}; choose from {', '.join(LAYOUTS)}")
    if numel % 16:
        raise ValueError(f"a channels_last batch is 4 × 4 × H × W: {numel} elements is not a multiple of 16")
    plane = numel // 16
    height = 1 << ((plane & -plane).bit_length() - 1)  # the largest power of two dividing the plane …
    while height * height > plane:  # … no taller than the plane is wide
        height //= 2
    return 4, 4, height, plane // height


def _textbook(x0, t, ab, noise=None):
    """The eager textbook q_sample: randn_like when no noise is given, then the reference formula."""
    if noise is None:
        noise = torch.randn_like(x0)
    return reference.q_sample(x0, t, ab, noise), noise


def cases(provider, mode, x0, t, noise, grad, schedule, ab_device, compiled, scheduler):
    """The callable that performs one (provider, mode) unit of work on these inputs, or None if not offered."""
    if provider == "copy":
        out = torch.empty_like(x0)
        return lambda: out.copy_(x0)
    if mode == "backward":
        x = x0.detach().requires_grad_(True)
        if provider == "fused":
            y = q_sample(x, t, schedule, noise)
        elif provider == "eager":
            y = reference.q_sample(x, t, ab_device, noise)
        elif provider == "compile":
            y = compiled["given"](x, t, ab_device, noise)
        elif provider == "diffusers" and scheduler is not None:
            y = scheduler.add_noise(x, noise, t)
        else:
            return None
        return lambda: torch.autograd.grad(y, x, grad, retain_graph=True)
    if provider == "fused":
        return {"xt_eps": lambda: q_sample(x0, t, schedule, return_noise=True),
                "xt": lambda: q_sample(x0, t, schedule),
                "given_noise": lambda: q_sample(x0, t, schedule, noise)}[mode]
    if provider == "eager":
        return {"xt_eps": lambda: _textbook(x0, t, ab_device),
                "xt": lambda: _textbook(x0, t, ab_device)[0],
                "given_noise": lambda: reference.q_sample(x0, t, ab_device, noise)}[mode]
    if provider == "compile":
        return {"xt_eps": lambda: compiled["drawn"](x0, t, ab_device),
                "xt": lambda: compiled["drawn_xt"](x0, t, ab_device),
                "given_noise": lambda: compiled["given"](x0, t, ab_device, noise)}[mode]
    if provider == "diffusers" and scheduler is not None:
        return {"xt_eps": lambda: (lambda n: (scheduler.add_noise(x0, n, t), n))(torch.randn_like(x0)),
                "xt": lambda: scheduler.add_noise(x0, torch.randn_like(x0), t),
                "given_noise": lambda: scheduler.add_noise(x0, noise, t)}[mode]
    return None


def _sync(device):
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _time_ms(fn, device, reps: int) -> float:
    if device.type == "cuda":
        import triton.testing

        return float(triton.testing.do_bench(fn, warmup=25, rep=reps, return_mode="median"))
    fn()
    samples = []
    for _ in range(max(3, reps // 20)):
        start = time.perf_counter()
        fn()
        samples.append((time.perf_counter() - start) * 1e3)
    return statistics.median(samples)


def _host_us(fn, device, calls: int = 200) -> float:
    """Host time per call with the GPU left running: the launch overhead a small batch pays."""
    fn()
    _sync(device)
    start = time.perf_counter()
    for _ in range(calls):
        fn()
    elapsed = time.perf_counter() - start
    _sync(device)
    return elapsed / calls * 1e6


def _temp_bytes(fn, device) -> int | None:
    """Peak GPU memory of one call beyond its outputs (None off CUDA)."""
    if device.type != "cuda":
        return None
    _sync(device)
    torch.cuda.reset_peak_memory_stats(device)
    base = torch.cuda.memory_allocated(device)
    result = fn()
    _sync(device)
    peak = torch.cuda.max_memory_allocated(device) - base
    outputs = result if isinstance(result, (tuple, list)) else (result,)
    kept = sum(o.untyped_storage().nbytes() for o in outputs if isinstance(o, torch.Tensor))
    del result, outputs
    return int(peak - kept)


def compiled_providers():
    def drawn(x0, t, ab):
        return _textbook(x0, t, ab)

    def drawn_xt(x0, t, ab):
        return _textbook(x0, t, ab)[0]

    def given(x0, t, ab, noise):
        return reference.q_sample(x0, t, ab, noise)

    return {name: torch.compile(fn, dynamic=False)
            for name, fn in (("drawn", drawn), ("drawn_xt", drawn_xt), ("given", given))}


def diffusers_scheduler():
    try:
        from diffusers import DDPMScheduler
    except ImportError:
        return None
    return DDPMScheduler()


def environment(device: torch.device) -> dict:
    import triton

    from . import backend

    info = {
        "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "torch": torch.__version__,
        "triton": triton.__version__,
        "python": platform.python_version(),
        "machine": platform.machine(),
    }
    try:
        import diffusers

        info["diffusers"] = diffusers.__version__
    except ImportError:
        info["diffusers"] = None
    if device.type == "cuda":
        info["device"] = torch.cuda.get_device_name(device)
        info["cuda"] = torch.version.cuda
    else:
        info["device"] = f"cpu ({platform.processor() or platform.machine()})"
    info["fused_backend"] = ("triton interpreter" if device.type == "cpu" and backend.interpreter_active()
                             else "triton" if device.type == "cuda" else "reference")
    info["tiles"] = tiles()
    return info


TILE_CONSTANTS = ("BLOCK_QUADS", "BLOCK_QUADS_PAIRED", "BLOCK_QUADS_STRIDED", "NUM_WARPS")


def tiles() -> dict:
    """The noising kernels' tile constants (kernels/q_sample.py) this run uses."""
    from .backend import kernels_module

    q_sample = kernels_module().q_sample
    return {name: getattr(q_sample, name) for name in TILE_CONSTANTS}


def set_tiles(**values) -> None:
    """Override tile constants of the noising and loss kernels for this process (a tuning sweep).

    The noise stream does not depend on them, only the speed does.
    """
    from .backend import kernels_module

    km = kernels_module()
    for name, value in values.items():
        if name not in TILE_CONSTANTS:
            raise ValueError(f"unknown tile constant {name!r}; choose from {', '.join(TILE_CONSTANTS)}")
        if not isinstance(value, int) or value < 1 or value & (value - 1):
            raise ValueError(f"{name} must be a power of two, got {value!r}")
        if name == "BLOCK_QUADS_PAIRED" and value < 2:
            raise ValueError("BLOCK_QUADS_PAIRED must be at least 2 (each thread takes a pair of quads)")
        for module in (km.q_sample, km.noise_mse):
            setattr(module, name, value)


def memory_of_loss(device: torch.device, numel: int, dtype: torch.dtype) -> dict:
    """One ε-prediction step, stored ε + F.mse_loss against noise_mse (ε kept as its seed).

    Reports the bytes the step holds between noising and loss (measured from the
    returned objects) and, on CUDA, the peak memory of the whole step.
    """
    schedule = NoiseSchedule.linear()
    x0 = torch.randn(numel, device=device, dtype=dtype).reshape(4, -1)
    t = torch.tensor([1, 10, 100, 999])
    weight = torch.ones(1, device=device, dtype=dtype, requires_grad=True)

    def unfused():
        x_t, eps = q_sample(x0, t, schedule, return_noise=True)
        held = eps.untyped_storage().nbytes()
        torch.nn.functional.mse_loss(x_t * weight, eps).backward()
        return held

    def fused():
        x_t, handle = q_sample(x0, t, schedule, return_noise="seed")
        noise_mse(x_t * weight, handle).backward()
        return 0

    out = {"numel": numel, "dtype": str(dtype).replace("torch.", "")}
    for name, step in (("stored_noise", unfused), ("noise_mse", fused)):
        step()  # compile and warm
        if device.type == "cuda":
            _sync(device)
            torch.cuda.reset_peak_memory_stats(device)
            base = torch.cuda.memory_allocated(device)
        held = step()
        out[f"{name}_held_bytes"] = held
        if device.type == "cuda":
            _sync(device)
            out[f"{name}_peak_bytes"] = int(torch.cuda.max_memory_allocated(device) - base)
    if device.type == "cuda":
        out["saved_peak_bytes"] = out["stored_noise_peak_bytes"] - out["noise_mse_peak_bytes"]
    return out


def compile_settings():
    """torch.compile settings for a fair sweep.

    The backward is timed by repeated autograd.grad(..., retain_graph=True) over
    one forward graph, which compiled graphs allow only without buffer
    donation; and every (size, dtype) gets its own specialised graph, so the
    recompile limit must exceed the number of cases.
    """
    import contextlib

    import torch._dynamo.config as dynamo_config
    import torch._functorch.config as functorch_config

    stack = contextlib.ExitStack()
    stack.enter_context(functorch_config.patch(donated_buffer=False))
    stack.enter_context(dynamo_config.patch(recompile_limit=256))
    return stack


def run(device: torch.device, **kwargs) -> dict:
    """Sweep sizes × dtypes × modes × providers; returns the record (environment, rows, memory)."""
    with compile_settings():
        return _run(device, **kwargs)


def _run(device: torch.device, *, sizes=None, dtypes=("float32", "bfloat16", "float16"), modes=MODES,
        providers=PROVIDERS, layouts=("contiguous",), reps: int = 100, seed: int = 0, progress: bool = True,
        on_case=None) -> dict:
    from tqdm.auto import tqdm

    from . import backend

    sizes = tuple(sizes or (GPU_SIZES if device.type == "cuda" else CPU_SIZES))
    schedule = NoiseSchedule.linear()
    ab_device = schedule.alpha_bars.float().to(device)
    compiled = compiled_providers() if "compile" in providers else {}
    scheduler = diffusers_scheduler() if "diffusers" in providers else None
    fused_timed = device.type == "cuda" or not backend.interpreter_active()
    rows: list[Row] = []
    shapes = {(n, layout): batch_shape(n, layout) for n in sizes for layout in layouts}  # bad sizes fail first
    work = [(n, d, layout) for n in sizes for d in dtypes for layout in layouts]
    for numel, dtype_name, layout in tqdm(work, desc="bench", disable=not progress):
        dtype = DTYPES[dtype_name]
        shape = shapes[numel, layout]
        memory_format = torch.channels_last if layout == "channels_last" else torch.contiguous_format
        gen = torch.Generator().manual_seed(seed)
        x0, noise, grad = (torch.randn(shape, generator=gen).to(device=device, dtype=dtype,
                                                                 memory_format=memory_format) for _ in range(3))
        t = torch.randint(0, schedule.T, shape[:1], generator=gen).to(device)
        n = x0.numel()
        itemsize = x0.element_size()
        copy_fn = cases("copy", "copy", x0, t, noise, grad, schedule, ab_device, compiled, scheduler)
        copy_ms = _time_ms(copy_fn, device, reps)
        copy_gbps = PASSES["copy"] * n * itemsize / copy_ms / 1e6
        if "copy" in providers:
            rows.append(Row("copy", "copy", dtype_name, n, copy_ms, copy_gbps, 1.0,
                            host_us=_host_us(copy_fn, device) if n <= GPU_SIZES[0] else None, layout=layout))
        for mode in modes:
            for provider in providers:
                if provider == "copy":
                    continue
                fn = cases(provider, mode, x0, t, noise, grad, schedule, ab_device, compiled, scheduler)
                if fn is None:
                    continue
                timed = fused_timed or provider != "fused"
                ms = _time_ms(fn, device, reps)
                gbps = PASSES[mode] * n * itemsize / ms / 1e6
                rows.append(Row(
                    provider, mode, dtype_name, n, ms, gbps, of_copy=gbps / copy_gbps if timed else None,
                    host_us=_host_us(fn, device) if n <= GPU_SIZES[0] and timed else None,
                    temp_bytes=_temp_bytes(fn, device), timed=timed,
                    note="" if timed else "Triton interpreter on CPU: a correctness run, not a timing",
                    layout=layout,
                ))
        if on_case is not None:
            # What is measured so far, so a sweep cut short (a time limit) still leaves its rows.
            on_case(_record(device, sizes, rows, []))
    memory = [memory_of_loss(device, sizes[-1], DTYPES[d]) for d in dtypes]
    return _record(device, sizes, rows, memory)


def _record(device, sizes, rows: list[Row], memory: list[dict]) -> dict:
    _speedups(rows)
    return {"environment": environment(device), "sizes": list(sizes),
            "rows": [dataclasses.asdict(r) for r in rows], "loss_memory": memory}


def _speedups(rows: list[Row]) -> None:
    fused = {(r.mode, r.dtype, r.numel, r.layout): r for r in rows if r.provider == "fused" and r.timed}
    for r in rows:
        f = fused.get((r.mode, r.dtype, r.numel, r.layout))
        if f is not None and r.timed:
            r.speedup_of_fused = r.median_ms / f.median_ms


def format_table(record: dict) -> str:
    env = record["environment"]
    lines = [f"device: {env['device']}   torch {env['torch']}   triton {env['triton']}   {env['date']}",
             f"{'mode':<12} {'dtype':<9} {'layout':<13} {'numel':>10} {'provider':<10} {'median ms':>10} "
             f"{'GB/s':>8} "
             f"{'of copy':>8} {'fused x':>8} {'host us':>8} {'temp MB':>8}"]
    for r in record["rows"]:
        def fmt(v, spec):
            return format(v, spec) if v is not None else "-"

        mark = "" if r["timed"] else "  (interpreter: correctness run, untimed)"
        timed = r["timed"]
        lines.append(
            f"{r['mode']:<12} {r['dtype']:<9} {_layout(r):<13} {r['numel']:>10} {r['provider']:<10} "
            f"{fmt(r['median_ms'] if timed else None, '.4f'):>10} "
            f"{fmt(r['gbps'] if timed else None, '.1f'):>8} {fmt(r['of_copy'], '.2f'):>8} "
            f"{fmt(r['speedup_of_fused'], '.2f'):>8} {fmt(r['host_us'], '.1f'):>8} "
            f"{fmt(r['temp_bytes'] / 2**20 if r['temp_bytes'] is not None else None, '.1f'):>8}{mark}")
    lines.append("")
    lines.append("ε-prediction step, stored ε + F.mse_loss vs noise_mse (ε kept as its seed):")
    for m in record["loss_memory"]:
        line = (f"  {m['dtype']:<9} numel {m['numel']}: held between noising and loss "
                f"{m['stored_noise_held_bytes'] / 2**20:.2f} MiB vs {m['noise_mse_held_bytes'] / 2**20:.2f} MiB")
        if "saved_peak_bytes" in m:
            line += (f"; step peak {m['stored_noise_peak_bytes'] / 2**20:.2f} MiB vs "
                     f"{m['noise_mse_peak_bytes'] / 2**20:.2f} MiB (saved {m['saved_peak_bytes'] / 2**20:.2f} MiB)")
        lines.append(line)
    return "\n".join(lines)


def plot(record: dict, path: Path) -> Path:
    """GB/s against size, one panel per (mode, dtype), one line per provider, copy dashed."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = [r for r in record["rows"] if r["timed"]]
    modes = [m for m in MODES if any(r["mode"] == m for r in rows)]
    dtypes = sorted({r["dtype"] for r in rows})
    fig, axes = plt.subplots(len(modes) or 1, len(dtypes) or 1, figsize=(5 * max(len(dtypes), 1),
                                                                         3.6 * max(len(modes), 1)), squeeze=False)
    for i, mode in enumerate(modes):
        for j, dtype in enumerate(dtypes):
            ax = axes[i][j]
            for layout, style in zip(LAYOUTS, ("-", ":")):
                suffix = "" if layout == "contiguous" else f", {layout}"
                copy = sorted((r["numel"], r["gbps"]) for r in rows
                              if r["mode"] == "copy" and r["dtype"] == dtype and _layout(r) == layout)
                if copy:
                    ax.plot(*zip(*copy), "k--" if layout == "contiguous" else "k-.", label=f"copy (floor{suffix})")
                for k, provider in enumerate(PROVIDERS[:-1]):
                    pts = sorted((r["numel"], r["gbps"]) for r in rows if r["mode"] == mode and r["dtype"] == dtype
                                 and r["provider"] == provider and _layout(r) == layout)
                    if pts:
                        ax.plot(*zip(*pts), "o" + style, color=f"C{k}", label=provider + suffix)
            ax.set_xscale("log")
            ax.set(title=f"{mode}, {dtype}", xlabel="elements", ylabel="effective GB/s")
            ax.grid(True, alpha=0.3)
            ax.legend(fontsize=7)
    env = record["environment"]
    fig.suptitle(f"q_sample bandwidth on {env['device']}\n{env['date'][:10]}, torch {env['torch']}, "
                 f"triton {env['triton']}", fontsize=10)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path


def _layout(row: dict) -> str:
    return row.get("layout", "contiguous")  # records made before layouts were swept are contiguous


def _row_key(row: dict) -> tuple:
    return row["provider"], row["mode"], row["dtype"], row["numel"], _layout(row)


def merge(old: dict, new: dict) -> dict:
    """``new`` with the rows and loss-memory entries of ``old`` that it did not measure again.

    A sweep split over several runs (one dtype each, say) on the same device
    and day thus adds up to one record; each row keeps the ratios (of copy,
    speedups) of the run that measured it.
    """
    if old.get("environment", {}).get("tiles") != new["environment"].get("tiles"):
        raise ValueError("cannot merge records measured with different kernel tiles")
    measured = {_row_key(r) for r in new["rows"]}
    rows = [r for r in old["rows"] if _row_key(r) not in measured] + new["rows"]
    remeasured = {m["dtype"] for m in new["loss_memory"]}
    memory = [m for m in old.get("loss_memory", []) if m["dtype"] not in remeasured] + new["loss_memory"]
    order = {n: i for i, n in enumerate(sorted({r["numel"] for r in rows}))}
    rows.sort(key=lambda r: (order[r["numel"]], r["dtype"], _layout(r), r["mode"] != "copy", r["mode"],
                             r["provider"]))
    return {**new, "sizes": sorted({*old.get("sizes", []), *new["sizes"]}), "rows": rows, "loss_memory": memory}


def write(record: dict, out_dir, *, draw: bool = True) -> tuple[Path, Path | None]:
    """The JSON record and (with ``draw``) its PNG plot, named by device and date.

    An existing record of the same device and day in ``out_dir`` is merged
    with this one (:func:`merge`), not overwritten.
    """
    json_path = record_path(out_dir, record["environment"])
    json_path.parent.mkdir(parents=True, exist_ok=True)
    if json_path.exists():
        record = merge(json.loads(json_path.read_text()), record)
    json_path.write_text(json.dumps(record, indent=1))
    return json_path, (plot(record, json_path.with_suffix(".png")) if draw else None)


def record_path(out_dir, env: dict) -> Path:
    """Where the JSON record of a run with this environment goes: named by device and day."""
    slug = "".join(c if c.isalnum() else "-" for c in env["device"]).strip("-").lower()
    return Path(out_dir) / f"{slug}_{env['date'][:10]}.json"


def mergeable(out_dir, env: dict) -> str | None:
    """Why a run with this environment cannot join the record already in ``out_dir``, or None if it can."""
    path = record_path(out_dir, env)
    if not path.exists():
        return None
    theirs = json.loads(path.read_text()).get("environment", {}).get("tiles")
    if theirs != env["tiles"]:
        return f"{path} was measured with other kernel tiles ({theirs}); write this run to another --out folder"
    return None
