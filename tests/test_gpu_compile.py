"""Every kernel variant the launchers issue compiles for a Hopper GPU (sm_90) and for AMD's MI300
(gfx942) and MI250 (gfx90a), without a GPU.

Triton compiles ahead of time through its whole pipeline down to a cubin with the
ptxas it ships; this catches what the interpreter cannot (types of loop-carried
values, layouts, register pressure) and guards the tile structure that keeps
each Philox call in one thread.
"""
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import triton
from packaging.version import Version

SCRIPT = Path(__file__).with_name("gpu_compile_check.py")
PTXAS = Path(triton.__file__).parent / "backends" / "nvidia" / "bin" / "ptxas"


def _compile_check(target: str) -> list[dict]:
    env = {k: v for k, v in os.environ.items() if k != "TRITON_INTERPRET"}
    result = subprocess.run([sys.executable, str(SCRIPT), target, "--json"], capture_output=True, text=True,
                            env=env, timeout=900)
    assert result.returncode == 0, result.stderr[-4000:]
    return [json.loads(line) for line in result.stdout.splitlines() if line.startswith("{")]


@pytest.fixture(scope="module")
def variants():
    if not PTXAS.exists():
        pytest.skip(f"this Triton build ships no ptxas ({PTXAS})")
    if Version(triton.__version__).release < (3, 6):
        pytest.skip(f"the ahead-of-time compile check drives Triton 3.6's compiler API; this is {triton.__version__}")
    env = {k: v for k, v in os.environ.items() if k != "TRITON_INTERPRET"}
    result = subprocess.run([sys.executable, str(SCRIPT), "90", "--json"], capture_output=True, text=True, env=env,
                            timeout=900)
    assert result.returncode == 0, result.stderr[-4000:]
    return [json.loads(line) for line in result.stdout.splitlines() if line.startswith("{")]


def test_every_kernel_compiles_for_sm90(variants):
    kernels = {v["kernel"] for v in variants}
    assert kernels == KERNELS
    assert len(variants) == 115
    for v in variants:
        assert v["cubin_bytes"] > 0 and v["registers"] is not None and v["registers"] <= 255


def _fwd(variants, dtype, shape=(4, 3, 8, 8), debug=False, **flags):
    """The forward variant with these flags: contiguous tensors take the short-signature entry point."""
    for v in variants:
        c = v["constexprs"]
        kernel = "noising_fwd_kernel" if "NDIM" in flags else "noising_fwd_contiguous_kernel"
        if (v["kernel"] == kernel and v["dtype"] == dtype and v["shape"] == list(shape) and v["debug"] == debug
                and all(c[k] == str(val) for k, val in flags.items())):
            return v
    raise LookupError(flags)


@pytest.mark.parametrize("dtype", ["float32", "bfloat16", "float16"])
def test_writing_the_noise_does_not_recompute_philox(variants, dtype):
    """Each quad's Philox call stays in one thread: storing ε as well costs no extra Philox rounds."""
    plain = _fwd(variants, dtype, HAS_NOISE=False, WRITE_NOISE=False, WRITE_V=False)
    with_noise = _fwd(variants, dtype, HAS_NOISE=False, WRITE_NOISE=True, WRITE_V=False)
    assert with_noise["philox_multiplies"] == plain["philox_multiplies"] > 0


@pytest.mark.parametrize("dtype", ["float32", "bfloat16", "float16"])
def test_contiguous_io_is_vectorised_without_shared_memory(variants, dtype):
    """The noise tile's layout matches 16-byte loads and stores: no shuffle through shared memory."""
    v = _fwd(variants, dtype, HAS_NOISE=False, WRITE_NOISE=True, WRITE_V=False)
    assert v["vector_loads"] > 0 and v["shared_memory_ops"] == 0


def test_trajectory_draws_each_quad_once(variants):
    for v in variants:
        if v["kernel"] == "forward_trajectory_kernel":
            assert v["philox_multiplies"] <= 20  # one Philox call (10 rounds × 2 wide multiplies) per thread per step


@pytest.mark.parametrize("dtype", ["float32", "bfloat16"])
def test_input_perturbation_draws_each_quad_twice_and_nothing_more(variants, dtype):
    """ε and ε′ (input perturbation): a second Philox call per quad in the same thread, no more (the
    multiply count also holds the row and address arithmetic, once per program), without spills."""
    flags = dict(HAS_NOISE=False, WRITE_NOISE=True, WRITE_V=False, HAS_OFFSET=False)
    plain = _fwd(variants, dtype, PERTURB=False, **flags)
    perturbed = _fwd(variants, dtype, PERTURB=True, **flags)
    assert plain["philox_multiplies"] < perturbed["philox_multiplies"] <= 2 * plain["philox_multiplies"]
    assert perturbed["stack_bytes"] == 0 and perturbed["vector_loads"] > 0


