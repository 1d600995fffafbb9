"""Benchmark sweep: the fused q_sample against the peers a user would pick instead.

Providers, side by side in one run:
  fused      diffusion_kernels.noising (one Triton kernel)
  eager      the textbook formula in eager PyTorch with a separate randn_like (reference.q_sample)
  compile    torch.compile of that textbook formula (Inductor fuses it, with its own Philox)
  diffusers  DDPMScheduler.add_noise fed by randn_like (when diffusers is installed)
  copy       a device-to-device copy of x0: the floor no noising pass can beat

Modes and the bytes each moves (N elements of s bytes):
  xt_eps       draw ε, write x_t and ε        3·N·s
  xt           draw ε, write x_t only         2·N·s
  given_noise  read x0 and ε, write x_t       3·N·s
  backward     gradient to x0 (read g, write) 2·N·s
  step, trajectory, loss: one forward step, ten steps, the ε-MSE (bench/spec.py)
  train_eps    a text-to-image step: t, noising, ε / min-SNR loss, backward    5·N·s
  train_flow   an SD3 / Flux step: σ, noising, flow loss, backward              7·N·s
               (bench/training.py; the "saved MB" column: what the step keeps for its backward)
  copy         read x0, write a copy          2·N·s
  sharded      2 processes noising one batch split along frames: the broadcast recipe against global
               positions (bench/sharded.py; its own sharded.json and sharded.png)
  host         a call's host time on a (2, 4, 8, 8) batch: the CPU loop, the GPU path's host work, a tiny
               training step, beside eager and diffusers (bench/host.py; its own host.json and host.png)

Layouts: contiguous x0 of shape (4, N/4), or channels_last latents 4 × 4 × H × W
(``layouts=("channels_last",)``; every tensor of the case in that layout).

Effective bandwidth is those bytes over the median time; "of copy" divides it
by the copy bandwidth measured in the same run at the same size and dtype.
On CUDA, times are triton.testing.do_bench medians (L2 flushed between runs).
Without a GPU the sweep still runs end to end on small sizes; the fused
provider then runs in Triton's interpreter and its rows are marked untimed.
"""
import importlib

# Each name and the module that holds it; loaded on first use, so the command line can read
# the sweep's choices (spec) before torch is imported.
_EXPORTS = {
    **dict.fromkeys(("MODES", "MODE_CHOICES", "SHARDED_MODE", "HOST_MODE", "NOISING_MODES", "TRAINING_MODES", "PROVIDERS", "PASSES", "LAYOUTS", "GPU_SIZES", "CPU_SIZES",
                     "DTYPE_NAMES", "SMALL_LATENTS", "TRAJECTORY_STEPS", "CPU_DEFAULTS", "GPU_DEFAULTS",
                     "estimate_seconds",
                     "TILE_CONSTANTS", "batch_shape", "check_tiles"), "spec"),
    **dict.fromkeys(("DTYPES", "cases", "compiled_providers", "diffusers_scheduler", "compile_settings"),
                    "providers"),
    **dict.fromkeys(("memory_of_loss",), "timing"),
    **dict.fromkeys(("environment", "tiles", "set_tiles"), "env"),
    **dict.fromkeys(("Row", "format_table", "format_header", "format_row", "format_memory", "merge", "write",
                     "record_path", "mergeable"), "record"),
    "plot": "plotting",
    "run": "sweep",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str):
    if name not in _EXPORTS:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(f".{_EXPORTS[name]}", __name__), name)
    globals()[name] = value
    return value


def __dir__():
    return sorted(set(globals()) | set(_EXPORTS))
