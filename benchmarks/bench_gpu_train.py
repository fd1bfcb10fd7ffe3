"""Timed CIFAR-shaped training of ResNet18 and ResNet18-RPG through the engine (the CUDA path:
bf16 autocast and channels_last on a GPU), side by side.

Synthetic CIFAR-shaped data (3x32x32, 10 classes) so it runs anywhere; the variants alternate
(plain, rpg, plain, rpg, ...) and the first epoch of each run (warm-up: cuDNN autotuning,
allocator) is left out. Prints seconds per epoch, images per second and RPG/plain.

Usage: python benchmarks/bench_gpu_train.py [--images 20000] [--epochs 3] [--rounds 2]
       [--batch 256] [--width 1.0] [--ring 45000] [--device cuda]
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


def spec(args: argparse.Namespace, rpg: bool) -> dict[str, Any]:
    s: dict[str, Any] = {
        "name": "rpg" if rpg else "plain",
        "model": {"arch": "resnet18", "width": args.width},
        "data": {
            "dataset": "synthetic",
            "num_classes": 10,
            "num_train": args.images,
            "num_val": max(args.images // 10, 10),
            "image_size": 32,
        },
        "train": {
            "epochs": args.epochs,
            "batch_size": args.batch,
            "device": args.device,
            "deterministic": False,
            "precise_bn": "off",
        },
    }
    if rpg:
        s["rpg"] = {"ring_size": args.ring}
    return s


def main(argv: list[str] | None = None) -> dict[str, float]:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--images", type=int, default=20_000)
    p.add_argument("--epochs", type=int, default=3)
    p.add_argument("--rounds", type=int, default=2)
    p.add_argument("--batch", type=int, default=256)
    p.add_argument("--width", type=float, default=1.0)
    p.add_argument("--ring", type=int, default=45_000)
    p.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    args = p.parse_args(argv)
    logging.basicConfig(level=logging.WARNING)
    if args.epochs < 2:
        p.error("--epochs must be at least 2 (the first epoch is warm-up)")
    name = torch.cuda.get_device_name() if args.device.startswith("cuda") else "cpu"
    print(
        f"training timing on {name}, torch {torch.__version__}, {time.strftime('%Y-%m-%d %H:%M')}"
        f", load average {os.getloadavg()[0]:.2f}; {args.images} images 3x32x32, batch "
        f"{args.batch}, width {args.width}, ring {args.ring}, {args.epochs} epochs x "
        f"{args.rounds} rounds"
    )
    epoch_s: dict[str, list[float]] = {"plain": [], "rpg": []}
    for _ in range(args.rounds):
        for variant in ("plain", "rpg"):
            r = train(spec(args, variant == "rpg"), step_interval_s=1e9)
            epoch_s[variant] += [h["seconds"] for h in r.history[1:]]
    plain, rpg = (statistics.median(epoch_s[k]) for k in ("plain", "rpg"))
    print(f"{'variant':<10}{'s/epoch':>10}{'images/s':>12}{'min-max s':>18}")
    for k, med in (("plain", plain), ("rpg", rpg)):
        ts = epoch_s[k]
        print(f"{k:<10}{med:>10.3f}{args.images / med:>12.0f}{min(ts):>9.3f}-{max(ts):.3f}")
    print(f"RPG/plain epoch time: {rpg / plain:.3f}")
    return {"plain_s": plain, "rpg_s": rpg, "ratio": rpg / plain}


if __name__ == "__main__":
    main()
