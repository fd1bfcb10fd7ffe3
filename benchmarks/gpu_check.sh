#!/usr/bin/env bash
# One prepared GPU check (issue 27): under 8 minutes on one H200 from a fresh machine, its set-up
# included and timed. Steps, each with its own time limit so the whole stays inside its budget:
#   setup    find a Python with torch (PY, .venv, python3, /opt/torch/.venv), report it, install
#            the carried wheels (.whl/, made here by benchmarks/gpu_wheels.sh) if rpg_core's
#            dependencies are missing; the repo itself runs from PYTHONPATH (no install)
#   tests    the CUDA tests (tests/**/test_*cuda*.py: generation, gradient, bf16 + channels_last
#            training, a .rpg on the device)
#   epoch    RPG / plain epoch time of CIFAR-form ResNet18 at full width on synthetic CIFAR-shaped
#            data, AMP on and off, channels_last; images/s and peak memory (bench_gpu_train.py)
#   load     load + first forward of the 2M-ring file on the GPU against plain safetensors
#            (bench_load.py --device cuda)
#   ring     the ring's training step and inference against plain (bench_ring.py --device cuda)
#   ddp      benchmarks/bench_ddp.py --backend nccl --ranks <GPUs> --quick, if that script exists
# The SUMMARY lines are repeated at the end; with $OUT set (the device tool) the log is
# $OUT/gpu_check.log.
#
#   bash benchmarks/gpu_check.sh            # on a machine with a GPU
#   bash benchmarks/gpu_check.sh --dry-run  # the same steps on the CPU at toy sizes (the test
#                                           # suite runs this, so the script cannot rot)
set -uo pipefail
cd "$(dirname "$0")/.."
T0=$(date +%s)
DRY=0
[ "${1:-}" = "--dry-run" ] && DRY=1
LOG="${OUT:-${TMPDIR:-/tmp}}/gpu_check.log"
exec > >(tee "$LOG") 2>&1
FAILED=()

step() {  # step NAME LIMIT_S COMMAND...: run it under its limit, report its time and status
  local name=$1 limit=$2 t rc
  shift 2
  echo "== $name (limit ${limit} s)"
  t=$(date +%s)
  timeout --kill-after=10 "$limit" "$@"
  rc=$?
  echo "== $name: exit $rc, $(($(date +%s) - t)) s (total $(($(date +%s) - T0)) s)"
  [ "$rc" = 0 ] || FAILED+=("$name (exit $rc)")
}

echo "== setup"
date -u +"%Y-%m-%d %H:%M UTC"
uname -srm
echo "cpus $(getconf _NPROCESSORS_ONLN), load average $(cut -d' ' -f1-3 /proc/loadavg)"
command -v nvidia-smi >/dev/null && nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv
PY_FOUND=""
for c in "${PY:-}" .venv/bin/python python3 /opt/torch/.venv/bin/python3 python; do
  if [ -n "$c" ] && command -v "$c" >/dev/null 2>&1 && "$c" -c "import torch" 2>/dev/null; then
    PY_FOUND=$c
    break
  fi
done
if [ -z "$PY_FOUND" ]; then
  echo "no Python with torch found (tried PY, .venv/bin/python, python3, /opt/torch/.venv/bin/python3)"
  exit 2
fi
PY=$PY_FOUND
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}"
report() {  # the interpreter, torch, CUDA, and (last line) the packages rpg_core needs that are missing
  "$PY" - <<'PYEOF'
import importlib.util as u, sys
import torch
cuda = torch.cuda.is_available()
print("python", sys.version.split()[0], sys.executable)
print("torch", torch.__version__, "cuda", torch.version.cuda, "available", cuda,
      "devices", torch.cuda.device_count(), torch.cuda.get_device_name() if cuda else "")
need = dict(numpy="numpy", pydantic="pydantic", yaml="pyyaml", safetensors="safetensors",
            sklearn="scikit-learn", torchvision="torchvision", torchdeq="torchdeq", PIL="pillow",
            pytest="pytest")
missing = [p for m, p in need.items() if u.find_spec(m) is None]
if not missing:
    import rpg_core.format, rpg_core.models  # noqa: F401
print("missing:", " ".join(missing))
PYEOF
}
MISSING=$(report | tee /dev/stderr | sed -n 's/^missing: *//p')
echo "missing packages: ${MISSING:-none}"
if [ -n "$MISSING" ] && ls .whl/*.whl >/dev/null 2>&1; then
  SITE="${TMPDIR:-/tmp}/rpg-site"
  "$PY" -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target "$SITE" .whl/*.whl
  export PYTHONPATH="$PYTHONPATH:$SITE"
  MISSING=$(report | sed -n 's/^missing: *//p')
  echo "after the carried wheels (.whl/): missing ${MISSING:-none}"
