"""Analysis on digits (issue 5): power law, feature similarity and pruning, in one short run.

ResNet18-RPG (width 0.25) on scikit-learn's digits (8x8, zero-padded to 16x16), trained for a
few epochs at several ring sizes plus the plain network, then:
1. the power law of error against ring size (``fit_power_law``),
2. the feature similarity after ``layer3`` of each network (paper Fig. 7),
3. 30% structured L1 pruning of the largest RPG network and one epoch of fine-tuning (Table 7).

Usage: python benchmarks/bench_analysis.py [--epochs 2] [--rings 50,200,1000,5000,20000]
"""

from __future__ import annotations

import argparse
import platform
import time
from collections.abc import Iterator

import torch
from sklearn.datasets import load_digits
from torch import nn

from rpg_core.analysis import feature_similarity, fit_power_law
from rpg_core.models import create_model
from rpg_core.rpg.params import count_params
from rpg_core.training.pruning import PruneSpec, evaluate, finetune, run_prune


def digits() -> tuple[torch.Tensor, ...]:
    data = load_digits()
    x = torch.tensor(data.images, dtype=torch.float32).unsqueeze(1) / 16.0
    x = nn.functional.pad((x - x.mean()) / x.std(), (4, 4, 4, 4), value=float(-x.mean() / x.std()))
    y = torch.tensor(data.target)
    perm = torch.randperm(len(y), generator=torch.Generator().manual_seed(0))
    x, y = x[perm], y[perm]
    return x[397:], y[397:], x[:397], y[:397]


class Epochs:
    def __init__(self, x: torch.Tensor, y: torch.Tensor) -> None:
        self.x, self.y, self.n = x, y, 0

    def __iter__(self) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        self.n += 1
        perm = torch.randperm(len(self.y), generator=torch.Generator().manual_seed(self.n))
        return ((self.x[i], self.y[i]) for i in perm.split(64))


def model_for(ring: int | None) -> nn.Module:
    torch.manual_seed(0)
    spec = {
        "model": {"arch": "resnet18", "width": 0.25, "in_channels": 1, "num_classes": 10},
        "rpg": None if ring is None else {"ring_size": ring},
    }
    return create_model(spec)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--epochs", type=int, default=2)
    ap.add_argument("--rings", default="50,200,1000,5000,20000")
    args = ap.parse_args()
    torch.set_num_threads(1)
    xt, yt, xv, yv = digits()
    val = [(xv, yv)]
    start = time.time()
    rows = []
    models = {}
    for ring in [*map(int, args.rings.split(",")), None]:
        model = model_for(ring)
        finetune(model, Epochs(xt, yt), epochs=args.epochs, lr=0.05)
        sim = feature_similarity(model, xv, "layer3", max_images=256)
        params = count_params(model).backbone
        rows.append((ring, params, evaluate(model, val), sim.mean, sim.fractions[25:]))
        models[ring] = model
    print(f"# {platform.processor() or platform.machine()}, torch {torch.__version__}, 1 thread")
    print(f"# epochs {args.epochs}, {time.time() - start:.0f} s of training and analysis\n")
    print(
        "| network | backbone params | val acc | mean abs corr (layer3) | pairs with abs corr >= 0.5 |"
    )
    print("|---|---:|---:|---:|---:|")
    for ring, params, acc, mean, top in rows:
        name = f"RPG ring {ring}" if ring else "plain"
        print(f"| {name} | {params:,} | {acc:.3f} | {mean:.3f} | {sum(top):.3f} |")
    rpg = [r for r in rows if r[0]]
    fit = fit_power_law([r[1] for r in rpg], [r[2] for r in rpg], bootstrap=1000)
    lo, hi = fit.b_ci or (float("nan"), float("nan"))
    print(
        f"\npower law: error = {fit.a:.4g} * P^(-{fit.b:.3f}), 95% CI of b [{lo:.3f}, {hi:.3f}], "
        f"r2 {fit.r2:.3f}, better form: {fit.best}"
    )
    largest = max(r[0] for r in rpg)
    _, job = run_prune(
        models[largest],
        PruneSpec(source=1, fraction=0.3),
        train_loader=Epochs(xt, yt),
        finetune_epochs=1,
        val_loader=val,
        input_size=(1, 16, 16),
    )
    rep = job["report"]
    print(
        f"\npruning RPG ring {largest} by 30%: backbone {rep['backbone_before']:,} -> "
        f"{rep['backbone_after']:,} ({rep['fraction_removed']:.3f} removed), MACs x{rep['macs_ratio']:.3f}, "
        f"params x{rep['params_ratio']:.3f}; accuracy {job['accuracy_before']:.3f} -> "
        f"{job['accuracy_pruned']:.3f} (pruned) -> {job['accuracy_after']:.3f} (1 epoch fine-tuning)"
    )


if __name__ == "__main__":
    main()
