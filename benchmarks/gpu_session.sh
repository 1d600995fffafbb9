#!/usr/bin/env bash
# What a GPU machine runs. One lease, one command (about 8 minutes on an H200, at most 8 files):
#
#   RESULTS=$OUT bash benchmarks/gpu_session.sh first             # the GPU round: see first() below
#   RESULTS=DIR bash benchmarks/gpu_session.sh first --dry-run     # the same phases on CPU (CI runs it)
#
# and the follow-up phases for a second lease, each sized to fit a ten-minute call:
#
#   bash benchmarks/gpu_session.sh tests              # the test suite on CUDA
#   bash benchmarks/gpu_session.sh validate           # the full statistical validation
#   bash benchmarks/gpu_session.sh bench [ARGS...]    # the sweep; ARGS go to `diffusion-kernels bench`
#   bash benchmarks/gpu_session.sh channels_last      # the sweep's drawn-noise modes on channels_last latents
#   bash benchmarks/gpu_session.sh training           # the training-step modes (train_eps, train_flow)
#   bash benchmarks/gpu_session.sh profile            # Nsight Compute counters of the fused kernels
#   bash benchmarks/gpu_session.sh sanitize           # compute-sanitizer memcheck of the kernel tests
#   bash benchmarks/gpu_session.sh tiles              # the fused kernel under a few tile and sizing settings
#   bash benchmarks/gpu_session.sh all                # all eight in turn
#
# Every phase first installs the project over the machine's own torch and
# Triton (pip install --no-deps -e .). Logs, the JSON record and its plot land
# in $RESULTS (default benchmarks/results); the bench JSON is updated after
# every size and dtype, so a run cut short keeps what it measured, and runs of
# one device and day (e.g. one dtype each) merge into one record.
#
# Packages the machine lacks (diffusers, for the diffusers provider and tests)
# can be placed as wheels in .whl/ beforehand; they are installed to a private
# folder first.
set -uo pipefail
cd "$(dirname "$0")/.."
RESULTS=${RESULTS:-benchmarks/results}
mkdir -p "$RESULTS"
export PYTHONUNBUFFERED=1
PYTHON=${PYTHON:-python3}  # the machine's own Python (on the GPU machines a venv with torch and Triton)
DRY_RUN=0

install() {  # the follow-up phases: the same install and environment record as the round's
    install_in_place
    environment
}

tests() {
    "$PYTHON" -m pytest -q tests benchmarks --benchmark-disable --device cuda -rs 2>&1 | tee "$RESULTS/cuda_tests.log"
}

validate() {
    "$PYTHON" -m diffusion_kernels validate --stats --quiet 2>&1 | tee "$RESULTS/validate.log"
}

bench() {
    "$PYTHON" -m diffusion_kernels bench --out "$RESULTS" --quiet "$@" 2>&1 | tee -a "$RESULTS/bench.log"
}

channels_last() {
    # The channels-last tile against eager, torch.compile and the copy, on 4 × 4 × H × W latents; the rows
    # join the bench record beside the contiguous ones.
    "$PYTHON" -m diffusion_kernels bench --out "$RESULTS" --quiet --layout channels_last \
        --providers fused eager compile copy --modes xt_eps xt backward --dtype fp32 --dtype bf16 \
        --sizes 65536,16777216,67108864 2>&1 | tee -a "$RESULTS/bench.log"
}

training() {
    # A whole training step (sampler, noising, loss, backward) for the ε / min-SNR and flow / logit-normal
    # recipes against eager, torch.compile and diffusers' scripts; time, temporary and kept memory.
    "$PYTHON" -m diffusion_kernels bench --out "$RESULTS" --quiet --modes train_eps train_flow \
        --providers fused eager compile diffusers copy --dtype fp32 --dtype bf16 \
        --sizes 1048576,16777216 2>&1 | tee -a "$RESULTS/bench.log"
}

profile() {
    # One training-batch call per (dtype, mode), under ncu: achieved DRAM bandwidth, issue-slot use and
    # instructions executed, the numbers that say whether a kernel is memory- or issue-bound. The
    # GPU's clocks are measured as found, never locked (--clock-control none).
    ncu --clock-control none --kernel-name regex:noising_ \
        --metrics dram__throughput.avg.pct_of_peak_sustained_elapsed,sm__inst_issued.avg.pct_of_peak_sustained_active,smsp__inst_executed.sum,gpu__time_duration.sum \
        "$PYTHON" benchmarks/profile_calls.py 2>&1 | tee "$RESULTS/ncu.log"
}

