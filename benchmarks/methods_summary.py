"""Paper Fig. 1 (right), the CPU twin: each method's accuracy at each budget, from `rpg sweep`.

Reads the result files `rpg sweep experiments/paper/fashion/fig1.yaml --out DIR` writes and
prints, per budget, each method's best validation accuracy (mean over seeds and the range),
the backbone parameters it really has, its training cost (epochs in all and seconds), the best
method marked, each method's difference to rpg in points and whether the seed ranges separate
(they do not overlap).

Usage: python benchmarks/methods_summary.py /tmp/fig1-out [--markdown]
"""

from __future__ import annotations

import argparse
import json
import statistics
from pathlib import Path
from typing import Any

METHODS = ("rpg", "hashed", "width", "prune-global", "prune-filters")


def load(dirs: list[Path]) -> dict[tuple[int, str], list[dict[str, Any]]]:
    cells: dict[tuple[int, str], list[dict[str, Any]]] = {}
    for d in dirs:
        for f in sorted(d.glob("*.json")):
            run = json.loads(f.read_text())
            if f.name == "summary.json" or "result" not in run:
                continue
            method = (run["spec"].get("method") or {}).get("name")
            budget = (run["spec"].get("method") or {}).get("budget")
            if method is None or budget is None:
                continue
            cells.setdefault((int(budget), method), []).append(run["result"])
    return cells


def _cell(runs: list[dict[str, Any]]) -> dict[str, Any]:
    accs = [float(r["best_val_acc"]) for r in runs]
    return {
        "mean": statistics.fmean(accs),
        "lo": min(accs),
        "hi": max(accs),
        "n": len(accs),
        "backbone": statistics.median(int(r["backbone_params"]) for r in runs),
        "epochs": statistics.median(int(r["epochs_run"]) for r in runs),
        "seconds": statistics.median(float(r["wall_time_s"]) for r in runs),
    }


def table(cells: dict[tuple[int, str], list[dict[str, Any]]]) -> list[str]:
    budgets = sorted({b for b, _ in cells})
    methods = [m for m in METHODS if any(m == k for _, k in cells)]
    lines = [
        "| budget | " + " | ".join(methods) + " |",
        "|---|" + "---|" * len(methods),
    ]
    for b in budgets:
        row = {m: _cell(cells[(b, m)]) for m in methods if (b, m) in cells}
        best = max(row, key=lambda m: row[m]["mean"])
        ref = row.get("rpg")
        out = []
        for m in methods:
            if m not in row:
                out.append("—")
                continue
            c = row[m]
            text = f"{100 * c['mean']:.1f}% [{100 * c['lo']:.1f}, {100 * c['hi']:.1f}]"
            if m == best:
                text = f"**{text}**"
            if ref is not None and m != "rpg":
                sep = c["hi"] < ref["lo"] or c["lo"] > ref["hi"]
                diff = 100 * (c["mean"] - ref["mean"])
                text += f" ({diff:+.1f} vs rpg{', separate' if sep else ', overlapping'})"
            text += f"; {c['backbone']:,.0f} params, {c['epochs']:.0f} ep, {c['seconds']:.0f} s"
            out.append(text)
        lines.append(f"| {b:,} | " + " | ".join(out) + " |")
    return lines


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("dirs", nargs="+", type=Path)
    args = ap.parse_args()
    print("\n".join(table(load(args.dirs))))


if __name__ == "__main__":
    main()
