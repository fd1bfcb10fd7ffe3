"""benchmarks/bench_submit.py at toy size: both parts (send, insert) run paired and print their
per-call CPU and the after/before ratio with its interval."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def test_bench_submit_prints_both_paired_ratios() -> None:
    out = subprocess.run(
        [sys.executable, str(ROOT / "benchmarks" / "bench_submit.py"), "--pairs", "2"]
        + ["--batch", "5"],
        cwd=ROOT,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert out.returncode == 0, out.stderr[-3000:]
    for part, unit in (("send", "send"), ("insert", "row")):
        line = re.search(
            rf"^{part}: +before (\S+) ms cpu/{unit}, after (\S+);.*n=2\]$", out.stdout, re.M
        )
        assert line, out.stdout
        assert float(line[1]) > 0 and float(line[2]) > 0
