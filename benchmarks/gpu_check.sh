#!/usr/bin/env bash
# The one GPU check, for a lent H100/H200 (the `device` tool), in under 9 minutes:
#   1. the CUDA/bfloat16 unit tests (tests/test_gpu.py),
#   2. training throughput at 32 and 224 px (benchmarks/throughput.py, tensor pipeline vs PIL+DataLoader),
#   3. the largest slice of a `paper`-budget BreastMNIST cell that fits: 224 px, ResNet18, batch 64, as many
#      epochs as the time left allows, scored with TTA 40; its AUROC, img/s and epoch time.
# Data: ../shared/data does not travel to the device machine, so the caller copies breastmnist.npz into
# .gpu-data/ (ignored by git) and names it in `carry`:
#   mkdir -p .gpu-data && cp ../shared/data/breastmnist.npz .gpu-data/ && echo /.gpu-data/ >> .git/info/exclude
#   device run: carry [".gpu-data"], command "bash benchmarks/gpu_check.sh", timeout_s 560
# The device image has its own python3 with torch, scikit-learn, pandas, pillow, tqdm and pytest; the engine
# needs nothing else. Everything it prints goes to $OUT/gpu_check.log too (when $OUT is set).
set -uo pipefail
cd "$(dirname "$0")/.."
PYTHON=${PYTHON:-python3}
OUT=${OUT:-/tmp/gpu_check}
mkdir -p "$OUT"
DATA=${CON2_GPU_DATA:-.gpu-data}
[ -f "$DATA/breastmnist.npz" ] || DATA=../shared/data
export PYTHONUNBUFFERED=1
export PYTHONPATH=$PWD${PYTHONPATH:+:$PYTHONPATH}  # the scripts import engine/ from the checkout
started=$(date +%s)
left() { echo $(( ${BUDGET_S:-500} - ($(date +%s) - started) )); }
{
  echo "== machine"; nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader
  "$PYTHON" -c "import torch; print('torch', torch.__version__, 'cuda', torch.version.cuda, torch.cuda.get_device_name(0))"

  echo "== 1. CUDA/bf16 unit tests"
  CON2_TEST_GPU=1 timeout 120 "$PYTHON" -m pytest -q -p no:cacheprovider -m gpu tests/test_gpu.py

  echo "== 2. throughput, 32 and 224 px ($(left) s left)"
  timeout 150 "$PYTHON" benchmarks/throughput.py --settings gpu --workers 8 --steps 10 --rounds 2 \
    --data "$DATA/breastmnist.npz" > "$OUT/throughput.json"
  cat "$OUT/throughput.json"

  echo "== 3. paper-budget BreastMNIST slice ($(left) s left)"
  budget=$(( $(left) - 60 ))
  timeout $(( budget + 50 )) "$PYTHON" benchmarks/paper_slice.py --data "$DATA/breastmnist.npz" \
    --time-budget-s "$budget" > "$OUT/paper_slice.json"
  cat "$OUT/paper_slice.json"
  echo "== done in $(( $(date +%s) - started )) s"
} 2>&1 | tee "$OUT/gpu_check.log"
