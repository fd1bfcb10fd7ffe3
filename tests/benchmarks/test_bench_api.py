"""benchmarks/bench_api.py at toy size: the product and the bare app side by side (real uvicorn
processes on PostgreSQL) print their table; the profile's categories add up."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "benchmarks"))

import bench_api  # noqa: E402


@pytest.mark.slow
@pytest.mark.e2e
def test_pair_runs_both_apps_and_prints_the_table() -> None:
    cmd = [sys.executable, str(ROOT / "benchmarks" / "bench_api.py"), "--mode", "pair"]
    cmd += ["--seed-rows", "120", "--requests", "6", "--repeats", "1", "--workers", "1"]
    cmd += ["--concurrency", "2"]
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    out = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=300, check=False)
    text = out.stdout + out.stderr
    assert out.returncode == 0, text[-4000:]
    for phase in ("POST /api/experiments", "GET /api/experiments?limit=50", "(page 2)"):
        for app in ("product", "bare"):
            lines = [x for x in out.stdout.splitlines() if phase in x and f" {app} " in x]
            assert len(lines) == 1, (phase, app, out.stdout)
            assert all(" 0  " in x for x in lines), lines  # no 5xx
    bare = [x for x in out.stdout.splitlines() if x.startswith("  ") and " bare " in x]
    bare = [x for x in bare if "req/s" not in x]
    assert all(x.rstrip().endswith("x") for x in bare), bare  # the product/bare ratios
    assert "targets: " in out.stdout and "load average at the end" in out.stdout


def test_profile_categories_count_the_innermost_match_and_drop_idle_threads(
    tmp_path: Path,
) -> None:
    raw = tmp_path / "profile.txt"
    route = "run (uvicorn/main.py:1);AdmissionMiddleware.__call__ (api/middleware.py:2)"
    raw.write_text(
        f"{route};submit (api/routes/experiments.py:3);check_token (api/crud/tokens.py:4);"
        "_do_ping_w_event (sqlalchemy/pool/base.py:5) 3\n"
        f"{route};submit (api/routes/experiments.py:3);check_token (api/crud/tokens.py:4) 1\n"
        f"{route};acquire (asyncio/locks.py:6) 2\n"
        f"{route};submit (api/routes/experiments.py:3);h11 (h11/_conn.py:7) 4\n"
        "_bootstrap (threading.py:8);Queue.get (queue.py:9) 50\n"
    )
    shares = dict(bench_api.profile_summary(raw))
    assert shares == {
        "pool pre-ping (SELECT 1 per checkout)": 0.3,
        "auth: token lookup": 0.1,
        bench_api.MIDDLEWARE_RULE[0]: 0.2,
        "server and framework (uvicorn, h11, asyncio, starlette, fastapi routing)": 0.4,
    }
