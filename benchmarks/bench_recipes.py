"""Evidence for the default recipe: short runs on the bundled data under several recipes.

Each case (dataset, width, ring) is trained under each recipe with everything else at its
default, as a user's spec would; the table gives the final validation accuracy and loss, the
guard rails' flags and the time. ``--quick`` runs the cheap cases only.

Usage: python benchmarks/bench_recipes.py [--epochs 3] [--seeds 0] [--recipes default,paper]
       [--cases digits-w0.25-2k,...] [--threads 2]
"""

from __future__ import annotations

import argparse
import logging
import os
import statistics
import time
from typing import Any

import torch

from rpg_core import train

CASES: dict[str, dict[str, Any]] = {
    "digits-w0.25-2k": {"model": {"width": 0.25}, "rpg": {"ring_size": 2000}},
    "digits-w0.25-8k": {"model": {"width": 0.25}, "rpg": {"ring_size": 8000}},
    "digits-w0.25-32k": {"model": {"width": 0.25}, "rpg": {"ring_size": 32000}},
    "digits-w0.25-plain": {"model": {"width": 0.25}},
    "digits-w0.5-2k": {"model": {"width": 0.5}, "rpg": {"ring_size": 2000}},
    "digits-w0.5-8k": {"model": {"width": 0.5}, "rpg": {"ring_size": 8000}},
    "digits-w0.5-plain": {"model": {"width": 0.5}},
    "digits-w1-2k": {"model": {"width": 1.0}, "rpg": {"ring_size": 2000}},
    "digits-w1-32k": {"model": {"width": 1.0}, "rpg": {"ring_size": 32000}},
    "digits-w1-plain": {"model": {"width": 1.0}},
    "digits-w1-5pct": {"model": {"width": 1.0}, "rpg": {"ring_size": 0.05}},
    "fashion10k-w0.25-16k": {
        "model": {"width": 0.25},
        "rpg": {"ring_size": 16000},
        "data": {"dataset": "fashion-mnist", "train_subset": 10000},
    },
    "fashion10k-w0.25-plain": {
        "model": {"width": 0.25},
        "data": {"dataset": "fashion-mnist", "train_subset": 10000},
    },
}
RECIPES: dict[str, dict[str, Any]] = {
    "default": {},  # the spec's defaults: what a user gets
    "paper": {"recipe": "paper-cifar"},  # the paper's step schedule, scaled to the run
    "before": {"recipe": "paper-cifar", "precise_bn": "off", "augment": True},  # old defaults
    "cos-lr0.1": {"lr": 0.1},
    "cos-lr0.02": {"lr": 0.02},
    "cos-bs32": {"batch_size": 32},
    "cos-bs128": {"batch_size": 128},
    "cos-bs16": {"batch_size": 16},
    "bs16-lr0.05": {"batch_size": 16, "lr": 0.05},
    "warmup1": {"warmup_epochs": 1.0},
    "onecycle": {"schedule": "onecycle"},
    "onecycle-lr0.1": {"schedule": "onecycle", "lr": 0.1},
    "no-precise-bn": {"precise_bn": "off"},
    "augment": {"augment": True},
    "ls0.1": {"label_smoothing": 0.1},
}
QUICK = ["digits-w0.25-2k", "digits-w0.25-plain", "fashion10k-w0.25-16k"]


def spec_for(case: str, recipe: str, epochs: int, seed: int) -> dict[str, Any]:
    base = CASES[case]
    data = {"dataset": "digits", **base.get("data", {})}
    spec: dict[str, Any] = {
        "name": f"{case}-{recipe}",
        "model": {"arch": "resnet18", **base["model"]},
        "data": data,
        "train": {"epochs": epochs, "seed": seed, **RECIPES[recipe]},
    }
    if "augment" in spec["train"]:  # a data field, kept with its recipe for the table
        spec["data"] = {**data, "augment": spec["train"].pop("augment")}
    if "rpg" in base:
        spec["rpg"] = base["rpg"]
    return spec


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--epochs", type=int, default=3)
    p.add_argument("--seeds", default="0", help="comma-separated train seeds")
    p.add_argument("--recipes", default="default,paper")
    p.add_argument("--cases", default=",".join(QUICK))
    p.add_argument("--threads", type=int, default=2)
    args = p.parse_args()
    logging.basicConfig(level=logging.WARNING)
    torch.set_num_threads(args.threads)
    seeds = [int(s) for s in args.seeds.split(",")]
    print(
        f"torch {torch.__version__}, {args.threads} threads, {time.strftime('%Y-%m-%d %H:%M')}, "
        f"load average {os.getloadavg()[0]:.2f}, {args.epochs} epochs, seeds {seeds}"
    )
    print(f"{'case':<24}{'recipe':<16}{'val acc %':>18}{'val loss':>10}{'s/run':>8}  flags")
    for case in args.cases.split(","):
        for recipe in args.recipes.split(","):
            accs, losses, secs, flags = [], [], [], set()
            for seed in seeds:
                t0 = time.perf_counter()
                r = train(spec_for(case, recipe, args.epochs, seed), step_interval_s=1e9)
                secs.append(time.perf_counter() - t0)
                accs.append(100 * (r.final_val_acc or 0.0))
                losses.append(r.history[-1]["val_loss"])
                flags |= {f["code"] for f in r.health}
            acc = f"{statistics.median(accs):.1f} [{min(accs):.1f}-{max(accs):.1f}]"
            print(
                f"{case:<24}{recipe:<16}{acc:>18}{statistics.median(losses):>10.3f}"
                f"{statistics.median(secs):>8.0f}  {','.join(sorted(flags)) or '-'}",
                flush=True,
            )


if __name__ == "__main__":
    main()
