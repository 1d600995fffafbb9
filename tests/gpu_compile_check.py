"""Compile every kernel variant the launchers issue for a GPU target, without a GPU.

Run as a script in a process without TRITON_INTERPRET (the tests do):

    python tests/gpu_compile_check.py [TARGET] [--json]

TARGET is an NVIDIA compute capability (90 Hopper, the default; 80 Ampere; 100
Blackwell) or an AMD architecture (gfx942 MI300, gfx90a MI250). It prints a
table of per-variant figures (registers, spills, instructions per element,
vector accesses, special-function instructions); ``--json`` prints one JSON
line per variant instead.

The launchers are called on CPU tensors with the kernels replaced by
recorders; each recorded launch is specialised the way Triton's runtime
would specialise it on a GPU (int arguments equal to 1 become constants, 16-
divisible ints and device pointers get the divisibility hint, arguments in
``do_not_specialize`` stay plain) and compiled through Triton's full pipeline
(NVIDIA: TTIR → TTGIR → LLVM → PTX → cubin via ptxas; AMD: → AMDGCN → hsaco),
with the launch settings the launchers choose for that vendor (the Box–Muller
MATH mode, the wavefront count).
"""
import contextlib
import json
import os
import sys

assert os.environ.get("TRITON_INTERPRET", "0") in ("", "0"), "run without TRITON_INTERPRET"

import torch  # noqa: E402
import triton  # noqa: E402
from triton.backends.compiler import GPUTarget  # noqa: E402
from triton.compiler import ASTSource  # noqa: E402

from code_objects import amd_figures, nvidia_figures  # noqa: E402

from diffusion_kernels import launch, sharding  # noqa: E402
from diffusion_kernels.launch.tiling import fewest_warps, gpu_units, grouping_units, tiling  # noqa: E402
from diffusion_kernels.schedules import NoiseSchedule  # noqa: E402
from diffusion_kernels.noising import launcher as noising_launcher  # noqa: E402
from diffusion_kernels.trajectory import launcher as trajectory_launcher  # noqa: E402
from diffusion_kernels.loss import launcher as loss_launcher  # noqa: E402
from diffusion_kernels.sampling import launcher as sampling_launcher  # noqa: E402
from diffusion_kernels.kernels import tiles as tiles_kernels  # noqa: E402

tiling_module = sys.modules["diffusion_kernels.launch.tiling"]  # launch.tiling is the function of that name

TYPES = {torch.float32: "fp32", torch.float16: "fp16", torch.bfloat16: "bf16", torch.int64: "i64",
         torch.int32: "i32"}
recorded = []


class Recorder:
    def __init__(self, kernel):
        self.kernel = kernel

    def __getitem__(self, grid):
        def record(*args, **kwargs):
            recorded.append((self.kernel, args, kwargs))

        return record


def specialise(kernel, args, kwargs):
    names = kernel.arg_names
    params = {p.name: p for p in kernel.params}
    signature, constexprs, attrs = {}, {}, {}
    for i, name in enumerate(names):
        if name in kwargs:
            signature[name] = "constexpr"
            constexprs[name] = kwargs[name]
            continue
        value = args[i]
        if isinstance(value, torch.Tensor):
            signature[name] = "*" + TYPES[value.dtype]
            attrs[(i,)] = [["tt.divisibility", 16]]
        elif isinstance(value, bool):
            signature[name] = "i1"
        elif isinstance(value, int):
            if params[name].do_not_specialize:
                signature[name] = "i32" if -(2**31) <= value < 2**31 else "i64"
            elif value == 1:
                signature[name] = "constexpr"
                constexprs[name] = 1
            else:
                signature[name] = "i32" if -(2**31) <= value < 2**31 else "i64"
                if value % 16 == 0:
                    attrs[(i,)] = [["tt.divisibility", 16]]
        elif isinstance(value, float):
            signature[name] = "fp32"
        else:
            raise TypeError(f"{name}: {type(value)}")
    return signature, constexprs, attrs


