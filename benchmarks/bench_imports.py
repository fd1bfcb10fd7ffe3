"""Import cost of what the API process loads: wall time of ``python -c "import MODULE"`` in fresh
processes (median and range), and whether torch came with it.

    python benchmarks/bench_imports.py [--root DIR] [--runs 7] [MODULE ...]

``--root``: the source tree to import from (default: this checkout), so two trees can be
compared on the same machine in the same minutes.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

DEFAULT = ["rpg_core.spec", "api.main"]


def measure(root: Path, module: str, runs: int) -> tuple[list[float], bool]:
    env = {**os.environ, "PYTHONPATH": str(root), "OMP_NUM_THREADS": "1"}
    code = f"import sys, {module}; print('torch' in sys.modules)"
    times, torch_loaded = [], False
    for _ in range(runs):
        t0 = time.perf_counter()
        out = subprocess.run(
            [sys.executable, "-c", code], cwd=root, env=env, capture_output=True, text=True
        )
        times.append(time.perf_counter() - t0)
        if out.returncode != 0:
            raise SystemExit(f"import {module} failed in {root}:\n{out.stderr}")
        torch_loaded = out.stdout.strip() == "True"
    return times, torch_loaded


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("modules", nargs="*", default=DEFAULT)
    parser.add_argument("--root", type=Path, default=Path(__file__).resolve().parents[1])
    parser.add_argument("--runs", type=int, default=7)
    args = parser.parse_args()
    for module in args.modules:
        times, torch_loaded = measure(args.root, module, args.runs)
        print(
            f"{args.root}: import {module}: median {statistics.median(times):.2f} s "
            f"(range {min(times):.2f}-{max(times):.2f}, {args.runs} runs), "
            f"torch {'loaded' if torch_loaded else 'not loaded'}"
        )


if __name__ == "__main__":
    main()
