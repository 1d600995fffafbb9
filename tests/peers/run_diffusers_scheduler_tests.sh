#!/usr/bin/env bash
# diffusers' own scheduler tests, stock and then with the drop-ins in place (diffusers_fused.py).
# Usage: tests/peers/run_diffusers_scheduler_tests.sh DIFFUSERS_CHECKOUT [PYTHON]
# PYTHON's environment holds torch, this package and diffusers installed from that checkout.
set -uo pipefail
checkout=${1:?a diffusers checkout}
python=${2:-python3}
here=$(cd "$(dirname "$0")" && pwd)
export TRITON_INTERPRET=1 PYTHONPATH="$here${PYTHONPATH:+:$PYTHONPATH}"
cd "$checkout"
for mode in stock patch classes; do
    echo "== $mode"
    if [ "$mode" = stock ]; then
        "$python" -m pytest -q -p no:cacheprovider tests/schedulers 2>&1 | grep -E "^FAILED|passed|failed"
    else
        DK_FUSED=$mode "$python" -m pytest -q -p no:cacheprovider -p diffusers_fused tests/schedulers 2>&1 | tail -30
    fi
done
