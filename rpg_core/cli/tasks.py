"""``rpg tasks``: the registered tasks, their datasets, architectures, sharing and metrics."""

from __future__ import annotations

import argparse
from typing import Any

from .output import to_json


def register(sub: Any) -> None:
    p = sub.add_parser("tasks", help="list the tasks a spec can name, with their metrics")
    p.add_argument("--json", action="store_true", help="print JSON")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from ..catalog.archs import list_models
    from ..catalog.tasks import TASKS, task_of_arch

    if args.json:
        print(to_json([t.as_dict() for t in TASKS.values()]))
        return 0
    for t in TASKS.values():
        metrics = ", ".join(f"{m.key} ({m.label}, {m.direction} is better)" for m in t.metrics)
        print(f"{t.name}: {t.description}")
        print(f"  datasets: {t.datasets_help}")
        archs = [a for a in list_models() if task_of_arch(a) == t.name]
        print(f"  archs:    {', '.join(archs)}")
        if t.sharing:
            print(f"  sharing:  {' | '.join(t.sharing)} (default {t.default_sharing})")
        print(f"  metrics:  {metrics}; primary: {', '.join(t.primary)}")
    return 0
