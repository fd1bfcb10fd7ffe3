"""benchmarks/bench_adaptive.py at toy size: both parts run end to end and report what
docs/BENCHMARKS.md quotes, and the real part trains each (ring, seed) once (its cache)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
SCRIPT = ROOT / "benchmarks" / "bench_adaptive.py"


def _run(*args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(ROOT)}
    return subprocess.run(
        [sys.executable, str(SCRIPT), *args],
        capture_output=True,
        text=True,
        env=env,
        timeout=300,
        check=False,
    )


pytestmark = pytest.mark.isolated  # in-process Optuna and temporary files only


def test_synthetic_part_compares_the_strategies(tmp_path: Path) -> None:
    out = tmp_path / "synth.json"
    run = _run("synthetic", "--reps", "4", "--trials", "6", "--json", str(out))
    assert run.returncode == 0, run.stderr[-3000:]
    assert "| trials | grid: b width (IQR)" in run.stdout and "# load at start:" in run.stdout
    res = json.loads(out.read_text())
    assert res["machine"]["uptime"]
    for law in res["results"].values():
        assert law["reps"] == 4
        by = law["by_trials"]
        assert set(by) == {"grid", "adaptive", "adaptive-target"}
        assert set(by["grid"]) == {str(t) for t in range(3, 7)}
        for strategy in by.values():
            for row in strategy.values():
                assert row["width"]["median"] > 0 and 0 <= row["coverage"] <= 1
        # after the initial spread of 3 the designs are the same: the same numbers
        assert by["grid"]["3"] == by["adaptive"]["3"]


@pytest.mark.slow
def test_real_part_trains_each_point_once_and_reuses_the_cache(tmp_path: Path) -> None:
    cache, out = tmp_path / "cache.json", tmp_path / "real.json"
    args = ["real", "--cache", str(cache), "--json", str(out), "--dataset", "digits"]
    args += ["--subset", "100", "--val-subset", "50", "--image-size", "8", "--width", "0.125"]
    args += ["--epochs", "1", "--low", "100", "--high", "1000", "--points", "3"]
    args += ["--seeds", "1", "--trials", "4"]
    first = _run(*args)
    assert first.returncode == 0, first.stderr[-3000:]
    trained = json.loads(cache.read_text())
    # the lattice (3 rings, seed 0) and the repeats the adaptive rule asked beyond it (seed 1)
    assert {"100:0", "316:0", "1000:0"} < set(trained)
    assert first.stdout.count("trained ") == len(trained)
    res = json.loads(out.read_text())["results"]
    assert res["rings"] == [100, 316, 1000] and res["trainings"] == len(trained)
    assert set(res["by_trials"]) == {"grid", "adaptive", "adaptive-target"}
    assert "truth (every ring, every seed): b =" in first.stdout
    # a rerun trains nothing: every point comes from the cache, with the same figures
    again = _run(*args)
    assert again.returncode == 0, again.stderr[-3000:]
    assert "trained " not in again.stdout
    assert json.loads(out.read_text())["results"]["by_trials"] == res["by_trials"]
