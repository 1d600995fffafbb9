#!/usr/bin/env bash
# Everything a GPU machine should run, in one go: install over the machine's own
# torch and Triton, the test suite on CUDA, the full statistical validation, and
# the benchmark sweep. Logs, the JSON record and its plot land in $RESULTS
# (default benchmarks/results).
#
#   bash benchmarks/gpu_session.sh
#
# Packages the machine lacks (diffusers, for the diffusers provider and tests)
# can be placed as wheels in .whl/ beforehand; they are installed to a private
# folder first.
set -uo pipefail
cd "$(dirname "$0")/.."
RESULTS=${RESULTS:-benchmarks/results}
mkdir -p "$RESULTS"
if compgen -G ".whl/*.whl" >/dev/null; then
    python3 -m pip install -q --no-index --no-deps --no-compile --target /tmp/dk-site .whl/*.whl
    export PYTHONPATH=/tmp/dk-site${PYTHONPATH:+:$PYTHONPATH}
fi
python3 -m pip install -q --no-deps --no-build-isolation -e . || exit 1
nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv | tee "$RESULTS/gpu.txt"
python3 -c "import torch, triton; print('torch', torch.__version__, 'triton', triton.__version__)" | tee -a "$RESULTS/gpu.txt"
python3 -m pytest -q tests benchmarks --benchmark-disable --device cuda -rs 2>&1 | tee "$RESULTS/cuda_tests.log"
python3 -m diffusion_kernels validate --stats --quiet 2>&1 | tee "$RESULTS/validate.log"
python3 -m diffusion_kernels bench --out "$RESULTS" --quiet 2>&1 | tee "$RESULTS/bench.log"
