"""RPG / plain epoch time of a CIFAR-form ResNet18 on a GPU (issue 27), AMP on and off,
channels_last, side by side; images/s and peak memory of each.

Synthetic data of CIFAR's shape (50,000 images 3x32x32 as uint8 on the device, 10 classes) so it
runs anywhere. Two loops:

- direct (the figures): a plain training loop (normalise, forward under bf16 autocast or not,
  cross-entropy, backward, SGD momentum) over the whole set each epoch, the model and batches
  channels_last on CUDA. For each AMP setting the variants alternate (plain, rpg, plain, rpg, ...),
  the first epoch of each run is warm-up (cuDNN autotuning, allocator) and left out; peak memory
  is ``torch.cuda.max_memory_allocated`` over each run.
- ``--engine``: the same through ``rpg_core.train`` (the product's path: bf16 autocast and
  channels_last on CUDA, evaluation not counted), RPG/plain epoch time.

Ends with ``SUMMARY gpu-epoch rpg/plain: amp on X, amp off Y (target <= 1.02)``.

Usage: python benchmarks/bench_gpu_train.py [--images 50000] [--epochs 3] [--rounds 2]
       [--batch 256] [--width 1.0] [--ring 45000] [--device cuda] [--amp on,off] [--engine]
"""

from __future__ import annotations

import argparse
import contextlib
import logging
import os
import statistics
import time
from typing import Any

import torch
from torch import nn

from rpg_core import train
from rpg_core.models import create_model


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


def _sync(device: str) -> None:
    if device.startswith("cuda"):
        torch.cuda.synchronize()


def _autocast(device: str, amp: bool) -> contextlib.AbstractContextManager[Any]:
    if not amp:
        return contextlib.nullcontext()
    return torch.autocast("cuda" if device.startswith("cuda") else "cpu", dtype=torch.bfloat16)


def direct_run(
    args: argparse.Namespace, rpg: bool, amp: bool, data: tuple[torch.Tensor, torch.Tensor]
) -> tuple[list[float], int]:
    """Seconds of each epoch after the first, and the run's peak allocated bytes."""
    dev, cuda = args.device, args.device.startswith("cuda")
    model_spec: dict[str, Any] = {"model": {"arch": "resnet18", "width": args.width}}
    if rpg:
        model_spec["rpg"] = {"ring_size": args.ring}
    torch.manual_seed(0)
    model: nn.Module = create_model(model_spec).to(dev).train()
    if cuda:
        model = model.to(memory_format=torch.channels_last)
        torch.cuda.reset_peak_memory_stats()
    opt = torch.optim.SGD(model.parameters(), lr=0.05, momentum=0.9, weight_decay=5e-4)
    x_all, y_all = data
    n = len(y_all)
    times = []
    for epoch in range(args.epochs):
        _sync(dev)
        t0 = time.perf_counter()
        perm = torch.randperm(n, device=dev)
        for i in range(0, n - args.batch + 1, args.batch):
            idx = perm[i : i + args.batch]
            xb = x_all[idx].float().div_(127.5).sub_(1.0)
            if cuda:
                xb = xb.contiguous(memory_format=torch.channels_last)
            with _autocast(dev, amp):
                loss = nn.functional.cross_entropy(model(xb).float(), y_all[idx])
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
        _sync(dev)
        if epoch > 0:
            times.append(time.perf_counter() - t0)
    peak = torch.cuda.max_memory_allocated() if cuda else 0
    return times, peak


