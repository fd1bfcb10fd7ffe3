"""``rpg methods``: the ways to shrink a network to a parameter budget (``method.name``)."""

from __future__ import annotations

import argparse
from typing import Any

from .output import to_json


def register(sub: Any) -> None:
    p = sub.add_parser("methods", help="list the methods a spec's method section can name")
    p.add_argument("--json", action="store_true", help="print JSON")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from ..catalog.methods import METHODS

    if args.json:
        print(to_json([m.as_dict() for m in METHODS.values()]))
        return 0
    for m in METHODS.values():
        print(f"{m.name}: {m.description}")
        print(f"  budget:    {m.budget} (at least {m.min_budget})")
        print(f"  reference: {m.reference}")
    return 0
