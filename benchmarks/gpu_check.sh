#!/usr/bin/env bash
# The GPU checks, as one script for a lent GPU machine (see docs/devices.md): the GPU tests, the
# GPU benchmark against PyTorch on the same card, and LeNet trained on the GPU from the CLI.
# Packages missing on that machine travel as wheels in .whl/ (pydantic, mlxtend).
set -u
export PYTHONUNBUFFERED=1
if ls .whl/*.whl >/dev/null 2>&1; then
  python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl
  export PYTHONPATH=/tmp/site:$PWD
else
  export PYTHONPATH=$PWD
fi
OUT=${OUT:-/tmp/out}; mkdir -p "$OUT"
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader
python3 -c "import tfconf as tc; [print(d) for d in tc.list_devices()]"
echo "== GPU tests"
timeout 240 python3 -m pytest -q -p no:cacheprovider tests/engine/test_devices_gpu.py $(ls tests/engine/test_rewrite_gpu.py 2>/dev/null) ${GPU_TESTS:-} 2>&1 | tee "$OUT/gpu_tests.log" | tail -15
echo "== GPU benchmark"
timeout 200 python3 -m benchmarks.gpu_bench --steps ${STEPS:-50} 2>&1 | tail -20
echo "== LeNet on the GPU from the CLI"
timeout ${TRAIN_S:-150} python3 -m tfconf.cli train configs/lenet_mnist.yaml --device gpu --max-iter ${ITERS:-1000} \
  --out "$OUT/lenet_gpu" --json -q 2>&1 | tail -5