fi
if [ -n "$MISSING" ]; then
  echo "cannot run: $MISSING missing; make the wheels here with benchmarks/gpu_wheels.sh and carry .whl"
  exit 2
fi

if [ "$DRY" = 1 ]; then
  DEVICE=cpu
  NGPU=1
  EPOCH_ARGS=(--device cpu --images 128 --epochs 2 --rounds 1 --batch 64 --width 0.125 --ring 2000 --amp on,off)
  LOAD_ARGS=(--device cpu --pairs 2 --threads 1 --width 0.125 --ring 20000)
  RING_ARGS=(--device cpu --quick --pairs 2 --batch 8 --width 0.125 --ring 2000)
  DDP_ARGS=(--backend gloo --ranks 1 --quick)
  TEST_ARGS=(-k "not slow")
  LIMITS=(120 120 60 60 120)
else
  if ! "$PY" -c "import torch, sys; sys.exit(0 if torch.cuda.is_available() else 1)"; then
    echo "no CUDA device: run with --dry-run on a CPU"
    exit 2
  fi
  DEVICE=cuda
  NGPU=$("$PY" -c "import torch; print(torch.cuda.device_count())")
  EPOCH_ARGS=(--device cuda --images 50000 --epochs 3 --rounds 2 --batch 256 --width 1.0 --ring 45000 --amp on,off)
  LOAD_ARGS=(--device cuda --pairs 7)
  RING_ARGS=(--device cuda --amp --threads 0 --pairs 20 --steps 20 --infer-steps 30 --batch 128 --width 1.0 --ring 45000 --skip-generation)
  DDP_ARGS=(--backend nccl --ranks "$NGPU" --quick)
  TEST_ARGS=()
  LIMITS=(90 190 45 60 60)  # tests, epoch, load, ring, ddp: 445 s, with set-up under 8 minutes
fi
echo "== setup done: $(($(date +%s) - T0)) s"

mapfile -t CUDA_TESTS < <(find tests -name 'test_*cuda*.py' | sort)
step "CUDA tests (device $DEVICE)" "${LIMITS[0]}" env RPG_TEST_DEVICE="$DEVICE" "$PY" -m pytest -q -p no:cacheprovider "${CUDA_TESTS[@]}" "${TEST_ARGS[@]}"
step "epoch benchmark" "${LIMITS[1]}" "$PY" benchmarks/bench_gpu_train.py "${EPOCH_ARGS[@]}"
step "load benchmark" "${LIMITS[2]}" "$PY" benchmarks/bench_load.py "${LOAD_ARGS[@]}"
step "ring benchmark" "${LIMITS[3]}" "$PY" benchmarks/bench_ring.py "${RING_ARGS[@]}"
if [ -f benchmarks/bench_ddp.py ]; then
  step "ddp benchmark ($NGPU ranks)" "${LIMITS[4]}" "$PY" benchmarks/bench_ddp.py "${DDP_ARGS[@]}"
else
  echo "== ddp benchmark: skipped (no benchmarks/bench_ddp.py)"
fi

echo "== summary"
grep -h "^SUMMARY\|passed\|failed" "$LOG" | grep -v "^== " || true
echo "== gpu_check done: $(($(date +%s) - T0)) s in all${FAILED:+; failed: ${FAILED[*]}}"
[ ${#FAILED[@]} = 0 ]
