"""Paper Table 1 twin: summarise a finished ``rpg sweep`` of the mdeq model and re-time it.

Reads the result JSON files ``rpg sweep experiments/paper/fashion/table1.yaml --out DIR`` wrote
(one per run), groups them by (recurrence mode, repeats) and prints a Markdown table: median
final validation accuracy with its range over seeds, total parameters, and inference time per
image, both as stored by each run (measured at its end, whatever the machine was doing) and
re-timed here, all models in one process in interleaved rounds (so a busy machine slows every
model alike): eval mode, no grad, one fixed batch of validation images, median over rounds.

Usage: python benchmarks/bench_table1.py DIR [--rounds 7] [--batch 64]
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from pathlib import Path
from typing import Any

import torch

from rpg_core.data import BatchLoader, load_datasets
from rpg_core.spec import parse_spec
from rpg_core.training.engine import load_trained_model
from rpg_core.training.timing import measure_inference


def _key(spec: dict[str, Any]) -> tuple[str, int]:
    rec = spec["model"].get("recurrence") or {"mode": "shared", "repeats": 1}
    mode = str(rec["mode"])
    if mode == "shared" and rec.get("norms") == "per_application":
        mode = "shared, own norms"
    return mode, int(rec["repeats"])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("dir", type=Path)
    ap.add_argument("--rounds", type=int, default=7)
    ap.add_argument("--batch", type=int, default=64)
    args = ap.parse_args()
    torch.set_num_threads(1)
    runs = [json.loads(p.read_text()) for p in sorted(args.dir.glob("*.json"))]
    runs = [r for r in runs if r.get("result")]
    if not runs:
        raise SystemExit(f"no finished runs in {args.dir}")
    spec = parse_spec(runs[0]["spec"])
    data = load_datasets(spec.data)
    loader = BatchLoader(data, "val", args.batch, seed=0, device=torch.device("cpu"))
    images = next(iter(loader.epoch(0)))[0]
    models = {r["name"]: load_trained_model(args.dir / r["name"]) for r in runs}
    times: dict[str, list[float]] = {name: [] for name in models}
    for _ in range(args.rounds):
        for name, model in models.items():
            times[name].append(measure_inference(model, images, warmup=1, repeats=1))
    groups: dict[tuple[str, int], list[dict[str, Any]]] = {}
    for r in runs:
        groups.setdefault(_key(r["spec"]), []).append(r)
    print("| mode | K | seeds | val acc, median (range) | params (total) | ms/image stored "
          "| ms/image re-timed |")  # fmt: skip
    print("|---|---:|---:|---|---:|---:|---:|")
    order = {"equilibrium": 0, "shared": 1, "shared, own norms": 2, "rpg": 3}
    for (mode, k), rs in sorted(groups.items(), key=lambda kv: (order[kv[0][0]], kv[0][1])):
        accs = [float(r["result"]["final_val_acc"]) for r in rs]
        stored = [float(r["result"]["inference_ms_per_image"]) for r in rs]
        timed = [statistics.median(times[r["name"]]) for r in rs]
        totals = sorted({int(r["result"]["params"]["total"]) for r in rs})
        print(
            f"| {mode} | {k if mode != 'equilibrium' else '-'} | {len(rs)} "
            f"| {100 * statistics.median(accs):.2f}% ({100 * min(accs):.2f}-{100 * max(accs):.2f})"
            f" | {', '.join(f'{t:,}' for t in totals)} | {statistics.median(stored):.3f} "
            f"| {statistics.median(timed):.3f} |"
        )
    print(f"\n{time.strftime('%Y-%m-%d %H:%M')} UTC, batch {args.batch}, {args.rounds} rounds")


if __name__ == "__main__":
    main()
