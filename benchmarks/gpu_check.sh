#!/usr/bin/env bash
# The GPU route, measured (issue 18, item 3): one prepared run for a machine with one GPU.
#
# Needs an environment whose JAX sees the GPU (e.g. `pip install -e . "jax[cuda12]"` into a
# venv; a device machine without internet needs that venv carried to it) as $PYTHON (default
# .venv/bin/python). Writes everything to ${OUT:-./gpu-out}: the device, analyze_gpu.py on the
# full 7B layer set (32 blocks; --check 2 compares one layer per shape with the CPU route's
# float64 spectra, docs/math.md §1), then llm_sized.py streaming 2 blocks + the embedding from
# a safetensors folder on the device route. Each step has its own time limit (seconds).
#
#     bash benchmarks/gpu_check.sh                     # ~5-8 min on an H100/H200
#     BLOCKS=8 bash benchmarks/gpu_check.sh            # a shorter first step
#     FORCE=1 SCALE=16 BLOCKS=1 bash benchmarks/gpu_check.sh   # smoke run on a CPU
set -u
PYTHON=${PYTHON:-.venv/bin/python}
OUT=${OUT:-./gpu-out}
BLOCKS=${BLOCKS:-32}
SCALE=${SCALE:-1}
FORCE=${FORCE:+--force}
mkdir -p "$OUT"
{
  date -u
  nvidia-smi -L 2>&1 || true
  "$PYTHON" -c "import jax; print(jax.__version__, jax.devices())"
} > "$OUT/device.txt" 2>&1
cat "$OUT/device.txt"
timeout 330 "$PYTHON" benchmarks/analyze_gpu.py --blocks "$BLOCKS" --scale "$SCALE" --check 2 $FORCE 2>&1 \
  | tee "$OUT/analyze_gpu.txt"
timeout 200 "$PYTHON" benchmarks/llm_sized.py --blocks 2 --scale "$SCALE" --device-route --dir "${TMPDIR:-/tmp}" \
  2>&1 | tee "$OUT/llm_sized_gpu.txt"
