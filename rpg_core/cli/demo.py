"""``python -m rpg_core.cli.demo``: a short RPG training on real data with the library alone
(no service; ``make demo`` runs the full service demo, ``worker.demo``).

A CIFAR-form ResNet18 at width 0.25 whose conv kernels are all generated from one ring of 5% of
their weights learns scikit-learn's handwritten digits (bundled, offline) in a few epochs. It
prints the validation accuracy and the ring's size against the plain network's parameters.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
from collections.abc import Sequence
from typing import Any

import torch

from ..engine import TrainResult, train
from ..models import create_model
from ..params import count_params
from ..spec import ExperimentSpec, parse_spec
from .train import ProgressLine

DEMO_SPEC: dict[str, Any] = {
    "name": "demo-digits-r18-rpg",
    "model": {"arch": "resnet18", "variant": "cifar", "width": 0.25},
    "rpg": {"ring_size": 0.05, "scope": "global", "permute": True, "reflect": True, "seed": 0},
    "data": {"dataset": "digits", "image_size": 16},
    "train": {"epochs": 4},  # the default (short) recipe
}


def report(spec: ExperimentSpec, result: TrainResult) -> list[str]:
    """What the run learned, as lines of text."""
    plain = count_params(create_model(spec.model, num_classes=10, in_channels=1))
    p = result.params
    acc = result.final_val_acc or 0.0
    return [
        f"validation accuracy: {100 * acc:.1f}% on {spec.data.dataset} "
        f"(best {100 * (result.best_val_acc or 0):.1f}%, train-val gap "
        f"{100 * (result.train_val_gap or 0):+.1f} points)",
        f"ring: {p['ring']:,} learned values generate {p['generated']:,} conv weights",
        f"backbone parameters: RPG {p['backbone']:,} vs plain {plain.backbone:,} "
        f"({plain.backbone / max(p['backbone'], 1):.0f}x fewer)",
        f"all learned parameters: RPG {p['total']:,} vs plain {plain.total:,}",
        f"{result.epochs_run} epochs in {result.wall_time_s:.0f}s "
        f"({result.images_per_s:.0f} images/s on {result.device})",
    ]


def _free_cores() -> int:
    """CPU cores not busy right now: OpenMP threads on busy cores are many times slower."""
    cores = os.cpu_count() or 1
    try:
        idle = cores - os.getloadavg()[0]
    except OSError:
        idle = cores
    return max(1, min(cores, round(idle)))


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m rpg_core.cli.demo", description=__doc__)
    parser.add_argument("--epochs", type=int, default=DEMO_SPEC["train"]["epochs"])
    parser.add_argument("--threads", type=int, help="torch CPU threads (default: idle cores)")
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads or _free_cores())
    spec = parse_spec({**DEMO_SPEC, "train": {**DEMO_SPEC["train"], "epochs": args.epochs}})
    print(f"RPG demo: {spec.name}: ResNet18-RPG (width {spec.model.width}) on digits")
    with tempfile.TemporaryDirectory(prefix="rpg-demo-") as ckpt:
        result = train(spec, callbacks=[ProgressLine()], checkpoint_dir=ckpt)
    for line in report(spec, result):
        print(line)
    return 0


if __name__ == "__main__":
    sys.exit(main())
