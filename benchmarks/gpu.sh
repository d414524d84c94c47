#!/usr/bin/env bash
# One script for a CUDA machine: training throughput table (bf16, channels_last, torch.compile
# off/on; attention vs plain Inception-v4), then two epochs of phantom training end to end
# through torchrun on one GPU. Prints tables; results land in benchmarks/results/gpu.*.
# Usage: bash benchmarks/gpu.sh   (PYTHON=... to choose the interpreter; default .venv/bin/python)
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-.venv/bin/python}
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv
"$PY" -m benchmarks.gpu
work=$(mktemp -d)
"$PY" -m octattn data synth "$work/phantoms" --per-class 2500 --test-per-class 100 --seed 1
start=$(date +%s)
"$PY" -m torch.distributed.run --standalone --nproc_per_node=1 -m octattn train \
    --config src/octattn/configs/demo.yaml --data "$work/phantoms" --out "$work/run" \
    epochs=2 image_size=299 batch_size=256 num_workers=12 threads=0 bn_recalibrate=512
echo "two epochs of 10,000 phantoms at 299 px through torchrun: $(( $(date +%s) - start )) s"
"$PY" -m octattn evaluate "$work/run" --data "$work/phantoms"
