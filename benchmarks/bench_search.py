"""A 16-trial learning-rate search of one ResNet18-RPG, pruner on against pruner off (issue 25).

Each study (TPE over ``train.lr`` in [0.003, 0.3], log scale) runs its trials one after another
in this process, on the same parts as the service: the sampler and pruner built from the search
section (``api.search_optuna``), each trial's spec (``rpg_core.spec.search.trial_spec``) and the
worker's reporter of intermediate values (``rpg_core.training.intermediate``). Per study seed,
the study is run with the pruner off and on; the table gives the best objective (the final
validation accuracy of the best trial) and the training epochs spent in all.

``--pruner`` may be given several times, each ``NAME`` or ``NAME:key=value,key=value`` with the
search section's pruner settings (``successive-halving:min_resource=2,reduction_factor=3``,
``median:n_startup_trials=4,n_warmup_steps=2``, ``hyperband:min_resource=1``); per seed the
pruner-off study runs once and each pruner's study beside it. Unset settings: ``n_startup_trials
4``, ``n_warmup_steps 0`` and the search section's defaults for the rest.

Usage: python benchmarks/bench_search.py [--trials 16] [--epochs 4] [--seeds 0,1]
       [--pruner successive-halving ...] [--dataset fashion-mnist] [--train 768]
       [--val 256] [--image-size 14] [--width 0.25] [--ring 2000] [--json out.json]
"""

from __future__ import annotations

import argparse
import json
import logging
import statistics
import sys
import time
from typing import Any

from api.search_optuna import direction, distributions, make_pruner, make_sampler
from rpg_core.spec.search import SearchSpec, objective_of, trial_spec
from rpg_core.training.intermediate import IntermediateReporter

log = logging.getLogger("bench_search")


def base_spec(args: argparse.Namespace) -> dict[str, Any]:
    data: dict[str, Any] = {"dataset": args.dataset, "image_size": args.image_size}
    if args.dataset == "synthetic":
        data.update(num_train=args.train, num_val=args.val, num_classes=4)
    else:
        data.update(train_subset=args.train, val_subset=args.val)
    return {
        "name": "bench-search",
        "model": {"arch": "resnet18", "width": args.width},
        "rpg": {"ring_size": args.ring},
        "data": data,
        "train": {"epochs": args.epochs, "batch_size": 64},
    }


def pruner_settings(text: str) -> dict[str, Any]:
    """``NAME[:key=value,...]`` -> the search section's pruner (integer settings)."""
    name, _, rest = text.partition(":")
    settings: dict[str, Any] = {"name": name, "n_startup_trials": 4, "n_warmup_steps": 0}
    for item in filter(None, rest.split(",")):
        key, sep, value = item.partition("=")
        if not sep:
            raise SystemExit(f"--pruner {text!r}: write key=value, not {item!r}")
        settings[key.strip()] = int(value)
    return settings


def run_study(args: argparse.Namespace, seed: int, pruner: str) -> dict[str, Any]:
    """One study: its best objective, epochs spent, trials pruned and seconds."""
    import optuna

    from rpg_core import train

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    search = SearchSpec.model_validate(
        {
            "sampler": "tpe",
            "n_trials": args.trials,
            "space": {"train.lr": {"log": [0.003, 0.3]}},
            "pruner": pruner_settings(pruner),
            "seed": seed,
        }
    )
    base = base_spec(args)
    metric, higher = objective_of(search, None)
    study = optuna.create_study(
        # a fixed name: Hyperband puts a trial in a bracket by crc32(study name, trial number),
        # so an unnamed study (a random name) would split its trials differently on every run
        study_name=f"bench-search-s{seed}-{pruner}",
        direction=direction(higher),
        sampler=make_sampler(search),
        pruner=make_pruner(search, args.epochs),
    )
    epochs = pruned = 0
    t0 = time.perf_counter()
    for _ in range(args.trials):
        trial = study.ask(distributions(search))
        spec = trial_spec(base, trial.params, trial.number)
        spec["train"]["seed"] = seed

        def report(step: int, value: float, trial: Any = trial) -> bool:
            trial.report(value, step)
            return bool(trial.should_prune())

        reporter = IntermediateReporter(metric, report)
        result = train(spec, callbacks=[reporter])
        epochs += result.epochs_run
        if reporter.pruned and result.stopped:
            pruned += 1
            study.tell(trial, state=optuna.trial.TrialState.PRUNED)
        else:
            study.tell(trial, float(result.metrics[metric]))
        log.info(
            "seed %d %s trial %d lr %.4g: %s after %d epochs",
            seed,
            pruner,
            trial.number,
            trial.params["train.lr"],
            "pruned" if reporter.pruned else result.metrics.get(metric),
            result.epochs_run,
        )
    return {
        "seed": seed,
        "pruner": pruner,
        "best": float(study.best_value),
        "best_lr": float(study.best_params["train.lr"]),
        "epochs": epochs,
        "pruned": pruned,
        "seconds": time.perf_counter() - t0,
    }


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--trials", type=int, default=16)
    ap.add_argument("--epochs", type=int, default=4)
    ap.add_argument("--seeds", default="0,1")
    ap.add_argument("--pruner", action="append", default=None, help="repeatable; NAME[:k=v,...]")
    ap.add_argument("--dataset", default="fashion-mnist")
    ap.add_argument("--train", type=int, default=768)
    ap.add_argument("--val", type=int, default=256)
    ap.add_argument("--image-size", type=int, default=14)
    ap.add_argument("--width", type=float, default=0.25)
    ap.add_argument("--ring", type=int, default=2000)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--json", default=None)
    args = ap.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    import torch

    torch.set_num_threads(args.threads)
    pruners = args.pruner or ["successive-halving"]
    for p in pruners:
        pruner_settings(p)  # refuse a malformed one before any training
    rows = []
    for seed in [int(s) for s in args.seeds.split(",")]:
        for pruner in ("none", *pruners):  # side by side, per seed
            rows.append(run_study(args, seed, pruner))
    off = [r for r in rows if r["pruner"] == "none"]
    epochs_off = sum(r["epochs"] for r in off)
    summary: dict[str, Any] = {"best_off": [r["best"] for r in off], "epochs_off": epochs_off}
    summary["pruners"] = {}
    for p in pruners:
        on = [r for r in rows if r["pruner"] == p]
        epochs_on = sum(r["epochs"] for r in on)
        summary["pruners"][p] = {
            "best_on": [r["best"] for r in on],
            "epochs_on": epochs_on,
            "epoch_ratio": epochs_on / max(epochs_off, 1),
        }
    print("| seed | pruner | best acc | best lr | epochs | pruned | s |")
    print("|---|---|---|---|---|---|---|")
    for r in rows:
        print(
            f"| {r['seed']} | {r['pruner']} | {r['best']:.4f} | {r['best_lr']:.4g} | "
            f"{r['epochs']} | {r['pruned']} | {r['seconds']:.0f} |"
        )
    med = statistics.median
    best_off = summary["best_off"]
    print(f"pruner off: best median {med(best_off):.4f} ({min(best_off):.4f}-{max(best_off):.4f})")
    for p, on in summary["pruners"].items():
        print(
            f"{p}: best median {med(on['best_on']):.4f} ({min(on['best_on']):.4f}-"
            f"{max(on['best_on']):.4f}); epochs on/off {on['epoch_ratio']:.2f}"
        )
    if args.json:
        with open(args.json, "w", encoding="utf-8") as f:
            json.dump({"rows": rows, "summary": summary, "args": vars(args)}, f, indent=1)
    return 0


if __name__ == "__main__":
    sys.exit(main())
