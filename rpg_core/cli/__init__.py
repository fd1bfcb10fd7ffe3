"""The ``rpg`` command line. Each sub-command lives in its own module with ``register(sub)``.

Library commands live in this package (``rpg_core.cli.<name>``); the service commands (submit, status, serve, ...)
are added from ``api.cli`` when the service stack is installed (imported by name, so rpg_core
itself never depends on it).
"""

from __future__ import annotations

import argparse
import importlib
import logging
import sys
from collections.abc import Sequence

from ..exceptions import RPGError

COMMAND_MODULES = [
    "rpg_core.cli.models",
    "rpg_core.cli.train",
    "rpg_core.cli.compact",
    "rpg_core.cli.analysis",
]
OPTIONAL_COMMAND_MODULES = ["api.cli", "worker.cli"]
SERVICE_PACKAGES = {
    "api",
    "worker",
    "fastapi",
    "sqlalchemy",
    "alembic",
    "celery",
    "kombu",
    "redis",
    "uvicorn",
    "httpx",
    "pydantic_settings",
    "psycopg",
    "plotly",
    "starlette",
}


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="rpg", description="RPG Studio command line")
    parser.add_argument("-v", "--verbose", action="store_true", help="log at INFO level")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for name in COMMAND_MODULES:
        importlib.import_module(name).register(sub)
    for name in OPTIONAL_COMMAND_MODULES:
        try:
            module = importlib.import_module(name)
        except ModuleNotFoundError as err:
            # Only a missing service stack hides these commands; a bug in them still raises.
            if err.name is None or err.name.split(".")[0] not in SERVICE_PACKAGES:
                raise
            logging.getLogger(__name__).debug("%s unavailable: %s", name, err)
            continue
        module.register(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    logging.basicConfig(
        level=logging.INFO if args.verbose else logging.WARNING,
        format="%(levelname)s %(name)s: %(message)s",
    )
    try:
        return int(args.func(args) or 0)
    except RPGError as err:
        print(f"rpg {args.command}: error: {err}", file=sys.stderr)
        return 2
    except BrokenPipeError:  # `rpg inspect x.rpg | head`
        sys.stderr.close()
        return 0
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
