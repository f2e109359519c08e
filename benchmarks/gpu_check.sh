#!/usr/bin/env bash
# One GPU session's checks (benchmarks/gpu_check.py: CUDA tests, bf16 vs fp32, CUDA graphs vs eager,
# latency at 1 stream, capacity at p95 update latency < 300 ms, profiles), made to run the first time
# on a machine that reaches no package index: the wheels its image lacks are carried in .whl/
# (bash benchmarks/fetch_gpu_wheels.sh) and installed here into a target folder first.
#     bash benchmarks/gpu_check.sh                                            # CUDA, random 0.6B, bfloat16
#     bash benchmarks/gpu_check.sh --device cpu --preset tiny-asr --quick     # the CPU dry run
# Arguments go to gpu_check.py. Results: $OUT (the device tool's), else benchmarks/results/gpu-check.
# PYTHON: the interpreter (default python3); WHEELS: the wheel folder (default .whl);
# GPU_CHECK_SITE: the install target (default /tmp/gpu-check-site).
set -uo pipefail
cd "$(dirname "$0")/.."
python=${PYTHON:-python3}
wheels=${WHEELS:-.whl}
site=${GPU_CHECK_SITE:-/tmp/gpu-check-site}
case "$site" in /*) ;; *) site="$PWD/$site" ;; esac
export OUT=${OUT:-benchmarks/results/gpu-check}
mkdir -p "$OUT"
if compgen -G "$wheels/*.whl" >/dev/null; then
    "$python" -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target "$site" \
        "$wheels"/*.whl || echo "gpu_check.sh: installing the wheels of $wheels failed (the imports stage names what is missing)"
else
    echo "gpu_check.sh: no wheels in $wheels (bash benchmarks/fetch_gpu_wheels.sh); going on with what is installed"
fi
export PYTHONPATH="$site:$PWD/service:$PWD/client" PYTHONUNBUFFERED=1
command -v nvidia-smi >/dev/null && nvidia-smi >"$OUT/nvidia-smi.txt" 2>&1
"$python" benchmarks/gpu_check.py --out "$OUT" "$@" 2>&1 | tee "$OUT/gpu_check.log"
