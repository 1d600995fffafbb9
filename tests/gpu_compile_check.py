"""Compile every kernel variant the launchers issue to CUDA code for a GPU target, without a GPU.

Run as a script in a process without TRITON_INTERPRET (the test does):

    python tests/gpu_compile_check.py [sm]        # default sm 90 (Hopper)

The launchers are called on CPU tensors with the kernels replaced by
recorders; each recorded launch is specialised the way Triton's runtime
would specialise it on a GPU (int arguments equal to 1 become constants, 16-
divisible ints and device pointers get the divisibility hint, arguments in
``do_not_specialize`` stay plain) and compiled through Triton's full pipeline
(TTIR → TTGIR → LLVM → PTX → cubin via ptxas). Prints one JSON line per variant.
"""
import json
import os
import re
import subprocess
import sys
import tempfile

assert os.environ.get("TRITON_INTERPRET", "0") in ("", "0"), "run without TRITON_INTERPRET"

import torch  # noqa: E402
import triton  # noqa: E402
from triton.backends.compiler import GPUTarget  # noqa: E402
from triton.compiler import ASTSource  # noqa: E402

from diffusion_kernels import launch  # noqa: E402
from diffusion_kernels.backend import kernels_module  # noqa: E402
from diffusion_kernels.schedules import NoiseSchedule  # noqa: E402

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


def issue_launches():
    km = kernels_module()
    for module, name in ((km.q_sample, "noise_affine_fwd_kernel"), (km.q_sample, "noise_affine_bwd_kernel"),
                         (km.q_sample, "noise_affine_fwd_contiguous_kernel"),
                         (km.q_sample, "noise_affine_bwd_contiguous_kernel"),
                         (km.q_sample, "noise_affine_fwd_channels_last_kernel"),
                         (km.trajectory, "forward_trajectory_kernel"), (km.noise_mse, "noise_mse_fwd_kernel"),
                         (km.noise_mse, "noise_mse_bwd_kernel"), (km.noise_mse, "noise_mse_fwd_channels_last_kernel"),
                         (km.noise_mse, "noise_mse_bwd_channels_last_kernel")):
        setattr(module, name, Recorder(getattr(module, name)))
    try:
        _launch_every_variant()
    finally:
        # Restored before compiling: the contiguous entry points call the strided kernels by name.
        for module in (km.q_sample, km.trajectory, km.noise_mse):
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
        launch.noise_affine(x, t, a, b, None, None, None, None, 5, 0, 0, 0, 0.0, True, False, 0)
        launch.noise_affine(x, t, a, b, None, None, None, None, 5, 0, 0, 0, 0.0, False, False, 0)
        launch.noise_affine(x, t, a, b, -b, a, None, None, 5, 0, 0, 0, 0.1, True, True, 0)
        launch.noise_affine(x, t, a, b, None, None, x, None, 5, 0, 0, 0, 0.0, False, False, 0)
        launch.noise_affine(cl, t, a, b, None, None, None, seed_t, 0, 0, 3, 0, 0.0, True, False, 0)
        # backward: grad to x0 only; with v and table sums from a regenerated ε
        launch.noise_affine_backward(x, None, t, a, b, None, None, None, None, None, 5, 0, 0, 0, 0.0, dtype, None,
                                     False, 0)
        launch.noise_affine_backward(x, x, t, a, b, -b, a, x, None, None, 5, 0, 0, 0, 0.0, dtype, dtype, True, 0)
        sliced = torch.randn(4, 3, 8, 16).to(dtype)[..., ::2]
        launch.noise_affine_backward(sliced, None, t, a, b, None, None, None, None, None, 5, 0, 0, 0, 0.0, dtype,
                                     None, False, 0)
        # channels-last, 4 channels: drawn ε through the channels-last tile, with v, offset noise, a device seed
        cl4 = torch.randn(4, 4, 8, 8).to(dtype).to(memory_format=torch.channels_last)
        launch.noise_affine(cl4, t, a, b, -b, a, None, seed_t, 0, 0, 3, 0, 0.1, True, True, 0)
        sa, sb = NoiseSchedule.linear().step_tables("cpu")
        launch.forward_trajectory(x, sa, sb, 999, seed=5, snapshot_steps=(10, 500))
        launch.noise_mse_forward(x, 4, 5, 0, 0.1)
        launch.noise_mse_backward(x, torch.ones(()), 1.0, 4, 5, 0, 0.0)
        launch.noise_mse_forward(cl4, 4, 5, 0, 0.1)
        launch.noise_mse_backward(cl4, torch.ones(()), 1.0, 4, 5, 0, 0.0)
    for dtype in (torch.float32, torch.bfloat16):
        # A training batch: per-sample t, many programs per row (no shape-1 specialisation).
        x = torch.zeros(16, 4, 64, 64, dtype=dtype)
        t = torch.arange(16) * 60
        for write_noise in (False, True):
            launch.noise_affine(x, t, a, b, None, None, None, None, 5, 0, 0, 0, 0.0, write_noise, False, 0)
        # The same with t checked on the device (debug compile: the kernel's device_assert is live).
        launch.noise_affine(x, t, a, b, None, None, None, None, 5, 0, 0, 0, 0.0, False, False, 0, True)
        # The same batch channels-last (the channels-last tile).
        for write_noise in (False, True):
            launch.noise_affine(x.to(memory_format=torch.channels_last), t, a, b, None, None, None, None, 5, 0, 0, 0,
                                0.0, write_noise, False, 0)


