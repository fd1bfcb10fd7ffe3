"""benchmarks/gpu_check.sh --dry-run: the GPU check's every step, on the CPU at toy sizes, so
the script that runs on a lent GPU cannot rot between GPU sessions."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.slow
@pytest.mark.isolated  # temporary files, pytest in a subprocess, torchrun --standalone
def test_gpu_check_dry_run_runs_every_step(tmp_path: Path) -> None:
    env = {**os.environ, "PY": sys.executable, "OMP_NUM_THREADS": "1", "OUT": str(tmp_path)}
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
    assert f"python {sys.version.split()[0]} {sys.executable}" in text  # the interpreter found
    assert "missing packages: none" in text
    assert re.search(r"== setup done: \d+ s", text)  # the set-up is timed
    for step in ("CUDA tests (device cpu)", "epoch benchmark", "load benchmark", "ring benchmark"):
        assert re.search(rf"== {re.escape(step)}: exit 0, \d+ s", text), text[-4000:]
    assert "4 passed" in text  # the device tests ran (on the CPU), none skipped
    # the epoch table: both variants with AMP on and off, images/s and peak memory columns
    assert "images/s" in text and "peak MiB" in text
    assert re.search(r"^on +rpg ", text, re.M) and re.search(r"^off +plain ", text, re.M)
    summaries = re.findall(r"^SUMMARY (\S+) rpg/plain", text, re.M)
    assert summaries.count("gpu-epoch") == 2  # its step, and the summary at the end
    assert {"gpu-epoch", "load+first-forward", "train-step"} <= set(summaries)
    assert re.search(r"wall \d+\.\d+ \[95% CI \d+\.\d+-\d+\.\d+, n=2\], cpu", text)
    has_ddp = (ROOT / "benchmarks" / "bench_ddp.py").exists()
    assert ("== ddp benchmark (1 ranks)" in text) == has_ddp
    assert re.search(r"== gpu_check done: \d+ s in all$", text, re.M)
    assert (tmp_path / "gpu_check.log").read_text().strip().endswith("s in all")
