"""benchmarks/bench_store.py at toy size: both backends serve the same bytes through a real API
process, and the figures it prints are there and plausible."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from ..s3server import MotoServer

ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.slow
def test_bench_store_measures_both_backends(s3_server: MotoServer) -> None:
    out = subprocess.run(
        [sys.executable, str(ROOT / "benchmarks" / "bench_store.py"), "--size-mb", "3",
         "--repeats", "1", "--json", "--s3-endpoint", s3_server.url],
        capture_output=True,
        text=True,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
        timeout=300,
        check=False,
    )  # fmt: skip
    assert out.returncode == 0, out.stderr[-3000:]
    got = json.loads(out.stdout.strip().splitlines()[-1])
    for name in ("local", "s3"):
        r = got[name]
        assert 0 < r["mb_per_s_min"] <= r["mb_per_s_median"] <= r["mb_per_s_max"]
        assert 0 < r["vm_hwm_start_mib"] <= r["vm_hwm_before_mib"] <= r["vm_hwm_after_mib"]
    assert got["s3_over_local_throughput"] > 0 and len(got["load_before"]) == 3
