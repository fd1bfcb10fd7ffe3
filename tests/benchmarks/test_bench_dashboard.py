"""benchmarks/bench_dashboard.py at toy size: COPY-loaded PostgreSQL, the EXPLAIN of the pages'
queries, a real server and chromium; it prints every measure."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
CHROMIUM = "/usr/bin/chromium"


@pytest.mark.slow
@pytest.mark.e2e
@pytest.mark.browser
def test_dashboard_benchmark_runs_and_prints_its_measures() -> None:
    if not Path(CHROMIUM).exists():
        pytest.skip(f"{CHROMIUM} is needed (apt install chromium)")
    cmd = [sys.executable, str(ROOT / "benchmarks" / "bench_dashboard.py")]
    cmd += ["--runs", "600", "--results", "60", "--sweeps", "3", "--repeats", "1"]
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    out = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=300, check=False)
    text = out.stdout + out.stderr
    assert out.returncode == 0, text[-4000:]
    assert "loaded 600 runs (60 succeeded with results)" in out.stdout
    assert "Index Scan Backward using pk_experiments" in out.stdout  # the newest page's plan
    for measure in (
        "runs page: first contentful paint",
        "runs page: table filled",
        "filter: status=succeeded, arch=resnet34",
        "power-law page: figure drawn (from navigation)",
        "power-law page: figure drawn, plotly.js cached",
        "GET /api/analysis/power-law: first call",
        "... not cached (a new query)",
        "... cached (the same query again)",
    ):
        lines = [x for x in out.stdout.splitlines() if x.strip().startswith(measure)]
        assert len(lines) == 1 and " s (" in lines[0], (measure, out.stdout)
    assert "the power law fitted 60 succeeded runs; answers are cached" in out.stdout
    assert "targets: " in out.stdout


@pytest.mark.slow
@pytest.mark.e2e
def test_api_only_times_the_first_call_on_a_fresh_server_per_repeat() -> None:
    cmd = [sys.executable, str(ROOT / "benchmarks" / "bench_dashboard.py"), "--api-only"]
    cmd += ["--runs", "300", "--results", "30", "--sweeps", "2", "--repeats", "2"]
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    out = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=300, check=False)
    assert out.returncode == 0, (out.stdout + out.stderr)[-4000:]
    assert "EXPLAIN" not in out.stdout and "a fresh one per repeat, no browser" in out.stdout
    assert not any(
        x.strip().startswith(("runs page", "power-law page")) for x in out.stdout.splitlines()
    )
    first = [x for x in out.stdout.splitlines() if "GET /api/analysis/power-law: first call" in x]
    assert len(first) == 1 and " s (" in first[0], out.stdout  # the median of 2 fresh servers
    assert "the power law fitted 30 succeeded runs" in out.stdout
