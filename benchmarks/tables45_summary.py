"""Paper Tables 4 and 5 twins: summarise finished ``rpg sweep`` runs of a pose or multitask sweep.

Reads the result JSON files ``rpg sweep experiments/paper/synthetic/table4.yaml --out DIR`` (or
``table5.yaml``) wrote, one per run, groups them by (sharing, stacks) as the paper's tables do,
and prints a Markdown table: for each of the task's metrics the median over seeds with its range
and every seed's value, the total parameters, and the run time; then the paper's orderings with
whether each holds here (by the medians; "within spread" when the ranges overlap).

Usage: python benchmarks/tables45_summary.py DIR
"""

from __future__ import annotations

import argparse
import json
import statistics
from collections import defaultdict
from pathlib import Path
from typing import Any

from rpg_core.catalog.tasks import task_info
from rpg_core.spec import parse_spec

Cell = tuple[str, int]


def _load(folder: Path) -> list[dict[str, Any]]:
    runs = []
    for path in sorted(folder.glob("*.json")):
        data = json.loads(path.read_text())
        result = data.get("result") if isinstance(data, dict) else None
        if isinstance(result, dict) and result.get("metrics"):  # a run, not summary.json
            runs.append(result)
    if not runs:
        raise SystemExit(f"{folder}: no result files (run rpg sweep ... --out {folder} first)")
    return runs


def _cell(run: dict[str, Any]) -> Cell:
    spec = parse_spec(run["spec"])
    return str(spec.model.resolved_sharing()), int(spec.model.resolved_stacks() or 1)


def _fmt(values: list[float], percent: bool) -> str:
    k = 100.0 if percent else 1.0
    med = statistics.median(values) * k
    lo, hi = min(values) * k, max(values) * k
    each = ", ".join(f"{v * k:.1f}" if percent else f"{v:.3f}" for v in values)
    return (
        f"{med:.1f} [{lo:.1f}-{hi:.1f}] ({each})"
        if percent
        else (f"{med:.3f} [{lo:.3f}-{hi:.3f}] ({each})")
    )


def _orderings(
    task: str, med: dict[Cell, dict[str, float]], rng: dict[Cell, dict[str, tuple[float, float]]]
) -> list[str]:
    info = task_info(task)
    key = info.primary_metric.key
    better = info.primary_metric.better
    lines = []

    def claim(text: str, a: Cell, b: Cell) -> None:
        if a not in med or b not in med:
            return
        holds = better(med[a][key], med[b][key]) or med[a][key] == med[b][key]
        (alo, ahi), (blo, bhi) = rng[a][key], rng[b][key]
        overlap = alo <= bhi and blo <= ahi
        verdict = "holds" if holds else "does not hold"
        lines.append(f"- {text}: {verdict}" + (" (ranges overlap)" if overlap else ""))

    if task == "pose":
        for n in (2, 4):
            claim(f"rpg >= full at {n} sub-networks (same size)", ("rpg", n), ("full", n))
            claim(f"none >= rpg at {n} sub-networks (the ceiling)", ("none", n), ("rpg", n))
        for s in ("full", "rpg", "none"):
            claim(f"{s}: 4 sub-networks >= 2", (s, 4), (s, 2))
            claim(f"{s}: 2 sub-networks >= 1", (s, 2), ("none", 1))
    else:
        n = max((c[1] for c in med if c[0] != "single"), default=2)
        claim("rpg better than single", ("rpg", n), ("single", 1))
        claim("rpg better than reuse-new-bn", ("rpg", n), ("reuse-new-bn", n))
        claim("reuse-new-bn better than reuse", ("reuse-new-bn", n), ("reuse", n))
        claim("rpg best of the shared variants (vs reuse)", ("rpg", n), ("reuse", n))
    return lines


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("dir", type=Path)
    args = ap.parse_args()
    runs = _load(args.dir)
    task = runs[0]["task"]
    info = task_info(task)
    cells: dict[Cell, list[dict[str, Any]]] = defaultdict(list)
    for r in runs:
        cells[_cell(r)].append(r)
    percent = task == "pose"
    heads = [f"{m.label} ({m.direction} is better)" for m in info.metrics]
    print(f"| sharing | sub-networks | {' | '.join(heads)} | params | seeds | run time s |")
    print("|---|---|" + "---|" * len(heads) + "---|---|---|")
    med: dict[Cell, dict[str, float]] = {}
    rng: dict[Cell, dict[str, tuple[float, float]]] = {}
    for cell in sorted(cells, key=lambda c: (c[1], c[0])):
        rs = sorted(cells[cell], key=lambda r: r["spec"]["train"]["seed"])
        row = []
        for m in info.metrics:
            vals = [float(r["metrics"][m.key]) for r in rs]
            med.setdefault(cell, {})[m.key] = statistics.median(vals)
            rng.setdefault(cell, {})[m.key] = (min(vals), max(vals))
            row.append(_fmt(vals, percent))
        params = rs[0]["params"]["total"]
        secs = statistics.median(float(r["wall_time_s"]) for r in rs)
        seeds = ",".join(str(r["spec"]["train"]["seed"]) for r in rs)
        print(f"| {cell[0]} | {cell[1]} | {' | '.join(row)} | {params:,} | {seeds} | {secs:.0f} |")
    print()
    for line in _orderings(task, med, rng):
        print(line)


if __name__ == "__main__":
    main()
