"""What the ahead-of-time compile check reads from a compiled kernel: NVIDIA cubin/PTX, AMD AMDGCN."""
import os
import re
import subprocess
import tempfile

import triton

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


def sass_instructions(sass: str) -> int:
    """Machine instructions in the kernel, padding (NOP) and the closing self-branch left out: what each
    thread issues, give or take the instructions a predicate skips, where the kernel has no loop (else
    see sass_loop_instructions)."""
    ops = [m.group(1) for line in sass.splitlines() if (m := SASS_LINE.match(line))]
    return sum(op != "NOP" for op in ops) - 1


SASS_ADDRESSED = re.compile(r"^\s*/\*([0-9a-f]{4,})\*/\s+(?:@!?U?P\w+\s+)?([A-Z][A-Z0-9_.]*)(.*)")


def sass_loop_instructions(sass: str) -> int:
    """Machine instructions inside the kernel's loops (from a backward branch's target to the branch): a
    thread issues them once per trip. 0 for a kernel without one."""
    lines = [(int(m.group(1), 16), m.group(2), m.group(3))
             for line in sass.splitlines() if (m := SASS_ADDRESSED.match(line))]
    inside = 0
    for address, op, rest in lines:
        target = re.match(r"\s*(0x[0-9a-f]+)", rest) if op.startswith("BRA") else None
        if target and int(target.group(1), 16) < address:
            start = int(target.group(1), 16)
            inside += sum(op != "NOP" for a, op, _ in lines if start <= a <= address)
    return inside


SASS_OPCODE = re.compile(r"^\s*/\*[0-9a-f]{4,}\*/\s+(?:@!?U?P\w+\s+)?([A-Z][A-Z0-9_.]*)")


def streaming_load_position(sass: str) -> float | None:
    """Where the first evict-first global load (x0, the prediction: the data the kernel streams) falls in the
    instruction stream, as a fraction of it; None for a kernel that streams nothing in."""
    ops = [m.group(1) for line in sass.splitlines() if (m := SASS_OPCODE.match(line))]
    ops = [op for op in ops if op != "NOP"]
    first = next((k for k, op in enumerate(ops) if op.startswith("LDG") and ".EF" in op), None)
    return None if first is None else first / max(len(ops) - 1, 1)


# The Philox round multipliers 0xD2511F53 and 0xCD9E8D57 as PTX prints them (signed).
PHILOX_MULTIPLIERS = ("-766435501", "-845247145")


# kernels/philox_normal.MUL_WIDE_PTX as the PTX holds it: a quad's wide multiply on the NVIDIA path.
INLINE_MUL_WIDE = re.compile(r"\{ \.reg \.u64 t; mul\.wide\.u32 t, %r\d+, %r\d+; mov\.b64 \{%r\d+, %r\d+\}, t; \}")


def philox_multiplies(ptx: str) -> int:
    """Multiplies by a Philox round constant (wide, or mulhi; the NVIDIA path's inline wide multiplies, whose
    constant is a register), not counting address arithmetic."""
    return sum(
        (any(op in line for op in ("mul.wide.u32", "mul.hi.u32", "mul.lo.s32"))
         and line.rstrip(";").split()[-1] in PHILOX_MULTIPLIERS) or bool(INLINE_MUL_WIDE.search(line))
        for line in ptx.splitlines()
    )



def nvidia_figures(compiled) -> dict:
    ptx = compiled.asm["ptx"]
    listing = cuobjdump(compiled.asm["cubin"], "-sass")  # read once for the three figures below
    sass = sass_instructions(listing)
    return {
        "ptx_lines": ptx.count("\n"),
        "vector_loads": sum(".v4." in line or ".v2." in line for line in ptx.splitlines() if "ld.global" in line),
        "vector_stores": sum(".v4." in line or ".v2." in line for line in ptx.splitlines() if "st.global" in line),
        "philox_multiplies": philox_multiplies(ptx),
        "shared_memory_ops": ptx.count("st.shared") + ptx.count("ld.shared"),
        "approx_math_ops": sum(ptx.count(op) for op in ("sin.approx", "cos.approx", "lg2.approx")),
        "special_function_ops": {op: ptx.count(op) for op in ("sin.approx", "cos.approx", "lg2.approx")
                                 if op in ptx},
        "code_bytes": len(compiled.asm["cubin"]),
        "cubin_bytes": len(compiled.asm["cubin"]),
        "device_asserts": ptx.count(".b8 assertMessage_"),  # one global string per assertion
        "integer_divisions": len(re.findall(r"\b(?:div|rem)\.[su](?:32|64)\b", ptx)),
        "sass_instructions": sass,
        "machine_instructions": sass,
        "loop_instructions": sass_loop_instructions(listing),
        "x0_load_position": streaming_load_position(listing),
        **resource_usage(compiled.asm["cubin"]),
    }