def cuobjdump(cubin: bytes, *flags: str) -> str:
    """The output of the cuobjdump Triton ships, run on ``cubin``."""
    tool = os.path.join(os.path.dirname(triton.__file__), "backends", "nvidia", "bin", "cuobjdump")
    with tempfile.NamedTemporaryFile(suffix=".cubin") as f:
        f.write(cubin)
        f.flush()
        return subprocess.run([tool, *flags, f.name], capture_output=True, text=True, check=True).stdout


def resource_usage(cubin: bytes) -> dict:
    """Registers and spill bytes per thread."""
    out = cuobjdump(cubin, "--dump-resource-usage")
    regs = re.search(r"REG:(\d+)", out)
    spill = re.search(r"STACK:(\d+)", out)
    return {"registers": int(regs.group(1)) if regs else None, "stack_bytes": int(spill.group(1)) if spill else None}


SASS_LINE = re.compile(r"^\s*/\*[0-9a-f]{4,}\*/\s+(?:@!?U?P\w+\s+)?([A-Z][A-Z0-9_]*)")


def sass_instructions(cubin: bytes) -> int:
    """Machine instructions in the kernel, padding (NOP) and the closing self-branch left out.

    The noising kernels have no loops, so this is also what each thread
    issues, give or take the instructions a predicate skips.
    """
    ops = [m.group(1) for line in cuobjdump(cubin, "-sass").splitlines() if (m := SASS_LINE.match(line))]
    return sum(op != "NOP" for op in ops) - 1


# The Philox round multipliers 0xD2511F53 and 0xCD9E8D57 as PTX prints them (signed).
PHILOX_MULTIPLIERS = ("-766435501", "-845247145")


def philox_multiplies(ptx: str) -> int:
    """Multiplies by a Philox round constant (wide, or mulhi), not counting address arithmetic."""
    return sum(
        any(op in line for op in ("mul.wide.u32", "mul.hi.u32", "mul.lo.s32"))
        and line.rstrip(";").split()[-1] in PHILOX_MULTIPLIERS
        for line in ptx.splitlines()
    )


def quads_per_program(constexprs: dict) -> int:
    """BLOCK quads, or for the channels-last tile BLOCK_J columns of C quads."""
    return constexprs["BLOCK"] if "BLOCK" in constexprs else constexprs["BLOCK_J"] * constexprs["C"]


def main(sm: int):
    issue_launches()
    target = GPUTarget("cuda", sm, 32)
    for kernel, args, kwargs in recorded:
        kwargs = dict(kwargs)
        options = {k: kwargs.pop(k) for k in ("num_warps", "debug", "sanitize_overflow") if k in kwargs}
        num_warps = options["num_warps"]
        signature, constexprs, attrs = specialise(kernel, args, kwargs)
        compiled = triton.compile(ASTSource(kernel, signature, constexprs, attrs), target=target, options=options)
        ptx = compiled.asm["ptx"]
        print(json.dumps({
            "kernel": kernel.__name__,
            "constexprs": {k: str(v) for k, v in constexprs.items() if k.isupper()},
            "specialised_to_one": sorted(k for k in constexprs if not k.isupper()),
            "ptx_lines": ptx.count("\n"),
            "dtype": next(str(a.dtype).replace("torch.", "") for a in args if isinstance(a, torch.Tensor)),
            "vector_loads": sum(".v4." in line or ".v2." in line for line in ptx.splitlines() if "ld.global" in line),
            "shape": next(list(a.shape) for a in args if isinstance(a, torch.Tensor)),
            "philox_multiplies": philox_multiplies(ptx),
            "shared_memory_ops": ptx.count("st.shared") + ptx.count("ld.shared"),
            "approx_math_ops": sum(ptx.count(op) for op in ("sin.approx", "cos.approx", "lg2.approx")),
            "cubin_bytes": len(compiled.asm["cubin"]),
            "debug": options.get("debug", False),
            "device_asserts": ptx.count(".b8 assertMessage_"),  # one global string per assertion
            "integer_divisions": len(re.findall(r"\b(?:div|rem)\.[su](?:32|64)\b", ptx)),
            "sass_instructions": sass_instructions(compiled.asm["cubin"]),
            "elements_per_thread": 4 * quads_per_program(constexprs) / (32 * num_warps),
            **resource_usage(compiled.asm["cubin"]),
        }))


if __name__ == "__main__":
    main(int(sys.argv[1]) if len(sys.argv) > 1 else 90)