sanitize() {
    # Every kernel access in bounds, checked by memcheck over the tests of awkward shapes, layouts
    # and t values. With the caching allocator off, an access past a tensor is past its allocation.
    PYTORCH_NO_CUDA_MEMORY_CACHING=1 compute-sanitizer --tool memcheck --error-exitcode 3 \
        "$PYTHON" -m pytest -q tests/test_q_sample_matches_reference.py tests/test_special_values.py \
        tests/test_tiling.py tests/test_autograd.py --device cuda -p no:cacheprovider 2>&1 | tee "$RESULTS/memcheck.log"
}

tiles() {
    # The fused kernel (and the copy it is measured against) at the sweep's large sizes under a few
    # settings of kernels/noising.py's tile constants, each in its own folder under $RESULTS/tiles.
    # The default is "512 1024 4"; compare of-copy fractions across folders before changing it.
    local cfg
    for cfg in "512 1024 4" "512 512 4" "1024 1024 4" "1024 2048 8" "256 512 4"; do
        set -- $cfg
        "$PYTHON" -m diffusion_kernels bench --out "$RESULTS/tiles/quads$1-paired$2-warps$3" --quiet \
            --providers fused copy --modes xt_eps xt --dtype fp32 --dtype bf16 --sizes 16777216,67108864 \
            --block-quads "$1" --block-quads-paired "$2" --num-warps "$3" 2>&1 | tee -a "$RESULTS/tiles.log"
    done
    # The launch's sizing to the GPU (launch/tiling.py) at the sizes people train at: the defaults (a tile
    # sized to two programs per SM by cutting warps first, down to one, up to 4 tiles per program) against
    # the tuned tile at every size, against one tile per program, and against a sized tile that keeps four
    # warps and cuts each thread's elements instead, each in its own folder.
    for cfg in "2 4 1" "0 4 1" "2 1 1" "2 4 4"; do
        set -- $cfg
        "$PYTHON" -m diffusion_kernels bench --out "$RESULTS/tiles/sms$1-tiles$2-warps$3" --quiet \
            --providers fused copy --modes xt_eps xt --dtype fp32 --dtype bf16 \
            --sizes 262144,1048576,4194304,16777216 --programs-per-sm "$1" --tiles-per-program "$2" \
            --sized-warps "$3" 2>&1 | tee -a "$RESULTS/tiles.log"
    done
}


# --- the one-lease round ------------------------------------------------------------------------
# Phases in order, each bounded by `timeout` and logging as it goes; the whole round's files are
# gpu.txt, gpu_only_tests.log, validate.log, bench.log, the bench JSON and PNG, cuda_tests.log and
# round.log (8). No venv, no make, no network: the package goes over the machine's torch and Triton.

round_log() { echo "[$(date -u +%H:%M:%S)] $*" | tee -a "$RESULTS/round.log"; }

phase_run() {  # phase_run NAME SECONDS LOG CMD...: the phase under timeout, its status in round.log
    local name=$1 limit=$2 log=$3 start status
    shift 3
    start=$(date +%s)
    round_log "$name: start (limit ${limit}s)"
    timeout --kill-after=10 "$limit" "$@" > >(tee "$RESULTS/$log") 2>&1
    status=$?
    round_log "$name: exit $status after $(( $(date +%s) - start ))s$([ "$status" -eq 124 ] && echo ' (time limit)')"
    return 0
}

