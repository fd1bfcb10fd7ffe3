#!/usr/bin/env bash
# Wheels for the lent GPU machine (benchmarks/gpu_check.sh), fetched HERE, where pip reaches a
# mirror: the device machine reaches none, and its image (Python 3.12, torch, numpy, PyYAML,
# safetensors, scikit-learn, torchvision, pillow: /work/.library/device/KINDS.md) lacks what
# rpg_core needs beside them. Versions: constraints.txt. Into .whl/ (git-ignored; ~3 MB), which
# the device call carries: run(command="bash benchmarks/gpu_check.sh", carry=[".whl"]).
set -euo pipefail
cd "$(dirname "$0")/.."
PY="${PY:-$([ -x .venv/bin/python ] && echo .venv/bin/python || echo python3)}"
pin() { grep -i "^$1==" constraints.txt | head -1; }
mkdir -p .whl
"$PY" -m pip download -q --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
  --platform manylinux_2_28_x86_64 --platform manylinux_2_27_x86_64 \
  --platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64 --platform manylinux1_x86_64 \
  -d .whl "$(pin pydantic)" "$(pin pydantic_core)" "$(pin annotated-types)" \
  "$(pin typing-inspection)" "$(pin typing_extensions)" "$(pin torchdeq)"
ls -l .whl
