"""benchmarks/gpu_check.sh --dry-run: the GPU check's every step, on the CPU at toy sizes, so
the script that runs on a lent GPU cannot rot between GPU sessions."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.slow
def test_gpu_check_dry_run_runs_every_step() -> None:
    env = {**os.environ, "PY": sys.executable, "OMP_NUM_THREADS": "1"}
    out = subprocess.run(
        ["bash", str(ROOT / "benchmarks" / "gpu_check.sh"), "--dry-run"],
        capture_output=True,
        text=True,
        env=env,
        timeout=600,
        check=False,
    )
    text = out.stdout + out.stderr
    assert out.returncode == 0, text[-4000:]
    for step in ("== CUDA tests (device cpu)", "== ring benchmark", "== training benchmark"):
        assert step in text, text[-4000:]
    assert "4 passed" in text  # the device tests ran (on the CPU), none skipped
    assert "rpg (rpg_core)" in text and "inference" in text
    assert "RPG/plain epoch time:" in text
    assert "== gpu_check done" in text
