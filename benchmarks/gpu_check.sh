#!/usr/bin/env bash
# One prepared GPU check, under 8 minutes on one GPU: the CUDA tests, the ring benchmark on CUDA
# (bf16 autocast, channels_last) and a timed CIFAR-shaped training of ResNet18 and ResNet18-RPG.
#
#   bash benchmarks/gpu_check.sh            # on a machine with a GPU
#   bash benchmarks/gpu_check.sh --dry-run  # the same steps on the CPU at toy sizes (the test
#                                           # suite runs this, so the script cannot rot)
# PY=/path/to/python picks the interpreter (default: .venv/bin/python, else python3).
set -euo pipefail
cd "$(dirname "$0")/.."
PY="${PY:-$([ -x .venv/bin/python ] && echo .venv/bin/python || echo python3)}"
DRY=0
[ "${1:-}" = "--dry-run" ] && DRY=1

echo "== machine"
date -u +"%Y-%m-%d %H:%M UTC"
command -v nvidia-smi >/dev/null && nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv || true
"$PY" -c "import torch; print('torch', torch.__version__, 'cuda', torch.cuda.is_available(), torch.cuda.get_device_name() if torch.cuda.is_available() else '')"

if [ "$DRY" = 1 ]; then
  DEVICE=cpu
  RING_ARGS=(--device cpu --steps 2 --infer-steps 2 --batch 8 --width 0.125 --ring 2000 --skip-generation)
  TRAIN_ARGS=(--device cpu --images 256 --epochs 2 --rounds 1 --batch 64 --width 0.125 --ring 2000)
  TEST_ARGS=(-k "not slow")
else
  "$PY" -c "import torch, sys; sys.exit(0 if torch.cuda.is_available() else 'no CUDA device: run with --dry-run on a CPU')"
  DEVICE=cuda
  RING_ARGS=(--device cuda --amp --steps 30 --infer-steps 50 --batch 128 --width 1.0 --ring 45000)
  TRAIN_ARGS=(--device cuda --images 20000 --epochs 3 --rounds 2 --batch 256 --width 1.0 --ring 45000)
  TEST_ARGS=()
fi

echo "== CUDA tests (device $DEVICE)"
RPG_TEST_DEVICE="$DEVICE" "$PY" -m pytest -q -p no:cacheprovider tests/rpg_core/training/test_cuda.py "${TEST_ARGS[@]}"

echo "== ring benchmark"
"$PY" benchmarks/bench_ring.py "${RING_ARGS[@]}"

echo "== training benchmark"
"$PY" benchmarks/bench_gpu_train.py "${TRAIN_ARGS[@]}"
echo "== gpu_check done"
