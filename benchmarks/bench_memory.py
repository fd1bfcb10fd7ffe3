"""The memory estimate (rpg_core.memory) against the measured peak RSS of real training runs.

Each spec trains ``--steps`` steps in a fresh process (``OMP_NUM_THREADS=1``, CPU), which then
reports its own peak RSS (``getrusage(RUSAGE_SELF).ru_maxrss``); the table gives the estimate,
the measured peak and their ratio. Results: docs/BENCHMARKS.md ("Memory estimate").

    python benchmarks/bench_memory.py [--steps 1] [--only LABEL]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]

# a few steps of training, then this process's peak RSS in bytes on the last line
CHILD = """
import json, sys
from rpg_core.training.engine import train

class Stop:
    def __init__(self, steps): self.left = steps
    def should_stop(self):
        self.left -= 1
        return self.left < 0

spec, steps, out = json.loads(sys.argv[1]), int(sys.argv[2]), sys.argv[3]
train(spec, callbacks=[Stop(steps)], checkpoint_dir=out, resume=False)
# VmHWM: this process's own peak (ru_maxrss would include the parent's RSS at the fork)
print(int(next(l for l in open("/proc/self/status") if l.startswith("VmHWM")).split()[1]) * 1024)
"""


def measure_peak(spec: dict[str, Any], steps: int = 3, timeout_s: float = 900) -> int:
    """Peak RSS (bytes) of a fresh process that trains ``spec`` for ``steps`` steps."""
    env = {
        **os.environ,
        "OMP_NUM_THREADS": "1",
        "PYTHONPATH": str(ROOT),
        "CUDA_VISIBLE_DEVICES": "",
    }
    with tempfile.TemporaryDirectory() as tmp:
        out = subprocess.run(
            [sys.executable, "-c", CHILD, json.dumps(spec), str(steps), tmp],
            capture_output=True, text=True, env=env, cwd=ROOT, timeout=timeout_s, check=False,
        )  # fmt: skip
    if out.returncode != 0:
        raise RuntimeError(f"{spec}: the run failed: {out.stderr[-2000:]}")
    return int(out.stdout.strip().splitlines()[-1])


SPECS: dict[str, dict[str, Any]] = {
    "resnet18 plain, digits, batch 64": {
        "data": {"dataset": "digits"}, "train": {"epochs": 1, "batch_size": 64}},
    "resnet18 rpg 10%, digits, batch 64": {
        "rpg": {"ring_size": 0.1}, "data": {"dataset": "digits"},
        "train": {"epochs": 1, "batch_size": 64}},
    "resnet18 x0.5 rpg, synthetic 64 px, batch 32": {
        "model": {"width": 0.5}, "rpg": {"ring_size": 20000},
        "data": {"dataset": "synthetic", "image_size": 64, "num_train": 500, "num_val": 100},
        "train": {"epochs": 1, "batch_size": 32}},
    "resnet18 x2 plain, digits, batch 32": {
        "model": {"width": 2.0}, "data": {"dataset": "digits"},
        "train": {"epochs": 1, "batch_size": 32}},
    "resnet34 rpg, synthetic 32 px, batch 128": {
        "model": {"arch": "resnet34"}, "rpg": {"ring_size": 0.05},
        "data": {"dataset": "synthetic", "num_train": 1000},
        "train": {"epochs": 1, "batch_size": 128}},
    "hourglass 2 stacks rpg, synthetic-pose 64 px": {
        "task": "pose", "data": {"dataset": "synthetic-pose", "num_train": 200, "num_val": 40},
        "train": {"epochs": 1, "batch_size": 16}},
    "hourglass 4 stacks none, synthetic-pose 64 px": {
        "task": "pose", "model": {"arch": "hourglass", "stacks": 4, "sharing": "none"},
        "data": {"dataset": "synthetic-pose", "num_train": 200, "num_val": 40},
        "train": {"epochs": 1, "batch_size": 16}},
    "hourglass 2 stacks, synthetic-pose 128 px": {
        "task": "pose", "data": {"dataset": "synthetic-pose", "image_size": 128,
                                 "num_train": 200, "num_val": 40},
        "train": {"epochs": 1, "batch_size": 16}},
    "hourglass 8 stacks x2 rpg, synthetic-pose 64 px, batch 16": {
        "task": "pose", "model": {"arch": "hourglass", "stacks": 8, "width": 2.0},
        "data": {"dataset": "synthetic-pose", "num_train": 100, "num_val": 20},
        "train": {"epochs": 1, "batch_size": 16}},
    "synthetic-pose 256 px, 300 images, batch 8": {
        "task": "pose", "data": {"dataset": "synthetic-pose", "image_size": 256,
                                 "num_train": 250, "num_val": 50},
        "train": {"epochs": 1, "batch_size": 8}},
    "encdec rpg, synthetic-scenes 32 px": {
        "task": "multitask", "data": {"dataset": "synthetic-scenes", "num_train": 400,
                                      "num_val": 80},
        "train": {"epochs": 1, "batch_size": 32}},
}  # fmt: skip


def main() -> int:
    from rpg_core.spec import parse_spec
    from rpg_core.training.memory import estimate_job_memory, gib

    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--steps", type=int, default=1)
    ap.add_argument("--only", default="", help="run the specs whose label contains this")
    args = ap.parse_args()
    print("| spec | estimate | measured peak RSS | estimate / measured |")
    print("|---|---|---|---|")
    for label, spec in SPECS.items():
        if args.only not in label:
            continue
        est = estimate_job_memory(parse_spec(spec))
        peak = measure_peak(spec, args.steps)
        print(f"| {label} | {gib(est.total)} | {gib(peak)} | {est.total / peak:.2f} |", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