def issue_launches(units: int):
    from diffusion_kernels import kernels as km
    from diffusion_kernels.kernels import loss, noising, sampling, trajectory  # noqa: F401 (read as km's)
    for module, name in ((km.noising, "noising_fwd_kernel"), (km.noising, "noising_bwd_kernel"),
                         (km.noising, "noising_fwd_contiguous_kernel"),
                         (km.noising, "noising_bwd_contiguous_kernel"),
                         (km.noising, "noising_fwd_channels_last_kernel"),
                         (km.trajectory, "forward_trajectory_kernel"), (km.loss, "loss_fwd_kernel"),
                         (km.loss, "loss_bwd_kernel"), (km.loss, "loss_fwd_channels_last_kernel"),
                         (km.loss, "loss_bwd_channels_last_kernel"), (km.sampling, "sampling_draws_kernel")):
        setattr(module, name, Recorder(getattr(module, name)))
    try:
        _launch_every_variant()
        sized_launches(units)
        large_batch_launches(units)
        batch_launches(units, (64, 4, 80, 80), with_loss=True)  # rows whole tiles of a quarter of the tile
        shard_launches(units)
    finally:
        # Restored before compiling: the contiguous entry points call the strided kernels by name.
        for module in (km.noising, km.trajectory, km.loss, km.sampling):
            for name, value in vars(module).items():
                if isinstance(value, Recorder):
                    setattr(module, name, value.kernel)


def _launch_every_variant():
    a, b = NoiseSchedule.linear().coefficient_tables("cpu")
    t = torch.tensor([0, 10, 500, 999])
    for dtype in (torch.float32, torch.bfloat16, torch.float16):
        x = torch.randn(4, 3, 8, 8).to(dtype)
        cl = x.to(memory_format=torch.channels_last)
        seed_t = torch.tensor([7])
        # forward: drawn ε written or not, v, offset noise, given noise, strided layout, device seed
        noising_launcher.forward(x, t, a, b, None, None, None, None, 5, 0, 0, 0, 0.0, True, False, 0)
        noising_launcher.forward(x, t, a, b, None, None, None, None, 5, 0, 0, 0, 0.0, False, False, 0)
        noising_launcher.forward(x, t, a, b, -b, a, None, None, 5, 0, 0, 0, 0.1, True, True, 0)
        noising_launcher.forward(x, t, a, b, None, None, x, None, 5, 0, 0, 0, 0.0, False, False, 0)
        noising_launcher.forward(cl, t, a, b, None, None, None, seed_t, 0, 0, 3, 0, 0.0, True, False, 0)
        # backward: grad to x0 only; with v and table sums from a regenerated ε
        noising_launcher.backward(x, None, t, a, b, None, None, None, None, None, 5, 0, 0, 0, 0.0, dtype, None,
                                     False, 0)
        noising_launcher.backward(x, x, t, a, b, -b, a, x, None, None, 5, 0, 0, 0, 0.0, dtype, dtype, True, 0)
        sliced = torch.randn(4, 3, 8, 16).to(dtype)[..., ::2]
        noising_launcher.backward(sliced, None, t, a, b, None, None, None, None, None, 5, 0, 0, 0, 0.0, dtype,
                                     None, False, 0)
        # channels-last, 4 channels: drawn ε through the channels-last tile, with v, offset noise, a device seed
        cl4 = torch.randn(4, 4, 8, 8).to(dtype).to(memory_format=torch.channels_last)
        noising_launcher.forward(cl4, t, a, b, -b, a, None, seed_t, 0, 0, 3, 0, 0.1, True, True, 0)
        # input perturbation (a second normal per element), contiguous and channels-last
        noising_launcher.forward(x, t, a, b, None, None, None, None, 5, 0, 0, 0, 0.0, True, False, 0, False, 0.1)
        noising_launcher.forward(cl4, t, a, b, None, None, None, None, 5, 0, 0, 0, 0.1, False, False, 0, False, 0.1)
        sa, sb = NoiseSchedule.linear().step_tables("cpu")
        trajectory_launcher.forward_trajectory(x, sa, sb, 999, seed=5, snapshot_steps=(10, 500))
        scale = torch.ones(4)
        loss_launcher.forward(x, 4, 5, 0, 0.1)
        loss_launcher.backward(x, scale, 4, 5, 0, 0.0)
        loss_launcher.forward(cl4, 4, 5, 0, 0.1)
        loss_launcher.backward(cl4, scale, 4, 5, 0, 0.0)
        # diffusion_loss's targets: v (scaled ε and x0), x0 (no ε drawn); channels-last v
        v_target = loss_launcher.Target(True, a[t], x, -b[t])
        loss_launcher.forward(x, 4, 5, 0, 0.0, v_target)
        loss_launcher.backward(x, scale, 4, 5, 0, 0.0, v_target)
        loss_launcher.forward(x, 4, 5, 0, 0.0, loss_launcher.Target(False, None, x, scale))
        cl_v = loss_launcher.Target(True, a[t], cl4, -b[t])
        loss_launcher.forward(cl4, 4, 5, 0, 0.0, cl_v)
        loss_launcher.backward(cl4, scale, 4, 5, 0, 0.0, cl_v)
    # A training step's timesteps or σ: a batch's draws, from an int seed and from a device seed.
    sampling_launcher.draws(64, 5, 0, "cpu")
    sampling_launcher.draws(64, torch.tensor([7]), 0, "cpu")
    for dtype in (torch.float32, torch.bfloat16):
        # A training batch: per-sample t, many programs per row (no shape-1 specialisation).
        x = torch.zeros(16, 4, 64, 64, dtype=dtype)
        t = torch.arange(16) * 60
        for write_noise in (False, True):
            noising_launcher.forward(x, t, a, b, None, None, None, None, 5, 0, 0, 0, 0.0, write_noise, False, 0)
        # The same batch as a block 16 elements into a larger tensor: its rows are not whole tiles from element
        # 0, so it takes the masked tile, as a shard's runs do.
        for write_noise in (False, True):
            noising_launcher.forward(x, t, a, b, None, None, None, None, 5, 0, 0, 0, 0.0, write_noise, False, 16)
        # Its ε loss, forward and backward.
        loss_launcher.forward(x, 16, 5, 0, 0.0)
        loss_launcher.backward(x, torch.ones(16), 16, 5, 0, 0.0)
        # The same with t checked on the device (debug compile: the kernel's device_assert is live).
        noising_launcher.forward(x, t, a, b, None, None, None, None, 5, 0, 0, 0, 0.0, False, False, 0, True)
        # A context-parallel shard of that batch (frames 32-63 of 64): its runs read from the units table,
        # on the contiguous tile.
        shard_forwards(dtype)
        # The same batch channels-last (the channels-last tile).
        for write_noise in (False, True):
            channels_last = x.to(memory_format=torch.channels_last)
            noising_launcher.forward(channels_last, t, a, b, None, None, None, None, 5, 0, 0, 0, 0.0, write_noise,
                                     False, 0)


