"""What a sweep can ask for: modes, providers, layouts, sizes, tiles; imports nothing heavy,
so the command line checks its arguments before torch loads."""
from __future__ import annotations

# Modes and the passes over N elements each must make at least (the bytes GB/s is counted from):
# q_sample's four, one forward step, a trajectory of TRAJECTORY_STEPS steps (read x0, write x_T),
# the ε-MSE loss against a regenerated ε (read the prediction), and a training step (bench/training.py):
# noising (read x0, write x_t), the loss forward (read the prediction; x0 too for the flow target) and
# backward (read them, write the gradient), the stand-in model's own passes not counted.
MODES = ("xt_eps", "xt", "given_noise", "backward", "step", "trajectory", "loss", "train_eps", "train_flow")
NOISING_MODES = MODES[:4]
# A context-parallel group of processes noising one batch, broadcast recipe against global positions
# (bench/sharded.py): its own record and plot, not a case of the sweep.
SHARDED_MODE = "sharded"
# What a call costs the host on a small batch, beside eager and diffusers (bench/host.py): its own record.
HOST_MODE = "host"
MODE_CHOICES = MODES + (SHARDED_MODE, HOST_MODE)
TRAINING_MODES = ("train_eps", "train_flow")
PASSES = {"xt_eps": 3, "xt": 2, "given_noise": 3, "backward": 2, "step": 2, "trajectory": 2, "loss": 1,
          "train_eps": 5, "train_flow": 7, "copy": 2}
TRAJECTORY_STEPS = 10
# fused: the default path (Triton kernels on a GPU; the interpreter on CPU, untimed); cpu: the compiled
# CPU loop (backend="cpu", CPU only); reference: the pure-PyTorch reference (backend="reference").
PROVIDERS = ("fused", "cpu", "reference", "eager", "compile", "diffusers", "copy")
LAYOUTS = ("contiguous", "channels_last")
SMALL_LATENTS = 4 * 4 * 64 * 64  # host time per call is recorded at this size and below
GPU_SIZES = (SMALL_LATENTS, 1 << 20, 1 << 24, 1 << 26)
CPU_SIZES = (1 << 14, SMALL_LATENTS)
# A plain `bench` on a CPU: what a CPU user runs (the compiled loop against eager and diffusers), sized to
# finish in about a minute on two cores; the interpreter's untimed rows and torch.compile's compiles are
# asked for by name.
CPU_DEFAULTS = dict(dtypes=("float32", "bfloat16"), modes=("xt_eps", "xt", "loss", "train_eps", "train_flow"),
                    providers=("cpu", "eager", "diffusers", "copy"))
DEFAULT_OUT = "bench-results"


def estimate_seconds(cases: int, reps: int, cpu: bool) -> float:
    """A rough wall time of a sweep: each case times for about ``reps`` ms after a fifth of that in warm-up,
    and on a CPU also times 200 calls of host work (bench/timing.py)."""
    return cases * (1.2 * reps + (300 if cpu else 50)) / 1e3
DTYPE_NAMES = ("float32", "bfloat16", "float16")
# What a plain `bench` runs on a GPU: everything.
GPU_DEFAULTS = dict(dtypes=DTYPE_NAMES, modes=MODES, providers=PROVIDERS)
TILE_CONSTANTS = ("BLOCK_QUADS", "BLOCK_QUADS_PAIRED", "BLOCK_QUADS_STRIDED", "NUM_WARPS")
# launch/tiling.py's sizing of a launch to its GPU: the programs per SM below which the tuned tile shrinks
# (0: the tuned tile at every size), the most consecutive tiles one program runs (1: one each), and the
# warps a shrunk tile keeps before each thread's elements are cut (the tuned NUM_WARPS: elements first).
SIZING_CONSTANTS = ("PROGRAMS_PER_UNIT", "MAX_TILES_PER_PROGRAM", "SIZED_WARPS")


def row_layout(row: dict) -> str:
    """A record row's layout; records made before layouts were swept are contiguous."""
    return row.get("layout", "contiguous")


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


def check_tiles(**values) -> None:
    """A ValueError naming the first tile or sizing override that is not a valid value (no torch needed)."""
    for name, value in values.items():
        if name not in TILE_CONSTANTS + SIZING_CONSTANTS:
            raise ValueError(f"unknown tile constant {name!r}; choose from "
                             f"{', '.join(TILE_CONSTANTS + SIZING_CONSTANTS)}")
        if name == "PROGRAMS_PER_UNIT":
            if not isinstance(value, int) or value < 0:
                raise ValueError(f"{name} must be a whole number of programs per SM, got {value!r}")
        elif not isinstance(value, int) or value < 1 or value & (value - 1):
            raise ValueError(f"{name} must be a power of two, got {value!r}")
        if name == "BLOCK_QUADS_PAIRED" and value < 2:
            raise ValueError("BLOCK_QUADS_PAIRED must be at least 2 (each thread takes a pair of quads)")


