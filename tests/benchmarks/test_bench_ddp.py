"""benchmarks/bench_ddp.py at toy size: every configuration runs (1 device, 2 gloo ranks, 2 ranks
with the no-op all-reduce) and the figures come out, so the script cannot rot."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.slow
@pytest.mark.isolated  # temporary files, torchrun --standalone (a free port)
def test_bench_ddp_quick_measures_every_configuration(tmp_path: Path) -> None:
    out = tmp_path / "ddp.json"
    env = {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1"}
    proc = subprocess.run(
        [sys.executable, str(ROOT / "benchmarks" / "bench_ddp.py"), "--quick", "--json", str(out)],
        capture_output=True,
        text=True,
        env=env,
        timeout=600,
        check=False,
    )
    assert proc.returncode == 0, (proc.stdout + proc.stderr)[-4000:]
    figures = json.loads(out.read_text())
    assert set(figures["median"]) == {
        "1 device",
        "2 ranks",
        "2 ranks, no all-reduce",
        "2 ranks, no all-reduce, local BN",
    }
    assert all(v > 0 for v in figures["median"].values())
    assert "load average" in figures["load"][0]
    assert "all-reduce share of a 2-rank step" in proc.stdout
