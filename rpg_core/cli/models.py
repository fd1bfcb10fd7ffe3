"""``rpg models``: the registered architectures and their parameter counts."""

from __future__ import annotations

import argparse
from typing import Any

from .output import to_json


def register(sub: Any) -> None:
    p = sub.add_parser("models", help="list the registered models with their parameter counts")
    p.add_argument("--variant", choices=["cifar", "imagenet"], default="cifar")
    p.add_argument("--num-classes", type=int, default=10)
    p.add_argument("--json", action="store_true", help="print JSON")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from ..catalog.tasks import task_of_arch
    from ..models import create_model, list_models
    from ..rpg.params import count_params
    from ..spec import ModelSpec

    rows = []
    for name in list_models():
        model = create_model(
            ModelSpec(arch=name, variant=args.variant, num_classes=args.num_classes)
        )
        c = count_params(model)
        task = task_of_arch(name)
        rows.append({"model": name, "task": task, "variant": args.variant, **c.as_dict()})
    if args.json:
        print(to_json(rows))
        return 0
    print(
        f"{'model':<12}{'task':<16}{'variant':<10}{'total':>12}{'backbone':>12}{'stem':>8}{'bn':>8}{'head':>9}"
    )
    for r in rows:
        print(
            f"{r['model']:<12}{r['task']:<16}{r['variant']:<10}{r['total']:>12,}{r['backbone']:>12,}"
            f"{r['conv'] - (0 if r['ring'] else r['backbone']):>8,}{r['norm']:>8,}{r['head']:>9,}"
        )
    return 0