# Whether the launches recorded are an AMD GPU's (compile_variants sets it; the launchers read
# torch.version.hip, which this process's torch does not have).
AMD_LAUNCHES = [False]


def target_fewest_warps(sms):
    """launch.tiling.fewest_warps on the target's vendor: the floor of a sized or fitted tile."""
    if sms is None:
        return None
    return tiling_module.MIN_WARPS if AMD_LAUNCHES[0] else 1


def sized_launches(units: int):
    """A 262,144-element training batch (64×4×32×32, per-sample t) launched as the launcher sizes it on a GPU
    of ``units`` SMs (CUs) (launch.tiling.filling_tile): the tile the first training steps would run."""
    batch_launches(units, (64, 4, 32, 32), with_loss=True)


def large_batch_launches(units: int):
    """A 16,777,216-element batch (64×4×256×256, per-sample t) launched as the noising launcher runs it on a
    GPU of ``units`` SMs (CUs), where a GPU issues the most instructions per byte it can (the sizes at which
    the issue rate binds): rows of whole tiles, and the same batch 16 elements into a larger tensor (masked
    rows), each with several tiles per program (launch.tiling.grouped_tiles)."""
    batch_launches(units, (64, 4, 256, 256), with_loss=False)
    batch_launches(units, (64, 4, 256, 256), with_loss=False, elem_offset=16)


def batch_launches(units: int, shape: tuple, with_loss: bool, elem_offset: int = 0):
    """The drawn-noise forward (x_t, x_t + ε) of a batch of ``shape`` in float32 and bfloat16 (``elem_offset``
    elements into the stream), and with_loss its ε loss forward and backward, launched on a GPU of ``units``
    SMs (CUs)."""
    a, b = NoiseSchedule.linear().coefficient_tables("cpu")
    with on_gpu(units):
        for dtype in (torch.float32, torch.bfloat16):
            x = torch.empty(shape, dtype=dtype)
            t = torch.arange(shape[0]) * 15
            for write_noise in (False, True):
                noising_launcher.forward(x, t, a, b, None, None, None, None, 5, 0, 0, 0, 0.0, write_noise, False,
                                         elem_offset)
            if with_loss:
                loss_launcher.forward(x, shape[0], 5, 0, 0.0)
                loss_launcher.backward(x, torch.ones(shape[0]), shape[0], 5, 0, 0.0)