@pytest.mark.parametrize("dtype", ["float32", "bfloat16"])
def test_loss_targets_draw_only_what_they_read(variants, dtype):
    """diffusion_loss's kernels: an x0 target draws no ε; a v target (scaled ε and x0) draws each quad once,
    as the ε target does, and reads x0 with vector loads."""
    by_target = {(v["kernel"], v["constexprs"]["HAS_EPS"], v["constexprs"]["HAS_X0"], v["constexprs"]["HAS_OFFSET"]): v
                 for v in variants if v["kernel"].startswith("loss_") and v["dtype"] == dtype
                 and v["shape"] == [4, 3, 8, 8]}
    x0 = by_target["loss_fwd_kernel", "False", "True", "False"]
    v_target = by_target["loss_fwd_kernel", "True", "True", "False"]
    eps = by_target["loss_bwd_kernel", "True", "False", "False"]  # the same residual, ε alone
    assert x0["philox_multiplies"] == 0
    assert v_target["philox_multiplies"] == eps["philox_multiplies"] > 0
    assert v_target["vector_loads"] > eps["vector_loads"] and v_target["stack_bytes"] == 0


def test_box_muller_uses_the_hardware_approximations(variants):
    """sin/cos/log as single special-function instructions: no library range reduction, no local memory."""
    v = _fwd(variants, "bfloat16", HAS_NOISE=False, WRITE_NOISE=False, WRITE_V=False)
    assert v["approx_math_ops"] > 0 and v["stack_bytes"] == 0
    given = _fwd(variants, "bfloat16", HAS_NOISE=True)
    assert given["approx_math_ops"] == 0 and given["philox_multiplies"] == 0


# The issue budget of a drawn-noise tile. At 0.9 × an H100's ~3 TB/s copy
# bandwidth (bytes read + written) the kernel moves ~2.7 TB/s; the GPU issues
# 132 SMs × 4 schedulers × 32 lanes × ~1.75 GHz ≈ 29.6 T thread instructions/s,
# ~11 instructions per byte moved with every issue slot busy. 8 per byte keeps
# the needed issue rate under three quarters of the peak: 32 instructions per
# element for bf16 x_t alone (2 bytes read, 2 written), the tightest case.
ISSUE_BUDGET_PER_BYTE = 8


@pytest.mark.parametrize("dtype, size", [("float32", 4), ("bfloat16", 2)])
@pytest.mark.parametrize("write_noise, debug", [(False, False), (True, False), (False, True)])
def test_drawn_noise_tile_fits_the_issue_budget(variants, dtype, size, write_noise, debug):
    """Machine instructions per element of a training batch's q_sample (per-sample t, many programs per row),
    also with t checked on the device, against the bytes each element moves."""
    v = _fwd(variants, dtype, shape=(16, 4, 64, 64), debug=debug, HAS_NOISE=False, WRITE_NOISE=write_noise,
             WRITE_V=False)
    assert "chunks_per_row" not in v["specialised_to_one"]  # the row division is there, not folded away
    per_element = v["sass_instructions"] / v["elements_per_thread"]
    bytes_per_element = size * (3 if write_noise else 2)
    assert per_element <= ISSUE_BUDGET_PER_BYTE * bytes_per_element, per_element
    assert v["stack_bytes"] == 0 and v["registers"] <= 80  # no spills; at least 3/8 occupancy


@pytest.mark.parametrize("dtype, size", [("float32", 4), ("bfloat16", 2)])
@pytest.mark.parametrize("write_noise", [False, True])
def test_channels_last_tile_draws_each_quad_once_within_the_issue_budget(variants, dtype, size, write_noise):
    """The training batch channels-last: as many quads per thread as the contiguous tile, each drawn once,
    vector accesses, and the same issue budget (the strided kernel needs ~85 instructions per element)."""
    shape = [16, 4, 64, 64]
    v = next(v for v in variants if v["kernel"] == "noising_fwd_channels_last_kernel" and v["dtype"] == dtype
             and v["shape"] == shape and v["constexprs"]["WRITE_NOISE"] == str(write_noise))
    contiguous = _fwd(variants, dtype, shape=shape, HAS_NOISE=False, WRITE_NOISE=write_noise, WRITE_V=False,
                      UNITS=3)
    assert v["elements_per_thread"] == contiguous["elements_per_thread"]
    assert _same_draws(v, contiguous)
    per_element = v["sass_instructions"] / v["elements_per_thread"]
    assert per_element <= ISSUE_BUDGET_PER_BYTE * size * (3 if write_noise else 2), per_element
    assert v["vector_loads"] > 0 and v["stack_bytes"] == 0 and v["registers"] <= 80


