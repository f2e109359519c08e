#!/usr/bin/env bash
# One GPU session's checks: CUDA-marked tests, then the engine load benchmark on a random
# full-size 0.6B checkpoint in bfloat16. Results go to $OUT (the device tool) or benchmarks/results.
# Needs a CUDA build of torch and the package's dependencies importable (pip install -e '.[server,test]'
# on a GPU machine); run from the repository root. Writes random full-size weights to /tmp (~1.5 GB).
set -uo pipefail
OUT=${OUT:-benchmarks/results}
mkdir -p "$OUT"
export PYTHONPATH=service:client PYTHONUNBUFFERED=1
nvidia-smi > "$OUT/nvidia-smi.txt" 2>&1
python -m pytest -q -m cuda tests/test_cuda.py 2>&1 | tee "$OUT/cuda-tests.log"
python benchmarks/bench_engine.py load --device cuda --dtype bfloat16 --concurrency 1,32,128,256 \
    --seconds 12 --max-batch 256 2>&1 | tee "$OUT/bench-engine-gpu.log"
python benchmarks/bench_engine.py final --device cuda --dtype bfloat16 --repeats 3 2>&1 | tee "$OUT/bench-final-gpu.log"
python benchmarks/bench_service.py --device cuda --streams 1,32 2>&1 | tail -12 | tee "$OUT/bench-service-gpu.log"
cp benchmarks/results/*.json "$OUT"/ 2>/dev/null || true