def shard_launches(units: int):
    """The context-parallel shard of :func:`shard_forwards` launched as the noising launcher runs it on a GPU of
    ``units`` SMs (CUs): the warps fitted to its runs where fewer of them make the runs whole tiles
    (launch.tiling.whole_row_tile), as to rows."""
    with on_gpu(units):
        for dtype in (torch.float32, torch.bfloat16):
            shard_forwards(dtype)


def shard_forwards(dtype):
    """The drawn-noise forward (x_t, x_t + ε) of a context-parallel shard of the training batch (frames 32-63
    of 64, per-sample t), its runs read from the units table."""
    a, b = NoiseSchedule.linear().coefficient_tables("cpu")
    runs = sharding.units_of(sharding.block_of((16, 4, 32, 64), (16, 4, 64, 64), (0, 0, 32, 0)), 1)
    t = (torch.arange(16) * 60).repeat_interleave(runs.per_row)
    shard = torch.zeros(16, 4, 32, 64, dtype=dtype)
    for write_noise in (False, True):
        noising_launcher.forward(shard, t, a, b, None, None, None, None, 5, 0, 0, 0, 0.0, write_noise, False, 1,
                                 False, 0.0, runs.table("cpu"), runs.aligned, runs.narrow)


@contextlib.contextmanager
def on_gpu(units: int):
    """The noising and loss launchers size, fit and group their tiles as on a GPU of ``units`` SMs (CUs) of
    the target's vendor while the block runs (the contiguous forward's settings, kept per kind of call,
    worked out afresh inside and after it)."""
    noising_launcher._launch_settings.cache_clear()
    noising_launcher.gpu_units = loss_launcher.gpu_units = lambda device: units
    noising_launcher.grouping_units = lambda sms: None if AMD_LAUNCHES[0] else sms  # tiling.grouping_units
    noising_launcher.fewest_warps = loss_launcher.fewest_warps = target_fewest_warps
    try:
        yield
    finally:
        noising_launcher.gpu_units = loss_launcher.gpu_units = gpu_units
        noising_launcher.grouping_units = grouping_units
        noising_launcher.fewest_warps = loss_launcher.fewest_warps = fewest_warps  # tiling.fewest_warps
        noising_launcher._launch_settings.cache_clear()


def quads_per_program(constexprs: dict) -> int:
    """BLOCK quads, or for the channels-last tile BLOCK_J columns of C quads."""
    return constexprs["BLOCK"] if "BLOCK" in constexprs else constexprs["BLOCK_J"] * constexprs["C"]


TARGETS = {"80": ("cuda", 80, 32), "90": ("cuda", 90, 32), "100": ("cuda", 100, 32),
           "gfx942": ("hip", "gfx942", 64), "gfx90a": ("hip", "gfx90a", 64)}


# Instructions per byte moved that each reference device issues while it streams at its copy bandwidth:
# lanes × instructions per lane per second / copy bandwidth, at 0.9 × copy (docs/performance.md: the model).
# A variant that needs more per byte is bound by instruction issue at that ratio of copy bandwidth.
ISSUE_PER_BYTE = {"90": {"H100": 11.0, "H200": 7.8}, "gfx942": {"MI300X": 8.6}}
# The reference device's SMs (NVIDIA) or CUs (AMD): how many programs fill one of its waves.
REFERENCE_UNITS = {"80": 108, "90": 132, "100": 148, "gfx942": 304, "gfx90a": 104}
PROGRAM_SIZES = (262144, 1048576, 16777216)
OPS = {"noising_fwd": "noising", "noising_bwd": "noising_backward", "loss_fwd": "loss_forward",
       "loss_bwd": "loss_backward", "forward_trajectory": "trajectory", "sampling_draws": "sampling"}
# What each switch adds to a variant, by name.
OPTIONS = {"HAS_NOISE": "given_noise", "WRITE_NOISE": "eps", "WRITE_V": "v", "HAS_OFFSET": "offset",
           "SEED_FROM_PTR": "device_seed", "PERTURB": "perturbation", "HAS_GV": "v_grad", "NEED_GN": "noise_grad",
           "NEED_PARTIALS": "table_grads", "EPS_SCALED": "scaled_eps", "HAS_X0": "x0", "HAS_SNAPSHOTS": "snapshots"}