@pytest.mark.parametrize("dtype", ["float32", "bfloat16"])
@pytest.mark.parametrize("write_noise", [False, True])
def test_a_shard_of_the_batch_runs_at_the_contiguous_kernels_cost(variants, dtype, write_noise):
    """A context-parallel shard (frames 32-63 of the training batch, its runs read from the units table) takes
    the contiguous tile: vector accesses, each quad drawn once, 32-bit counters, no spills. Its float32 runs
    of 2,048 elements are whole tuned tiles and run unmasked (WHOLE_RUNS) within 1.5 instructions per element
    of the whole batch (the run table's loads) and within the float32 target; its bfloat16 runs, half a tuned
    tile (a launch with no GPU fits no warps to them), take the masked tile, within 10 % of the masked batch's
    instructions per element (the batch as a block that does not start at element 0)."""
    shard = _fwd(variants, dtype, shape=(16, 4, 32, 64), HAS_NOISE=False, WRITE_NOISE=write_noise, WRITE_V=False,
                 UNITS=7 if dtype == "float32" else 5)
    whole = _fwd(variants, dtype, shape=(16, 4, 64, 64), HAS_NOISE=False, WRITE_NOISE=write_noise, WRITE_V=False,
                 UNITS=3 if dtype == "float32" else 4)
    if dtype == "float32":
        assert shard["instructions_per_element"] <= whole["instructions_per_element"] + 1.5
        assert shard["instructions_per_element"] <= SM90_TARGETS[("noising", dtype, write_noise)]
    else:
        assert shard["instructions_per_element"] <= 1.10 * whole["instructions_per_element"]
    assert shard["philox_multiplies"] == whole["philox_multiplies"]  # both draw with 32-bit counters
    assert shard["vector_loads"] == whole["vector_loads"] and shard["vector_stores"] == whole["vector_stores"]
    assert shard["stack_bytes"] == 0 and shard["registers"] <= 80


