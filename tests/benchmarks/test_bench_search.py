"""benchmarks/bench_search.py at toy size: the pruner-on and pruner-off studies run side by side
per seed, and report the best objective and the epochs each spent (what docs/BENCHMARKS.md
quotes); the pruned study spends no more epochs than the full one; several pruner settings
(``--pruner NAME:key=value``) run beside one pruner-off study per seed."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
SCRIPT = ROOT / "benchmarks" / "bench_search.py"


pytestmark = pytest.mark.isolated  # in-process Optuna and temporary files only


def test_the_search_benchmark_reports_best_and_epochs(tmp_path: Path) -> None:
    out = tmp_path / "search.json"
    args = ["--dataset", "synthetic", "--train", "64", "--val", "32", "--image-size", "8"]
    args += ["--width", "0.125", "--trials", "4", "--epochs", "2", "--seeds", "0"]
    median = "median:n_startup_trials=1,n_warmup_steps=2"  # no pruning before the last epoch
    args += ["--pruner", "successive-halving", "--pruner", median]
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(ROOT)}
    proc = subprocess.run(
        [sys.executable, str(SCRIPT), *args, "--json", str(out)],
        capture_output=True,
        text=True,
        env=env,
        timeout=300,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    data = json.loads(out.read_text())
    rows = {r["pruner"]: r for r in data["rows"]}
    assert set(rows) == {"none", "successive-halving", median}
    assert rows["none"]["epochs"] == 4 * 2 and rows["none"]["pruned"] == 0
    pruned = rows["successive-halving"]
    assert pruned["epochs"] == 4 * 2 - pruned["pruned"]  # each pruned trial stopped after one
    assert 0.0 <= pruned["best"] <= 1.0 and 0.003 <= pruned["best_lr"] <= 0.3
    summary = data["summary"]["pruners"]
    assert summary["successive-halving"]["epoch_ratio"] == pruned["epochs"] / 8
    # the settings reach the pruner: warm-up 2 of 2 epochs leaves every trial its full run
    assert rows[median]["epochs"] == 8 and rows[median]["pruned"] == 0
    assert summary[median]["epoch_ratio"] == 1.0
    assert "| seed | pruner |" in proc.stdout