def direct(args: argparse.Namespace) -> dict[str, float]:
    g = torch.Generator().manual_seed(0)
    data = (
        torch.randint(0, 256, (args.images, 3, 32, 32), dtype=torch.uint8, generator=g).to(
            args.device
        ),
        torch.randint(0, 10, (args.images,), generator=g).to(args.device),
    )
    print(
        f"{'amp':<5}{'variant':<8}{'s/epoch':>10}{'images/s':>12}{'min-max s':>18}{'peak MiB':>10}"
    )
    ratios: dict[str, float] = {}
    for amp in args.amp:
        epoch_s: dict[str, list[float]] = {"plain": [], "rpg": []}
        peaks: dict[str, int] = {"plain": 0, "rpg": 0}
        for _ in range(args.rounds):
            for variant in ("plain", "rpg"):
                ts, peak = direct_run(args, variant == "rpg", amp == "on", data)
                epoch_s[variant] += ts
                peaks[variant] = max(peaks[variant], peak)
        for k in ("plain", "rpg"):
            ts = epoch_s[k]
            med = statistics.median(ts)
            images = (args.images // args.batch) * args.batch
            print(
                f"{amp:<5}{k:<8}{med:>10.3f}{images / med:>12.0f}{min(ts):>9.3f}-{max(ts):.3f}"
                f"{peaks[k] / 2**20:>10.0f}"
            )
        ratios[amp] = statistics.median(epoch_s["rpg"]) / statistics.median(epoch_s["plain"])
        print(f"RPG/plain epoch time, amp {amp}: {ratios[amp]:.3f}")
    return ratios


def engine(args: argparse.Namespace) -> float:
    epoch_s: dict[str, list[float]] = {"plain": [], "rpg": []}
    for _ in range(args.rounds):
        for variant in ("plain", "rpg"):
            r = train(spec(args, variant == "rpg"), step_interval_s=1e9)
            epoch_s[variant] += [h["seconds"] for h in r.history[1:]]
    plain, rpg = (statistics.median(epoch_s[k]) for k in ("plain", "rpg"))
    print(f"engine (rpg_core.train): {'variant':<10}{'s/epoch':>10}{'images/s':>12}")
    for k, med in (("plain", plain), ("rpg", rpg)):
        print(f"engine (rpg_core.train): {k:<10}{med:>10.3f}{args.images / med:>12.0f}")
    print(f"RPG/plain epoch time: {rpg / plain:.3f} (engine)")
    return rpg / plain


def main(argv: list[str] | None = None) -> dict[str, float]:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--images", type=int, default=50_000)
    p.add_argument("--epochs", type=int, default=3)
    p.add_argument("--rounds", type=int, default=2)
    p.add_argument("--batch", type=int, default=256)
    p.add_argument("--width", type=float, default=1.0)
    p.add_argument("--ring", type=int, default=45_000)
    p.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    p.add_argument("--amp", default="on,off", help="comma-separated: on (bf16 autocast), off")
    p.add_argument("--engine", action="store_true", help="also time rpg_core.train (amp on)")
    args = p.parse_args(argv)
    args.amp = [a.strip() for a in args.amp.split(",") if a.strip()]
    if not set(args.amp) <= {"on", "off"}:
        p.error("--amp takes on, off or on,off")
    logging.basicConfig(level=logging.WARNING)
    if args.epochs < 2:
        p.error("--epochs must be at least 2 (the first epoch is warm-up)")
    if args.device.startswith("cuda"):
        torch.backends.cudnn.benchmark = True
    name = torch.cuda.get_device_name() if args.device.startswith("cuda") else "cpu"
    print(
        f"training timing on {name}, torch {torch.__version__}, {time.strftime('%Y-%m-%d %H:%M')}"
        f", load average {os.getloadavg()[0]:.2f}; {args.images} images 3x32x32, batch "
        f"{args.batch}, width {args.width}, ring {args.ring}, {args.epochs} epochs x "
        f"{args.rounds} rounds, channels_last on CUDA"
    )
    ratios = direct(args)
    out = {f"amp_{k}": v for k, v in ratios.items()}
    if args.engine:
        out["engine"] = engine(args)
    print(
        "SUMMARY gpu-epoch rpg/plain: "
        + ", ".join(f"amp {k} {v:.3f}" for k, v in ratios.items())
        + (f", engine {out['engine']:.3f}" if args.engine else "")
        + " (target <= 1.02)"
    )
    return out


if __name__ == "__main__":
    main()
