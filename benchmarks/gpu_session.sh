#!/usr/bin/env bash
# What a GPU machine runs, in phases each sized to fit a ten-minute call:
#
#   bash benchmarks/gpu_session.sh tests              # the test suite on CUDA
#   bash benchmarks/gpu_session.sh validate           # the full statistical validation
#   bash benchmarks/gpu_session.sh bench [ARGS...]    # the sweep; ARGS go to `diffusion-kernels bench`
#   bash benchmarks/gpu_session.sh channels_last      # the sweep's drawn-noise modes on channels_last latents
#   bash benchmarks/gpu_session.sh profile            # Nsight Compute counters of the fused kernels
#   bash benchmarks/gpu_session.sh sanitize           # compute-sanitizer memcheck of the kernel tests
#   bash benchmarks/gpu_session.sh tiles              # the fused kernel under a few tile settings
#   bash benchmarks/gpu_session.sh all                # all seven in turn
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

install() {
    if compgen -G ".whl/*.whl" >/dev/null; then
        python3 -m pip install -q --no-index --no-deps --no-compile --upgrade --target /tmp/dk-site .whl/*.whl
        export PYTHONPATH=/tmp/dk-site${PYTHONPATH:+:$PYTHONPATH}
    fi
    python3 -m pip install -q --no-deps --no-build-isolation -e . || exit 1
    nvidia-smi --query-gpu=name,driver_version,memory.total,clocks.max.sm,clocks.max.mem --format=csv \
        | tee "$RESULTS/gpu.txt"
    python3 -c "import torch, triton; print('torch', torch.__version__, 'triton', triton.__version__)" \
        | tee -a "$RESULTS/gpu.txt"
}

tests() {
    python3 -m pytest -q tests benchmarks --benchmark-disable --device cuda -rs 2>&1 | tee "$RESULTS/cuda_tests.log"
}

validate() {
    python3 -m diffusion_kernels validate --stats --quiet 2>&1 | tee "$RESULTS/validate.log"
}

bench() {
    python3 -m diffusion_kernels bench --out "$RESULTS" --quiet "$@" 2>&1 | tee -a "$RESULTS/bench.log"
}

channels_last() {
    # The channels-last tile against eager, torch.compile and the copy, on 4 × 4 × H × W latents; the rows
    # join the bench record beside the contiguous ones.
    python3 -m diffusion_kernels bench --out "$RESULTS" --quiet --layout channels_last \
        --providers fused eager compile copy --modes xt_eps xt backward --dtype fp32 --dtype bf16 \
        --sizes 65536,16777216,67108864 2>&1 | tee -a "$RESULTS/bench.log"
}

profile() {
    # One training-batch call per (dtype, mode), under ncu: achieved DRAM bandwidth, issue-slot use and
    # instructions executed, the numbers that say whether a kernel is memory- or issue-bound. The
    # GPU's clocks are measured as found, never locked (--clock-control none).
    ncu --clock-control none --kernel-name regex:noise_affine \
        --metrics dram__throughput.avg.pct_of_peak_sustained_elapsed,sm__inst_issued.avg.pct_of_peak_sustained_active,smsp__inst_executed.sum,gpu__time_duration.sum \
        python3 benchmarks/profile_calls.py 2>&1 | tee "$RESULTS/ncu.log"
}

sanitize() {
    # Every kernel access in bounds, checked by memcheck over the tests of awkward shapes, layouts
    # and t values. With the caching allocator off, an access past a tensor is past its allocation.
    PYTORCH_NO_CUDA_MEMORY_CACHING=1 compute-sanitizer --tool memcheck --error-exitcode 3 \
        python3 -m pytest -q tests/test_q_sample_matches_reference.py tests/test_special_values.py \
        tests/test_tiling.py tests/test_autograd.py --device cuda -p no:cacheprovider 2>&1 | tee "$RESULTS/memcheck.log"
}

tiles() {
    # The fused kernel (and the copy it is measured against) at the sweep's large sizes under a few
    # settings of kernels/q_sample.py's tile constants, each in its own folder under $RESULTS/tiles.
    # The default is "512 1024 4"; compare of-copy fractions across folders before changing it.
    local cfg
    for cfg in "512 1024 4" "512 512 4" "1024 1024 4" "1024 2048 8" "256 512 4"; do
        set -- $cfg
        python3 -m diffusion_kernels bench --out "$RESULTS/tiles/quads$1-paired$2-warps$3" --quiet \
            --providers fused copy --modes xt_eps xt --dtype fp32 --dtype bf16 --sizes 16777216,67108864 \
            --block-quads "$1" --block-quads-paired "$2" --num-warps "$3" 2>&1 | tee -a "$RESULTS/tiles.log"
    done
}

phase=${1:-all}
shift || true
install
case "$phase" in
    tests) tests ;;
    validate) validate ;;
    bench) bench "$@" ;;
    channels_last) channels_last ;;
    profile) profile ;;
    sanitize) sanitize ;;
    tiles) tiles ;;
    all) tests; validate; bench "$@"; channels_last; profile; sanitize; tiles ;;
    *) echo "unknown phase '$phase': tests, validate, bench, channels_last, profile, sanitize, tiles or all" >&2
       exit 2 ;;
esac