def describe(kernel: str, constexprs: dict, dtype: str, debug: bool) -> dict:
    """What a variant is and what it moves: op, layout, options, draws_noise, bytes_per_element."""
    c = {k: str(v) for k, v in constexprs.items()}
    on = {k for k, v in c.items() if v == "True"}
    op = next(value for key, value in OPS.items() if kernel.startswith(key))
    if "channels_last" in kernel:
        layout = "channels_last"
    elif "contiguous" in kernel or op in ("trajectory", "sampling") or c.get("NDIM") == "1":
        layout = "contiguous"
    else:
        layout = "strided"
    options = sorted(OPTIONS[k] for k in on if k in OPTIONS)
    options += ["shard"] if c.get("UNITS", "0") in ("1", "2", "5", "6", "7") else []  # 3, 4: rows of one tensor
    options += ["debug"] if debug else []
    if op == "loss_forward" or op == "loss_backward":
        options += [] if "HAS_EPS" in on else ["no_eps"]
    s = 4 if dtype == "float32" else 2
    if op == "noising":
        draws = "HAS_NOISE" not in on
        moved = s * (2 + ("HAS_NOISE" in on) + ("WRITE_NOISE" in on) + ("WRITE_V" in on))
    elif op == "noising_backward":
        draws = "NEED_PARTIALS" in on and "HAS_NOISE" not in on
        reads = 1 + ("HAS_GV" in on) + (("NEED_PARTIALS" in on) * (1 + ("HAS_NOISE" in on)))
        moved = s * (reads + ("NEED_GX" in on) + ("NEED_GN" in on))
    elif op in ("loss_forward", "loss_backward"):
        draws = "HAS_EPS" in on
        moved = s * (1 + ("HAS_X0" in on) + (op == "loss_backward"))
    elif op == "trajectory":
        draws, moved = True, 2 * s
    else:  # sampling: an int32 word and a float32 normal written per sample
        draws, moved = True, 8
    return {"op": op, "layout": layout, "options": options, "draws_noise": draws, "bytes_per_element": moved}