def test_every_variant_says_what_it_is_moves_and_is_predicted_to_reach(variants):
    """The compile check's description of each variant (docs/performance.md): op, layout, options, the bytes
    it moves, the programs the launcher would start, the issue-rate prediction and where x0 is loaded."""
    ops = {"noising", "noising_backward", "loss_forward", "loss_backward", "trajectory", "sampling"}
    assert {v["op"] for v in variants} == ops
    for v in variants:
        assert v["layout"] in ("contiguous", "channels_last", "strided") and isinstance(v["options"], list)
        assert isinstance(v["draws_noise"], bool) and v["bytes_per_element"] > 0
        assert v["instructions_per_byte"] == pytest.approx(v["instructions_per_element"] / v["bytes_per_element"])
        per_program = 4 * (int(v["constexprs"]["BLOCK"]) if "BLOCK" in v["constexprs"]
                           else int(v["constexprs"]["BLOCK_J"]) * int(v["constexprs"]["C"]))
        if v["op"] in ("noising", "loss_forward", "loss_backward") and v["layout"] != "channels_last":
            # The launcher sizes these tiles to the GPU (test_the_training_batch_fills_an_h100).
            assert v["programs"] == _sized_programs(v), v["programs"]
        else:
            assert v["programs"] == {str(n): -(-n // per_program) for n in (262144, 1048576, 16777216)}
        assert set(v["predicted_fraction_of_copy"]) == {"H100", "H200"}
        for device, rate in (("H100", 11.0), ("H200", 7.8)):
            assert v["predicted_fraction_of_copy"][device] == pytest.approx(min(1.0, rate / v["instructions_per_byte"]))
        if v["op"] in ("noising", "loss_forward", "loss_backward"):
            assert 0 <= v["x0_load_position"] <= 1
    written = _fwd(variants, "bfloat16", shape=(16, 4, 64, 64), HAS_NOISE=False, WRITE_NOISE=True, WRITE_V=False)
    assert written["bytes_per_element"] == 6 and written["draws_noise"] and written["options"] == ["eps"]


def _sized_programs(v) -> dict:
    """The programs the noising or loss launcher starts on an H100 (132 SMs) for a one-row tensor of each size:
    the GPU's tuned tile (this process may run Triton's interpreter, whose tiles differ) sized by
    filling_tile, the noising forward's tiles grouped by grouped_tiles."""
    from diffusion_kernels.kernels import loss, noising
    from diffusion_kernels.launch.tiling import filling_tile

    module = noising if v["op"] == "noising" else loss
    paired = v["constexprs"].get("PAIRED") == "True"
    tuned = (module.BLOCK_QUADS_STRIDED if v["layout"] == "strided"
             else module.BLOCK_QUADS_PAIRED if paired else module.BLOCK_QUADS)
    programs = {}
    for n in (262144, 1048576, 16777216):
        tiles = -(-n // (4 * filling_tile(tuned, module.NUM_WARPS, n, 132, paired, 1)[0]))
        if v["op"] == "noising":  # a one-row tensor of whole tiles: up to 4 per program, 4 programs per SM kept
            tiles //= max([1] + [k for k in (2, 4) if tiles % k == 0 and tiles // k >= 4 * 132])
        programs[str(n)] = tiles
    return programs


def _same_draws(v, whole) -> bool:
    """Whether ``v`` draws each quad once, as the whole batch's tile does: its Philox multiplies within two
    per quad of the whole tile's (a whole-row tile computes a product of its first two rounds once per thread,
    philox_normal.philox4x32_one_varying_word), where a tile that drew its quads twice would have twice as
    many."""
    return abs(v["philox_multiplies"] - whole["philox_multiplies"]) <= 2 * v["elements_per_thread"] / 4 + 1


@pytest.mark.parametrize("dtype", ["float32", "bfloat16"])
@pytest.mark.parametrize("write_noise", [False, True])
def test_a_shard_of_the_batch_fills_an_h100_with_whole_runs(variants, dtype, write_noise):
    """The same shard as an H100 runs it (gpu_compile_check.shard_launches): its 131,072 elements sized to
    two programs per SM, the warps fitted to its runs, so every run is whole tiles and runs unmasked
    (WHOLE_RUNS) with 16-byte accesses and no spills."""
    found = [v for v in variants if v["op"] == "noising" and v["dtype"] == dtype and v["shape"] == [16, 4, 32, 64]
             and not v["debug"] and v["options"] == (["eps", "shard"] if write_noise else ["shard"])
             and v["num_warps"] == 1]
    assert len(found) == 1
    shard = found[0]
    assert shard["constexprs"]["UNITS"] == "7" and shard["vector_loads"] > 0 and shard["vector_stores"] > 0
    assert (16 * 4 * 32 * 64) // (4 * int(shard["constexprs"]["BLOCK"])) >= 2 * 132
    assert shard["stack_bytes"] == 0 and shard["registers"] <= 80


@pytest.mark.parametrize("dtype", ["float32", "bfloat16"])
@pytest.mark.parametrize("write_noise", [False, True])
def test_the_training_batch_fills_an_h100(variants, dtype, write_noise):
    """At 262,144 elements (a 16×4×64×64 latent batch) the drawn-noise launch starts at least two programs per
    SM of an H100 (the tuned tile would start 64–128): the tile it then compiles to keeps 16-byte accesses,
    spills nothing and stays within the register budget; 16M elements keep the tuned tile (several per
    program). Its warps were cut before each thread's elements (launch.tiling.filling_tile): float32 keeps
    the tuned tile's 16 per thread, and with them its instruction targets; bfloat16, whose one warp of 32
    per thread would start 256 programs, takes 16 per thread."""
    tuned = _fwd(variants, dtype, shape=(16, 4, 64, 64), HAS_NOISE=False, WRITE_NOISE=write_noise, WRITE_V=False,
                 UNITS=3)
    sized = _fwd(variants, dtype, shape=(64, 4, 32, 32), HAS_NOISE=False, WRITE_NOISE=write_noise, WRITE_V=False,
                 UNITS=3)
    assert tuned["programs"]["262144"] >= 264 and sized["programs"]["262144"] >= 264
    assert 262144 // (4 * int(sized["constexprs"]["BLOCK"])) >= 264  # the launch the H100 would run
    large = _training_batch(variants, "noising", dtype, write_noise, shape=LARGE_BATCH)
    assert large["constexprs"]["BLOCK"] == tuned["constexprs"]["BLOCK"]  # 16M elements keep the tuned tile
    tiles_at_16m = 16777216 // (4 * int(tuned["constexprs"]["BLOCK"]))
    assert tuned["programs"]["16777216"] * large["tiles_per_program"] == tiles_at_16m
    assert sized["philox_multiplies"] > 0 and sized["vector_loads"] > 0 and sized["vector_stores"] > 0
    assert sized["stack_bytes"] == 0 and sized["registers"] <= 80
    assert sized["num_warps"] == 1
    if dtype == "float32":
        assert sized["elements_per_thread"] == tuned["elements_per_thread"]
        assert sized["instructions_per_element"] <= SM90_TARGETS[("noising", dtype, write_noise)]
    else:
        assert sized["elements_per_thread"] == tuned["elements_per_thread"] // 2


@pytest.mark.parametrize("dtype", ["float32", "bfloat16"])
@pytest.mark.parametrize("kernel", ["loss_fwd_kernel", "loss_bwd_kernel"])
def test_the_training_batch_loss_fills_an_h100(variants, dtype, kernel):
    """The ε loss at 262,144 elements, forward and backward, sized the same way: two programs per SM of an
    H100, vector loads, no spills."""
    batch = [v for v in variants if v["kernel"] == kernel and v["dtype"] == dtype and not v["debug"]
             and v["constexprs"]["HAS_EPS"] == "True" and v["constexprs"]["HAS_X0"] == "False"]
    tuned = next(v for v in batch if v["shape"] == [16, 4, 64, 64])
    sized = next(v for v in batch if v["shape"] == [64, 4, 32, 32])
    assert tuned["programs"]["262144"] >= 264 and 262144 // (4 * int(sized["constexprs"]["BLOCK"])) >= 264
    assert sized["vector_loads"] > 0 and sized["stack_bytes"] == 0 and sized["registers"] <= 80
    if kernel == "loss_fwd_kernel":  # one warp: the tuned tile's instructions per element, within the target
        assert sized["instructions_per_element"] <= SM90_TARGETS[("loss_forward", dtype, False)]


def test_only_a_checked_launch_asserts_t_on_the_device(variants):
    """The device_assert on t is compiled in only when asked for (debug launch), and then nothing else is:
    Philox's wrapping key adds and the other integer arithmetic carry no overflow checks."""
    checked = [v for v in variants if v["debug"]]
    assert checked and all(v["device_asserts"] == 1 for v in checked)
    assert all(v["device_asserts"] == 0 for v in variants if not v["debug"])
    plain = _fwd(variants, "bfloat16", shape=(16, 4, 64, 64), HAS_NOISE=False, WRITE_NOISE=False, WRITE_V=False)
    with_check = _fwd(variants, "bfloat16", shape=(16, 4, 64, 64), debug=True, HAS_NOISE=False, WRITE_NOISE=False,
                      WRITE_V=False)
    assert with_check["sass_instructions"] - plain["sass_instructions"] < 40


def test_no_kernel_divides_integers(variants):
    """Rows and strided coordinates come from multiply-shifts: a runtime integer division would cost
    ~30 (32-bit) to ~70 (64-bit) instructions per use, per element for a strided layout."""
    assert all(v["integer_divisions"] == 0 for v in variants), [
        (v["kernel"], v["constexprs"]) for v in variants if v["integer_divisions"]]


KERNELS = {"noising_fwd_kernel", "noising_bwd_kernel", "noising_fwd_contiguous_kernel",
           "noising_bwd_contiguous_kernel", "noising_fwd_channels_last_kernel",
           "forward_trajectory_kernel", "loss_fwd_kernel", "loss_bwd_kernel",
           "loss_fwd_channels_last_kernel", "loss_bwd_channels_last_kernel", "sampling_draws_kernel"}


@pytest.fixture(scope="module", params=["gfx942", "gfx90a"])
def amd_variants(request):
    import triton.backends

    if "amd" not in triton.backends.backends:
        pytest.skip(f"this Triton build ({triton.__version__}) has no AMD backend")
    if Version(triton.__version__).release < (3, 6):
        pytest.skip(f"the ahead-of-time compile check drives Triton 3.6's compiler API; this is {triton.__version__}")
    return _compile_check(request.param)


def _drawn(v) -> bool:
    return v["philox_multiplies"] > 0


def test_every_kernel_compiles_for_amd_without_scratch(amd_variants):
    assert {v["kernel"] for v in amd_variants} == KERNELS and len(amd_variants) == 115
    for v in amd_variants:
        assert v["code_bytes"] > 0 and v["stack_bytes"] == 0, v  # no scratch, no spills
        assert v["registers"] is not None and v["registers"] <= 256, v  # the architectural VGPRs of a wave64


def test_amd_box_muller_runs_on_multiply_adds_only(amd_variants):
    """MATH_POLY: no vendor transcendental (v_log/v_sin/v_cos/v_exp) whose error bound the stream would
    rest on; only the square root and the reciprocal of ln_poly's f / (2 + f) (its error taken at its bound in
    test_box_muller.py)."""
    drawn = [v for v in amd_variants if _drawn(v)]
    assert drawn and all(set(v["special_function_ops"]) <= {"v_sqrt_f32", "v_rcp_f32"} for v in amd_variants)
    assert all(v["special_function_ops"].get("v_sqrt_f32", 0) > 0 for v in drawn)
    given = [v for v in amd_variants if v["kernel"] == "noising_fwd_contiguous_kernel"
             and v["constexprs"]["HAS_NOISE"] == "True"]
    assert given and all(not _drawn(v) and not v["special_function_ops"] for v in given)


def test_amd_writing_the_noise_does_not_recompute_philox(amd_variants):
    fwd = [v for v in amd_variants if v["kernel"] == "noising_fwd_contiguous_kernel"
           and v["constexprs"]["HAS_NOISE"] == "False" and v["constexprs"]["WRITE_V"] == "False"
           and v["constexprs"]["HAS_OFFSET"] == "False" and v["constexprs"]["PERTURB"] == "False"]
    by_write = {}
    for v in fwd:
        by_write.setdefault((v["dtype"], tuple(v["shape"]), v["debug"]), {})[v["constexprs"]["WRITE_NOISE"]] = v
    pairs = [p for p in by_write.values() if len(p) == 2]
    assert pairs and all(p["True"]["philox_multiplies"] == p["False"]["philox_multiplies"] > 0 for p in pairs)


def test_amd_training_batch_tiles_are_vectorised_at_four_waves_per_simd(amd_variants):
    """The training batch's drawn-noise tiles: 16-byte global accesses, at most 128 VGPRs (four
    wavefronts per SIMD of CDNA's 512), and no LDS shuffle for the contiguous tile (the channels-last
    tile's lane permutation goes through LDS on AMD)."""
    batch = [v for v in amd_variants if v["shape"] == [16, 4, 64, 64] and not v["debug"] and v["op"] == "noising"]
    assert len(batch) == 12
    for v in batch:
        assert v["vector_loads"] > 0 and v["vector_stores"] > 0 and v["registers"] <= 128, v
        if v["kernel"] == "noising_fwd_contiguous_kernel":
            assert v["shared_memory_ops"] == 0, v


def test_no_amd_kernel_divides_integers(amd_variants):
    assert all(v["integer_divisions"] == 0 for v in amd_variants)


# Instructions per element that the contiguous variants stay within (issue-rate targets; the compile
# check's figures, Triton 3.6): the noising forward on the launch the launcher starts for a 16M-element batch
# (several whole tiles per program, where the issue rate binds), and on the training batch's tuned tile; the
# loss on the training batch.
SM90_TARGETS = {("noising", "float32", False): 28, ("noising", "float32", True): 28,
                ("noising", "bfloat16", False): 24, ("noising", "bfloat16", True): 24.5,
                ("loss_forward", "float32", False): 28, ("loss_forward", "bfloat16", False): 27}
GFX942_TARGETS = {("noising", "float32", False): 50, ("noising", "float32", True): 50,
                  ("noising", "bfloat16", False): 50, ("noising", "bfloat16", True): 50,
                  ("loss_forward", "float32", False): 55, ("loss_forward", "bfloat16", False): 55}
LARGE_BATCH = [64, 4, 256, 256]  # gpu_compile_check.large_batch_launches
TRAINING_BATCH = [16, 4, 64, 64]


def _training_batch(variants, op, dtype, write_noise, shape=TRAINING_BATCH):
    """The contiguous drawn-noise variant of ``op`` (the ε target for the loss) for a batch of ``shape``, its
    rows whole tiles from element 0 (kernels/tiles.py, WHOLE_TILES)."""
    found = [v for v in variants if v["op"] == op and v["dtype"] == dtype and v["shape"] == shape
             and v["layout"] == "contiguous" and not v["debug"] and v["draws_noise"]
             and v["constexprs"].get("UNITS") == "3"
             and v["options"] == (["eps"] if write_noise else [])]
    assert len(found) == 1, [v["options"] for v in found]
    return found[0]


def _targeted(variants, key):
    """The variants a target binds: the noising forward at the 16M batch and at the training batch, the loss
    at the training batch."""
    op, dtype, write_noise = key
    if op != "noising":
        return [_training_batch(variants, *key)]
    large = _training_batch(variants, *key, shape=LARGE_BATCH)
    nvidia = variants[0]["target"] == "90"
    assert (large["tiles_per_program"] > 1) == nvidia  # several tiles per program there; AMD keeps one
    return [large, _training_batch(variants, *key)]


@pytest.mark.parametrize("key", sorted(SM90_TARGETS))
def test_the_contiguous_variants_meet_their_instruction_targets_on_sm90(variants, key):
    for v in _targeted(variants, key):
        assert v["instructions_per_element"] <= SM90_TARGETS[key], (v["shape"], v["instructions_per_element"])
        assert v["stack_bytes"] == 0 and v["registers"] <= 80


@pytest.mark.parametrize("key", sorted(GFX942_TARGETS))
def test_the_contiguous_variants_meet_their_instruction_targets_on_gfx942(amd_variants, key):
    if amd_variants[0]["target"] != "gfx942":
        pytest.skip("the targets are gfx942's (MI300X)")
    for v in _targeted(amd_variants, key):
        assert v["instructions_per_element"] <= GFX942_TARGETS[key], (v["shape"], v["instructions_per_element"])
        assert v["stack_bytes"] == 0


def test_every_contiguous_drawn_noise_variant_meets_the_targets_on_gfx942(amd_variants):
    """On gfx942 every contiguous drawn-noise forward (x_t, x_t + ε) stays within the noising target and every
    contiguous ε-loss forward within the loss's, whatever the tile: the tuned tile, the one-wavefront tiles an
    MI300X is sized to at 262,144 elements and for a shard (8 bfloat16 elements per thread), masked rows (the
    batches 16 elements in, a 4×3×8×8 tensor) and a shard's runs; each tile is addressed as one scalar base
    plus its lanes (kernels/tiles.row_tile), and x_t rounds to bfloat16 with one compare and one select for
    NaN (convert.quiet_nan_to_bf16_rtne)."""
    if amd_variants[0]["target"] != "gfx942":
        pytest.skip("the targets are gfx942's (MI300X)")
    noising = [v for v in amd_variants if v["op"] == "noising" and v["layout"] == "contiguous" and not v["debug"]
               and v["draws_noise"] and set(v["options"]) <= {"eps", "shard"}]
    assert len(noising) >= 30 and {v["num_warps"] for v in noising} == {1, 2}  # sized tiles among them
    assert any(v["elements_per_thread"] == 8 and v["dtype"] == "bfloat16" and "eps" in v["options"] for v in noising)
    for v in noising:
        key = ("noising", v["dtype"] if v["dtype"] == "float32" else "bfloat16", "eps" in v["options"])
        assert v["instructions_per_element"] <= GFX942_TARGETS[key], (v["shape"], v["options"], v["num_warps"],
                                                                       v["instructions_per_element"])
        assert v["stack_bytes"] == 0
    losses = [v for v in amd_variants if v["op"] == "loss_forward" and v["layout"] == "contiguous"
              and v["draws_noise"] and "offset" not in v["options"]]
    assert len(losses) >= 6
    for v in losses:
        key = ("loss_forward", v["dtype"] if v["dtype"] == "float32" else "bfloat16", False)
        assert v["instructions_per_element"] <= GFX942_TARGETS[key], (v["shape"], v["instructions_per_element"])


def test_amd_kernels_report_where_they_load_the_streamed_data(amd_variants):
    """x0_load_position on AMD: the first vector load's place (its uniform loads are scalar loads), for every
    noising and loss variant."""
    streaming = [v for v in amd_variants if v["op"] in ("noising", "loss_forward", "loss_backward")]
    assert streaming
    for v in streaming:
        assert v["x0_load_position"] is not None and 0 <= v["x0_load_position"] <= 1, v


@pytest.mark.parametrize("dtype", ["float32", "bfloat16"])
@pytest.mark.parametrize("write_noise", [False, True])
def test_a_large_batch_runs_several_tiles_per_program_in_one_loop(variants, dtype, write_noise):
    """At 16M elements on an H100 each program runs several consecutive tiles (launch.tiling.grouped_tiles)
    in one loop: the loop holds a tile's work (its Philox multiplies, its vector accesses) and the setup
    stays outside it, so a thread issues fewer instructions per element than with one tile per program."""
    large = _training_batch(variants, "noising", dtype, write_noise, shape=LARGE_BATCH)
    one = _training_batch(variants, "noising", dtype, write_noise)
    assert large["tiles_per_program"] in (2, 4) and int(large["constexprs"]["BLOCK"]) == int(one["constexprs"]["BLOCK"])
    assert 0 < large["loop_instructions"] < large["machine_instructions"]
    assert 0 < large["philox_multiplies"] <= one["philox_multiplies"]  # tile-invariant products leave the loop
    assert large["instructions_per_element"] < one["instructions_per_element"]
    assert large["programs"]["16777216"] * large["tiles_per_program"] * 4 * int(large["constexprs"]["BLOCK"]) == 2**24
    assert large["programs"]["16777216"] >= 4 * 132 and large["stack_bytes"] == 0


@pytest.mark.parametrize("dtype", ["float32", "bfloat16"])
@pytest.mark.parametrize("write_noise", [False, True])
def test_masked_rows_of_a_large_batch_run_several_tiles_per_program_with_32_bit_bounds(variants, dtype,
                                                                                      write_noise):
    """The 16M batch as a block 16 elements into a larger tensor: its rows are masked (kernels/tiles.py,
    NARROW_ROWS: bounds compared in 32 bits, as seen from the tile), and on an H100 each program still runs
    several consecutive tiles of its row, the last program of a row those left (tiles.tiles_in_row). Float32
    meets the contiguous targets there (x_t alone on one tile per program too), and so does bfloat16 x_t;
    bfloat16 x_t + ε, which reads its masked input in pairs rather than as words, is reported."""
    def masked(shape):
        found = [v for v in variants if v["op"] == "noising" and v["dtype"] == dtype and v["shape"] == shape
                 and v["layout"] == "contiguous" and not v["debug"] and v["draws_noise"]
                 and v["constexprs"].get("UNITS") == "4" and v["options"] == (["eps"] if write_noise else [])]
        assert len(found) == 1
        return found[0]

    large, one = masked(LARGE_BATCH), masked(TRAINING_BATCH)
    assert large["tiles_per_program"] == 4 and one["tiles_per_program"] == 1
    assert 0 < large["loop_instructions"] < large["machine_instructions"]
    assert 0 < large["philox_multiplies"] <= one["philox_multiplies"]
    assert large["instructions_per_element"] < one["instructions_per_element"] - 0.9
    if dtype == "float32" or not write_noise:
        assert large["instructions_per_element"] <= SM90_TARGETS[("noising", dtype, write_noise)]
    if dtype == "float32":
        if not write_noise:  # x_t alone (b[t]·ε drawn whole) meets it on the tuned tile as well
            assert one["instructions_per_element"] <= SM90_TARGETS[("noising", dtype, write_noise)]
    assert large["stack_bytes"] == 0 and large["registers"] <= 80


@pytest.mark.parametrize("dtype", ["float32", "bfloat16"])
@pytest.mark.parametrize("op", ["loss_forward", "loss_backward"])
def test_a_loss_whose_rows_fewer_warps_make_whole_runs_at_the_whole_tiles_cost(variants, dtype, op):
    """The ε loss of the 64×4×80×80 batch takes the fitted tile as the noising forward does
    (launch.tiling.whole_row_tile) and runs unmasked, at the training batch's instructions per element."""
    odd = _training_batch(variants, op, dtype, False, shape=[64, 4, 80, 80])
    whole = _training_batch(variants, op, dtype, False)
    assert odd["num_warps"] < whole["num_warps"] and odd["elements_per_thread"] == whole["elements_per_thread"]
    assert 25600 % (4 * int(odd["constexprs"]["BLOCK"])) == 0
    assert odd["instructions_per_element"] <= whole["instructions_per_element"] + 0.5
    assert odd["stack_bytes"] == 0 and odd["registers"] <= 80


@pytest.mark.parametrize("dtype", ["float32", "bfloat16"])
@pytest.mark.parametrize("write_noise", [False, True])
def test_rows_that_fewer_warps_make_whole_run_at_the_whole_tiles_cost(variants, dtype, write_noise):
    """A 64×4×80×80 batch: its rows (25,600 elements) are not whole tuned tiles, but are whole tiles of a
    quarter (bfloat16) or half (float32) of one at as many elements per thread (launch.tiling.whole_row_tile),
    so on an H100 they run unmasked, at the training batch's instructions per element."""
    odd = _training_batch(variants, "noising", dtype, write_noise, shape=[64, 4, 80, 80])
    whole = _training_batch(variants, "noising", dtype, write_noise)
    assert odd["num_warps"] < whole["num_warps"] and odd["elements_per_thread"] == whole["elements_per_thread"]
    assert 25600 % (4 * int(odd["constexprs"]["BLOCK"])) == 0
    assert odd["instructions_per_element"] <= whole["instructions_per_element"] + 0.5
    assert odd["stack_bytes"] == 0 and odd["registers"] <= 80