AMD_PHILOX_MULTIPLIERS = ("0xd2511f53", "0xcd9e8d57")
AMD_SPECIAL = ("v_log_f32", "v_exp_f32", "v_sin_f32", "v_cos_f32", "v_sqrt_f32", "v_rcp_f32", "v_rsq_f32")


def amd_philox_multiplies(asm: str) -> int:
    """Vector multiplies by a Philox round constant: as a literal, or from the scalar register it was
    moved into (the compiler keeps each constant in one SGPR for all ten rounds)."""
    held = set(re.findall(rf"s_mov_b32 (s\d+), (?:{'|'.join(AMD_PHILOX_MULTIPLIERS)})\b", asm))
    count = 0
    for line in asm.splitlines():
        words = line.replace(",", " ").split()
        if words and words[0] in ("v_mad_u64_u32", "v_mul_hi_u32", "v_mul_lo_u32"):
            count += any(w in held or w in AMD_PHILOX_MULTIPLIERS for w in words[1:])
    return count


def _amd_metadata(asm: str, key: str):
    found = re.search(rf"\.{key}:\s+(\d+)", asm)
    return int(found.group(1)) if found else None


def amd_figures(compiled) -> dict:
    """From the AMDGCN assembly: VGPRs (wave64), scratch, and the vector instructions each thread issues
    (scalar instructions issue on their own unit, once per wavefront)."""
    asm = compiled.asm["amdgcn"]
    body = [line.split()[0] for line in asm.splitlines()
            if line.startswith("\t") and line.strip() and not line.strip().startswith((".", ";"))
            and re.match(r"[a-z]", line.strip())]
    vector = [op for op in body if op.startswith(("v_", "global_", "buffer_", "flat_", "ds_"))]
    scratch = _amd_metadata(asm, "private_segment_fixed_size") or 0
    spills = (_amd_metadata(asm, "vgpr_spill_count") or 0) + (_amd_metadata(asm, "sgpr_spill_count") or 0)
    return {
        "vector_loads": sum(op.startswith(("global_load_dwordx", "buffer_load_dwordx")) for op in body),
        "vector_stores": sum(op.startswith(("global_store_dwordx", "buffer_store_dwordx")) for op in body),
        "philox_multiplies": amd_philox_multiplies(asm),
        "shared_memory_ops": sum(op.startswith("ds_") for op in body),
        "special_function_ops": {op: n for op in AMD_SPECIAL if (n := sum(o.startswith(op) for o in body))},
        "code_bytes": len(compiled.asm["hsaco"]),
        "integer_divisions": sum(op.startswith("v_rcp_iflag_f32") for op in body),  # the unsigned-division idiom
        "machine_instructions": len(vector),
        "loop_instructions": _amd_loop_vector_instructions(asm),
        "scalar_instructions": len(body) - len(vector),
        "registers": _amd_metadata(asm, "vgpr_count"),
        "sgprs": _amd_metadata(asm, "sgpr_count"),
        "stack_bytes": scratch + spills,
        "x0_load_position": _amd_streaming_load_position(body, asm),
    }


def _amd_loop_vector_instructions(asm: str) -> int:
    """Vector instructions inside the kernel's loops (from a label to a scalar branch back to it), as on
    NVIDIA."""
    seen, count, inside = {}, 0, 0
    for line in asm.splitlines():
        label = re.match(r"^(\.LBB\w+):", line)
        if label:
            seen[label.group(1)] = count
            continue
        words = line.split()
        if not line.startswith("\t") or not words or not re.match(r"[a-z]", words[0]):
            continue
        if words[0].startswith(("v_", "global_", "buffer_", "flat_", "ds_")):
            count += 1
        elif words[0].startswith(("s_cbranch_scc", "s_branch")) and words[-1] in seen:
            # A loop's trip count is uniform: its back edge tests a scalar condition (an exec-mask branch
            # back is the layout of divergent code, run once).
            inside += count - seen[words[-1]]
    return inside


def _amd_streaming_load_position(body: list, asm: str) -> float | None:
    """The first vector load from memory (global or buffer) and its place among the instructions, as on
    NVIDIA: on AMD a program's uniform loads (t, the tables' entries, the seed, a run's start) are scalar
    loads, so the first vector load is of the data the kernel streams (x0, the prediction, the upstream
    gradient); the evict-first hint leaves no mark in the AMDGCN listing."""
    lines = [line.strip() for line in asm.splitlines() if line.startswith("\t") and line.strip()
             and not line.strip().startswith((".", ";")) and re.match(r"[a-z]", line.strip())]
    first = next((k for k, line in enumerate(lines) if line.startswith(("global_load", "buffer_load"))), None)
    return None if first is None else first / max(len(lines) - 1, 1)