def launched_programs(name: str, what: dict, constexprs: dict) -> dict:
    """{n: programs} the launcher starts for a one-row tensor of each size in PROGRAM_SIZES on the reference
    device: the noising forward's and the loss's row tiles sized to its SMs/CUs (launch.tiling.filling_tile),
    every other launch at this variant's tile; the noising forward's whole-tile rows grouped as its launcher
    groups them (launch.tiling.grouped_tiles)."""
    if what["op"] in ("noising", "loss_forward", "loss_backward") and what["layout"] != "channels_last":
        from diffusion_kernels.kernels import loss, noising

        module = noising if what["op"] == "noising" else loss
        paired = str(constexprs.get("PAIRED")) == "True"
        units = REFERENCE_UNITS[name]
        tiles = {n: tiling(module, n, 1, 0, paired, what["layout"] == "strided", units) for n in PROGRAM_SIZES}
        if what["op"] == "noising":  # one-row tensors of whole tiles: several tiles per program where it may
            sms = None if TARGETS[name][0] == "hip" else units  # tiling.grouping_units
            tiles = {n: noising_launcher.forward_tiles(tile, 0, 0, sms, True)[0] for n, tile in tiles.items()}
        return {n: tile.grid[0] for n, tile in tiles.items()}
    per_program = 4 * quads_per_program(constexprs)
    return {n: -(-n // per_program) for n in PROGRAM_SIZES}


def predictions(name: str, programs: dict, instructions_per_byte: float) -> dict:
    """programs (the launch's programs at each size in PROGRAM_SIZES, with their waves on the reference
    device's SMs/CUs) and predicted_fraction_of_copy (the issue-rate bound, per reference device)."""
    return {
        "programs": programs,
        "programs_per_unit": {n: count / REFERENCE_UNITS[name] for n, count in programs.items()},
        "predicted_fraction_of_copy": {device: min(1.0, rate / instructions_per_byte)
                                       for device, rate in ISSUE_PER_BYTE.get(name, {}).items()},
    }


# The launch keywords that are compile options, not kernel arguments (launch.tiling.launch_options).
LAUNCH_OPTIONS = ("num_warps", "debug", "sanitize_overflow", "enable_fp_fusion")


def compile_variants(name: str):
    """Every recorded launch compiled for ``name``; yields one dict of figures per variant."""
    backend, arch, lanes = TARGETS[name]
    amd = backend == "hip"
    # The launch settings the launchers choose on that vendor's GPU, fixed here where no GPU is.
    math = launch.MATH_POLY if amd else launch.MATH_NVIDIA
    for family in (noising_launcher, trajectory_launcher, loss_launcher, sampling_launcher):
        family.math_mode = lambda device: math
    AMD_LAUNCHES[0] = amd
    tiling_module.fewest_warps = target_fewest_warps  # the sized tiles' floor (launch.tiling.filling_tile)
    issue_launches(REFERENCE_UNITS[name])
    target = GPUTarget(backend, arch, lanes)
    wavefront = tiles_kernels.AMD_WAVEFRONT
    for kernel, args, kwargs in recorded:
        kwargs = dict(kwargs)
        options = {k: kwargs.pop(k) for k in LAUNCH_OPTIONS if k in kwargs}
        if amd:
            options["num_warps"] = max(1, options["num_warps"] * 32 // wavefront)
        num_warps = options["num_warps"]
        signature, constexprs, attrs = specialise(kernel, args, kwargs)
        compiled = triton.compile(ASTSource(kernel, signature, constexprs, attrs), target=target, options=options)
        figures = (amd_figures if amd else nvidia_figures)(compiled)
        tiles = int(constexprs.get("TILES", 1))
        elements = 4 * quads_per_program(constexprs) / (lanes * num_warps)
        dtype = next(str(a.dtype).replace("torch.", "") for a in args if isinstance(a, torch.Tensor))
        what = describe(kernel.__name__, constexprs, dtype, options.get("debug", False))
        # A program of TILES tiles runs its loop's body once per tile and the rest once: what a thread issues.
        issued = figures["machine_instructions"] + (tiles - 1) * figures["loop_instructions"]
        per_element = issued / (tiles * elements)
        yield {
            "target": name,
            "kernel": kernel.__name__,
            "constexprs": {k: str(v) for k, v in constexprs.items() if k.isupper()},
            "specialised_to_one": sorted(k for k in constexprs if not k.isupper()),
            "dtype": next(str(a.dtype).replace("torch.", "") for a in args if isinstance(a, torch.Tensor)),
            "shape": next(list(a.shape) for a in args if isinstance(a, torch.Tensor)),
            "debug": options.get("debug", False),
            "num_warps": num_warps,
            "elements_per_thread": elements,
            "tiles_per_program": tiles,
            "instructions_per_element": per_element,
            **what,
            "instructions_per_byte": per_element / what["bytes_per_element"],
            **predictions(name, launched_programs(name, what, constexprs), per_element / what["bytes_per_element"]),
            **figures,
        }


FLAGS = ("HAS_NOISE", "WRITE_NOISE", "WRITE_V", "HAS_OFFSET", "SEED_FROM_PTR", "HAS_SNAPSHOTS")


def _describe(v: dict) -> str:
    c = v["constexprs"]
    flags = [f.lower() for f in FLAGS if c.get(f) == "True"] + (["debug"] if v["debug"] else [])
    return f"{v['kernel'].replace('_kernel', '')} {v['dtype']} {'x'.join(map(str, v['shape']))} {','.join(flags)}"


def format_table(variants) -> str:
    lines = [f"{'variant':<72} {'regs':>5} {'spill B':>7} {'instr':>6} {'elem/thr':>8} {'instr/elem':>10} "
             f"{'vec ld/st':>9} special-function instructions"]
    for v in variants:
        special = " ".join(f"{k}:{n}" for k, n in v["special_function_ops"].items()) or "-"
        lines.append(f"{_describe(v):<72} {v['registers']:>5} {v['stack_bytes']:>7} {v['machine_instructions']:>6} "
                     f"{v['elements_per_thread']:>8g} {v['instructions_per_element']:>10.1f} "
                     f"{v['vector_loads']:>4}/{v['vector_stores']:<4} {special}")
    return "\n".join(lines)


def main(argv) -> int:
    args = [a for a in argv if a != "--json"]
    name = args[0] if args else "90"
    if name not in TARGETS or len(args) > 1:
        print(f"usage: gpu_compile_check.py [{'|'.join(TARGETS)}] [--json]", file=sys.stderr)
        return 2
    variants = compile_variants(name)
    if "--json" in argv:
        for v in variants:
            print(json.dumps(v), flush=True)
    else:
        variants = list(variants)
        print(f"{len(variants)} kernel variants compiled for {name} (triton {triton.__version__})")
        print(format_table(variants))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
