"""CPU training throughput of a CIFAR-form ResNet18: RPG (ring of 5%) vs plain, same run.

Both go through the real engine (``rpg_core.training.engine.train``: seeded loader, crop+flip augmentation,
SGD step, evaluation excluded from the rate) on synthetic 3x32x32 images. The two models run
alternately ``--repeats`` times and the median images/s of each is reported, with the ratio.

    python benchmarks/bench_train.py [--width 0.25] [--steps 8] [--repeats 3] [--threads 1]
"""

from __future__ import annotations

import argparse
import platform
import statistics
import time
from typing import Any

import torch

from rpg_core.training.engine import train


def spec(args: argparse.Namespace, rpg: bool) -> dict[str, Any]:
    return {
        "name": "bench-rpg" if rpg else "bench-plain",
        "model": {"arch": "resnet18", "variant": "cifar", "width": args.width},
        "rpg": {"ring_size": args.ring} if rpg else None,
        "data": {
            "dataset": "synthetic",
            "num_classes": 10,
            "num_train": args.batch * args.steps,
            "num_val": args.batch,
            "image_size": args.image_size,
        },
        "train": {"epochs": 1, "batch_size": args.batch, "device": "cpu"},
    }


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--width", type=float, default=0.25)
    p.add_argument("--ring", type=float, default=0.05, help="ring size, fraction of generated")
    p.add_argument("--image-size", type=int, default=32)
    p.add_argument("--batch", type=int, default=64)
    p.add_argument("--steps", type=int, default=8, help="training steps per measured run")
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--threads", type=int, default=1)
    args = p.parse_args()
    torch.set_num_threads(args.threads)
    rates: dict[str, list[float]] = {"plain": [], "rpg": []}
    params: dict[str, int] = {}
    t0 = time.perf_counter()
    train(spec(args, True))  # warm-up (allocator, first-call overheads)
    for _ in range(args.repeats):
        for name in ("plain", "rpg"):
            r = train(spec(args, name == "rpg"))
            rates[name].append(r.images_per_s)
            params[name] = r.params["backbone"]
    plain, rpg = statistics.median(rates["plain"]), statistics.median(rates["rpg"])
    print(
        f"machine: {platform.processor() or platform.machine()}, torch {torch.__version__}, "
        f"{args.threads} thread(s)"
    )
    print(
        f"ResNet18 cifar-form width {args.width}, {args.image_size}x{args.image_size}, "
        f"batch {args.batch}, {args.steps} steps x {args.repeats} repeats (median)"
    )
    print(f"plain: {plain:8.1f} images/s  (backbone {params['plain']:,} params)")
    print(f"rpg:   {rpg:8.1f} images/s  (ring {params['rpg']:,} params)")
    print(f"rpg / plain throughput: {rpg / plain:.3f}")
    print(f"total benchmark time: {time.perf_counter() - t0:.0f}s")


if __name__ == "__main__":
    main()
