"""The paper's Table 6 from `rpg sweep` output: train-val gap and OOD accuracy per network.

Reads the result files `rpg sweep experiments/paper/fashion/table6.yaml --out DIR` writes (one
or several DIRs, e.g. two sweeps with different seeds) and prints, per group (plain ResNet18,
ResNet34-RPG, plain ResNet34), the median and range over seeds of the final validation accuracy,
the train-val gap and the mean OOD accuracy, then the mean accuracy per shift.

Usage: python benchmarks/table6_summary.py runs/table6-fashion [more dirs...]
"""

from __future__ import annotations

import argparse
import json
import statistics
from pathlib import Path
from typing import Any


def group_of(spec: dict[str, Any]) -> str:
    arch = {"resnet18": "ResNet18", "resnet34": "ResNet34"}.get(spec["model"]["arch"], "?")
    return f"{arch}-RPG" if spec.get("rpg") else f"{arch} (plain)"


def load(dirs: list[Path]) -> dict[str, list[dict[str, Any]]]:
    groups: dict[str, list[dict[str, Any]]] = {}
    for d in dirs:
        for f in sorted(d.glob("*.json")):
            if f.name == "summary.json":
                continue
            run = json.loads(f.read_text())
            if "result" not in run:
                continue
            run["group"] = group_of(run["spec"])
            groups.setdefault(run["group"], []).append(run)
    return groups


def stat(values: list[float]) -> str:
    med = statistics.median(values)
    return f"{100 * med:.1f} [{100 * min(values):.1f}, {100 * max(values):.1f}]"


def shift_means(result: dict[str, Any]) -> dict[str, float]:
    by: dict[str, list[float]] = {}
    for key, acc in (result.get("ood") or {}).items():
        name, _, sev = key.rpartition("@")
        if name and sev != "0":
            by.setdefault(name, []).append(acc)
    return {k: sum(v) / len(v) for k, v in by.items()}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("dirs", nargs="+", type=Path)
    args = ap.parse_args()
    groups = load(args.dirs)
    print("| network | backbone params | seeds | val acc % | train−val gap (points) | "
          "mean OOD acc % | OOD / val |")  # fmt: skip
    print("|---|---:|---|---:|---:|---:|---:|")
    for name, runs in sorted(groups.items()):
        res = [r["result"] for r in runs]
        seeds = ",".join(str(r["spec"]["train"]["seed"]) for r in runs)
        ratio = [x["ood_acc"] / x["final_val_acc"] for x in res]
        print(
            f"| {name} | {runs[0]['backbone_params']:,} | {seeds} "
            f"| {stat([x['final_val_acc'] for x in res])} "
            f"| {stat([x['train_val_gap'] for x in res])} "
            f"| {stat([x['ood_acc'] for x in res])} "
            f"| {statistics.median(ratio):.3f} [{min(ratio):.3f}, {max(ratio):.3f}] |"
        )
    shifts = sorted({s for runs in groups.values() for r in runs for s in shift_means(r["result"])})
    print()
    print("| network | " + " | ".join(shifts) + " |")
    print("|---|" + "---:|" * len(shifts))
    for name, runs in sorted(groups.items()):
        per = [shift_means(r["result"]) for r in runs]
        cells = [stat([p[s] for p in per if s in p]) for s in shifts]
        print(f"| {name} | " + " | ".join(cells) + " |")


if __name__ == "__main__":
    main()