install_in_place() {
    # Wheels carried in .whl/ (diffusers, for its provider and tests) go to a private folder first.
    # An editable install needs setuptools and wheel already present (--no-build-isolation, no index);
    # where it fails the package is put on the path from a copy of the tree instead.
    if compgen -G ".whl/*.whl" >/dev/null; then
        "$PYTHON" -m pip install -q --no-index --no-deps --no-compile --upgrade --target /tmp/dk-site .whl/*.whl \
            >> "$RESULTS/round.log" 2>&1
        export PYTHONPATH=/tmp/dk-site${PYTHONPATH:+:$PYTHONPATH}
    fi
    if ! "$PYTHON" -m pip install -q --no-deps --no-build-isolation -e . >> "$RESULTS/round.log" 2>&1; then
        rm -rf /tmp/dk-path && mkdir -p /tmp/dk-path
        cp -r diffusion_kernels /tmp/dk-path/ && cp -r kernels /tmp/dk-path/diffusion_kernels/kernels
        export PYTHONPATH=/tmp/dk-path${PYTHONPATH:+:$PYTHONPATH}
        round_log "install: editable install failed; using the tree from PYTHONPATH=/tmp/dk-path"
    fi
}

environment() {
    { date -u +"date %Y-%m-%dT%H:%M:%SZ"
      if [ "$DRY_RUN" = 1 ]; then echo "dry run on CPU: $(uname -m), $(nproc) cores"
      else nvidia-smi --query-gpu=name,driver_version,memory.total,clocks.max.sm,clocks.max.mem --format=csv 2>&1 \
          || rocm-smi --showproductname 2>&1; fi
      "$PYTHON" -c "import sys, torch, triton, numpy; print('python', sys.version.split()[0], 'torch', torch.__version__,
'triton', triton.__version__, 'numpy', numpy.__version__, 'cuda', torch.version.cuda, 'hip', torch.version.hip)
try:
    import diffusers; print('diffusers', diffusers.__version__)
except ImportError:
    print('diffusers not installed: the diffusers provider and tests are skipped')
import diffusion_kernels; print('diffusion_kernels from', diffusion_kernels.__file__)"
    } 2>&1 | tee "$RESULTS/gpu.txt"
}

first() {
    DRY_RUN=0
    [ "${1:-}" = "--dry-run" ] && DRY_RUN=1
    local device=cuda sizes=16M,64M small=256K,1M,4M validate_args=(--stats) xdist=() suite=(tests benchmarks)
    if [ "$DRY_RUN" = 1 ]; then
        # The same phases, files and order on CPU through Triton's interpreter, at toy sizes.
        export TRITON_INTERPRET=1
        device=cpu sizes=4K,16K small=1K validate_args=(--numel 4K --dtype fp32,bf16)
        suite=(tests/test_seeding.py tests/test_noise_stream.py)
    fi
    : > "$RESULTS/round.log"
    round_log "round: $([ "$DRY_RUN" = 1 ] && echo 'dry run on CPU' || echo GPU); results in $RESULTS"
    install_in_place
    environment
    # What only a GPU runs: compiled steps, opcheck, device-side checks, CUDA graphs, GPU generators,
    # the hardware Box–Muller's accuracy (marked gpu in the suite).
    phase_run gpu_only_tests 120 gpu_only_tests.log "$PYTHON" -m pytest -q -p no:cacheprovider -m gpu -rs \
        --device "$device" tests
    phase_run validate 90 validate.log "$PYTHON" -m diffusion_kernels validate --device "$device" --quiet \
        "${validate_args[@]}"
    # Every provider, float32 and bfloat16; the JSON is rewritten after each size and dtype.
    # The q_sample modes against the providers a user would pick instead (the step, trajectory and loss
    # modes and the cpu/reference providers are a follow-up call's).
    # First the sizes people train at (256K-4M elements: where host work and a part-filled grid, not
    # memory, may bound a call; torch.compile is left to the large sizes, as it recompiles per size),
    # then the large ones; both into one record (same device and day) and one log.
    phase_run bench 240 bench.log bash -c '"$0" -m diffusion_kernels bench --device "$1" --out "$2" --quiet \
        --dtype fp32,bf16 --sizes "$3" --modes xt_eps,xt,loss,backward --providers fused,eager,diffusers,copy &&
        "$0" -m diffusion_kernels bench --device "$1" --out "$2" --quiet --dtype fp32,bf16 --sizes "$4" \
        --modes xt_eps,xt,given_noise,backward --providers fused,eager,compile,diffusers,copy' \
        "$PYTHON" "$device" "$RESULTS" "$small" "$sizes"
    "$PYTHON" -c "import xdist" 2>/dev/null && [ "$DRY_RUN" = 0 ] && xdist=(-n 8)
    local left=$(( 470 - $(date +%s) + ROUND_START ))
    [ "$left" -lt 30 ] && left=30
    phase_run cuda_tests "$left" cuda_tests.log "$PYTHON" -m pytest -q -p no:cacheprovider --benchmark-disable \
        --device "$device" "${xdist[@]}" "${suite[@]}"
    round_log "round: done; $(ls "$RESULTS" | wc -l) files"
}

phase=${1:-all}
shift || true
ROUND_START=$(date +%s)
if [ "$phase" = first ]; then
    first "$@"
    exit 0
fi
install
case "$phase" in
    tests) tests ;;
    validate) validate ;;
    bench) bench "$@" ;;
    channels_last) channels_last ;;
    training) training ;;
    profile) profile ;;
    sanitize) sanitize ;;
    tiles) tiles ;;
    all) tests; validate; bench "$@"; channels_last; training; profile; sanitize; tiles ;;
    *) echo "unknown phase '$phase': first, tests, validate, bench, channels_last, training, profile, sanitize, tiles" \
            "or all" >&2
       exit 2 ;;
esac
