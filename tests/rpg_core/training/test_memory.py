"""The memory estimate (rpg_core.memory): within 2x of the measured peak, and what is over a
budget is named with the fields to change. benchmarks/bench_memory.py measures more specs."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

from rpg_core.spec import parse_spec
from rpg_core.training.memory import data_memory_bytes, estimate_job_memory, memory_error

ROOT = Path(__file__).resolve().parents[3]
GiB = 1024**3

# a few training steps in a fresh process, then its own peak RSS (bytes) on the last line
CHILD = """
import json, sys
from rpg_core.training.engine import train

class Stop:  # one step: a step's memory is freed before the next
    left = 1
    def should_stop(self):
        self.left -= 1
        return self.left < 0

train(json.loads(sys.argv[1]), callbacks=[Stop()], checkpoint_dir=sys.argv[2], resume=False)
# VmHWM: this process's own peak (ru_maxrss would include the parent's RSS at the fork)
print(int(next(l for l in open("/proc/self/status") if l.startswith("VmHWM")).split()[1]) * 1024)
"""


def measured_peak(spec: dict[str, Any], tmp: Path) -> int:
    env = {
        **os.environ,
        "OMP_NUM_THREADS": "1",
        "PYTHONPATH": str(ROOT),
        "CUDA_VISIBLE_DEVICES": "",
    }
    out = subprocess.run(
        [sys.executable, "-c", CHILD, json.dumps(spec), str(tmp)],
        capture_output=True, text=True, env=env, cwd=ROOT, timeout=600, check=False,
    )  # fmt: skip
    assert out.returncode == 0, out.stderr[-2000:]
    return int(out.stdout.strip().splitlines()[-1])


MEASURED = {
    # activations dominate: 128 images of 32 px through a half-width ResNet18
    "resnet18 x0.5 plain, batch 128": {
        "model": {"width": 0.5},
        "data": {"dataset": "synthetic", "num_train": 128, "num_val": 16},
        "train": {"epochs": 1, "batch_size": 128},
    },
    # the rings' tables and generated weights
    "resnet18 rpg, digits": {
        "rpg": {"ring_size": 0.1},
        "data": {"dataset": "digits", "train_subset": 64, "val_subset": 16},
        "train": {"epochs": 1, "batch_size": 32},
    },
    # a stacked pose network on rendered figures
    "hourglass 2 stacks, synthetic-pose 64 px": {
        "task": "pose",
        "data": {"dataset": "synthetic-pose", "num_train": 64, "num_val": 16},
        "train": {"epochs": 1, "batch_size": 16},
    },
}


@pytest.mark.slow
@pytest.mark.parametrize("label", list(MEASURED))
def test_estimate_is_within_2x_of_the_measured_peak(label: str, tmp_path: Path) -> None:
    spec = MEASURED[label]
    est = estimate_job_memory(parse_spec(spec))
    peak = measured_peak(spec, tmp_path)
    assert peak / 2 <= est.total <= 2 * peak, (label, est.summary(), peak / GiB)


CANNOT_FIT = {
    # 2.86 billion parameters: 10.6 GiB of weights, as much again of gradients and momentum
    "resnet18 width 16": {"model": {"arch": "resnet18", "width": 16.0}},
    "hourglass 8 stacks width 16": {
        "task": "pose",
        "model": {"arch": "hourglass", "stacks": 8, "width": 16.0},
    },
    "synthetic-pose 1024 px": {
        "task": "pose",
        "data": {"dataset": "synthetic-pose", "image_size": 1024, "num_train": 500, "num_val": 100},
    },
}


@pytest.mark.parametrize("label", list(CANNOT_FIT))
def test_specs_that_cannot_fit_are_named_with_the_fields_to_change(label: str) -> None:
    spec = parse_spec(CANNOT_FIT[label])
    t = time.perf_counter()
    est = estimate_job_memory(spec)
    assert time.perf_counter() - t < 60  # nothing is allocated: the meta device
    budget = 8 * GiB
    assert est.total > budget, est.summary()
    field, message = memory_error(spec, budget) or ("", "")
    assert field in est.fields and field in message
    assert "8.0 GiB" in message and "this job needs about" in message
    assert "model.width" in message or "data.image_size" in message


def test_parts_follow_the_spec() -> None:
    base = estimate_job_memory(parse_spec({"train": {"batch_size": 32}}))
    wide = estimate_job_memory(parse_spec({"model": {"width": 2.0}, "train": {"batch_size": 32}}))
    big = estimate_job_memory(parse_spec({"train": {"batch_size": 128}}))
    ringed = estimate_job_memory(
        parse_spec({"rpg": {"ring_size": 0.1}, "train": {"batch_size": 32}})
    )
    assert wide.parts["parameters"] == pytest.approx(4 * base.parts["parameters"], rel=0.05)
    assert big.parts["activations"] > 3.5 * base.parts["activations"]
    assert ringed.parts["parameters"] < base.parts["parameters"] / 5
    assert ringed.parts["ring"] > 0 and "ring" not in base.parts or base.parts["ring"] == 0
    # a sweep over ring sizes builds the model once
    t = time.perf_counter()
    for size in range(1000, 1100):
        estimate_job_memory(parse_spec({"rpg": {"ring_size": size}}))
    assert time.perf_counter() - t < 5


def test_data_memory_counts_what_the_loaders_hold() -> None:
    spec = parse_spec({"data": {"dataset": "digits", "image_size": 64}})
    n, pixels = 1437 + 360, 64 * 64
    assert data_memory_bytes(spec.data) == n * pixels + 1437 * pixels * 8
    assert data_memory_bytes(parse_spec({"data": {"dataset": "imagefolder:x"}}).data) is None
    pose = parse_spec({"task": "pose", "data": {"dataset": "synthetic-pose", "train_subset": 10,
                                                "val_subset": 5}})  # fmt: skip
    small = data_memory_bytes(pose.data)
    assert small is not None and 0 < small < 2 * 1024**2
