"""The pose loss: heatmap MSE (Newell et al.) against the spatial cross-entropy rpg_core uses.

Trains the same stacked hourglass (width 0.5, 2 sub-networks, sharing rpg) on synthetic-pose
(2,000 training figures at 64 px, batch 16) for ``--steps`` steps with each loss, side by side
in one process, and prints the validation PCKh@0.5 every ``--every`` steps:

- ``ce-sgd``: rpg_core's loss (rpg_core.tasks.PoseTask.loss), SGD lr 0.05, momentum 0.9 (what
  the default recipe gives this data);
- ``mse-sgd``: the mean squared error on the heatmaps, the same SGD;
- ``mse-adam``: the mean squared error, Adam lr 2e-3 (Newell used RMSprop, an adaptive method).

Usage: python benchmarks/bench_pose_loss.py [--steps 800] [--every 200] [--seeds 0 1]
"""

from __future__ import annotations

import argparse
import time
from typing import Any

import torch

from rpg_core.data import BatchLoader, load_datasets
from rpg_core.models import create_model
from rpg_core.tasks import PoseTask, heatmap_targets
from rpg_core.training.loop import evaluate_batches

SPEC = {"task": "pose", "model": {"width": 0.5, "stacks": 2, "sharing": "rpg"}}


def mse_loss(outputs: list[dict[str, torch.Tensor]], t: dict[str, torch.Tensor]) -> torch.Tensor:
    """Newell's loss: the mean squared heatmap error over visible joints, summed over stacks."""
    _, _, hh, ww = outputs[0]["heatmaps"].shape
    target = heatmap_targets(t["joints"], hh, ww)
    weight = (t["visible"] > 0.5).float()
    denom = weight.sum().clamp(min=1.0) * hh * ww
    return sum(
        (((o["heatmaps"] - target) ** 2).sum((2, 3)) * weight).sum() / denom for o in outputs
    )  # type: ignore[return-value]


def run(case: str, seed: int, steps: int, every: int, data: Any) -> list[float]:
    torch.manual_seed(seed)
    model = create_model(SPEC, num_classes=16)
    task = PoseTask()
    if case.endswith("adam"):
        opt: torch.optim.Optimizer = torch.optim.Adam(model.parameters(), lr=2e-3)
    else:
        opt = torch.optim.SGD(model.parameters(), lr=0.05, momentum=0.9, weight_decay=5e-4)
    train, val = BatchLoader(data, "train", 16, seed=seed), BatchLoader(data, "val", 64)
    scores, step, epoch = [], 0, 0
    while step < steps:
        model.train()
        for x, y in train.epoch(epoch):
            out = model(x)
            loss = task.loss(out, y) if case.startswith("ce") else mse_loss(out, y)
            opt.zero_grad()
            loss.backward()
            opt.step()
            step += 1
            if step % every == 0:
                scores.append(evaluate_batches(model, val.epoch(0), task=task)["val_pckh"])
                model.train()
            if step >= steps:
                break
        epoch += 1
    return scores


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--steps", type=int, default=800)
    ap.add_argument("--every", type=int, default=200)
    ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1])
    args = ap.parse_args()
    data = load_datasets({"dataset": "synthetic-pose"})
    cases = ["ce-sgd", "mse-sgd", "mse-adam"]
    marks = list(range(args.every, args.steps + 1, args.every))
    print(f"| loss | seed | {' | '.join(f'PCKh@{s} steps' for s in marks)} | seconds |")
    print("|---|---|" + "---|" * len(marks) + "---|")
    final: dict[str, list[float]] = {c: [] for c in cases}
    for seed in args.seeds:
        for case in cases:  # interleaved: a busy machine slows every case alike
            t0 = time.perf_counter()
            scores = run(case, seed, args.steps, args.every, data)
            final[case].append(scores[-1])
            cells = " | ".join(f"{100 * s:.1f}%" for s in scores)
            print(f"| {case} | {seed} | {cells} | {time.perf_counter() - t0:.0f} |", flush=True)
    chance = final["mse-sgd"]
    for case in cases:
        mean = sum(final[case]) / len(final[case])
        ratio = mean / max(sum(chance) / len(chance), 1e-9)
        print(f"{case}: final PCKh mean {100 * mean:.1f}% ({ratio:.1f}x mse-sgd's)")


if __name__ == "__main__":
    main()
