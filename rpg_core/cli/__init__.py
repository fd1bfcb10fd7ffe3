"""The ``rpg`` command line. Each sub-command lives in its own module with ``register(sub)``.

Library commands live in this package (``rpg_core.cli.<name>``). Other packages add theirs through
the ``rpg.commands`` entry points of their distribution (``[project.entry-points."rpg.commands"]``
in pyproject.toml: the service's submit, status, worker, serve, ...), so rpg_core names none of
them. Commands whose packages are not installed (no service stack) are left out.
"""

from __future__ import annotations

import argparse
import importlib
import logging
import sys
import tomllib
from collections.abc import Sequence
from importlib.metadata import EntryPoint, entry_points
from pathlib import Path

from ..exceptions import RPGError

log = logging.getLogger(__name__)
COMMAND_MODULES = [
    "rpg_core.cli.models",
    "rpg_core.cli.tasks",
    "rpg_core.cli.methods",
    "rpg_core.cli.train",
    "rpg_core.cli.compact",
    "rpg_core.cli.analysis",
]
ENTRY_POINT_GROUP = "rpg.commands"
# a command whose module needs one of these (missing: no service stack) is left out
SERVICE_PACKAGES = {
    "api",
    "worker",
    "frontend",
    "studio",
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


def _source_tree_entry_points(pyproject: Path) -> list[EntryPoint]:
    """The group as the checkout's pyproject.toml declares it (an editable install whose
    metadata predates the group: ``pip install -e .`` again registers it)."""
    try:
        table = tomllib.loads(pyproject.read_text(encoding="utf-8"))["project"]["entry-points"]
    except (OSError, KeyError, tomllib.TOMLDecodeError):
        return []
    return [
        EntryPoint(name, value, ENTRY_POINT_GROUP)
        for name, value in table.get(ENTRY_POINT_GROUP, {}).items()
    ]


def command_entry_points(pyproject: Path | None = None) -> list[EntryPoint]:
    """The ``rpg.commands`` entry points, by name (installed metadata, else the source tree)."""
    found = list(entry_points(group=ENTRY_POINT_GROUP))
    if not found:
        source = pyproject or Path(__file__).resolve().parents[2] / "pyproject.toml"
        found = _source_tree_entry_points(source)
        if found:
            log.debug("%s read from %s (reinstall to register them)", ENTRY_POINT_GROUP, source)
    return sorted(found, key=lambda ep: ep.name)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="rpg", description="RPG Studio command line")
    parser.add_argument("-v", "--verbose", action="store_true", help="log at INFO level")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for name in COMMAND_MODULES:
        importlib.import_module(name).register(sub)
    for ep in command_entry_points():
        try:
            register = ep.load()
        except ModuleNotFoundError as err:
            # Only a missing service stack hides these commands; a bug in them still raises.
            missing = (err.name or "").split(".")[0]
            if missing not in SERVICE_PACKAGES:
                raise
            if missing == ep.value.split(".")[0]:  # its own package: an install that predates it
                log.warning(
                    "rpg %s commands unavailable (%s): reinstall, pip install -e .", ep.name, err
                )
            else:
                log.debug("rpg %s commands unavailable: %s", ep.name, err)
            continue
        register(sub)
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
    except MemoryError:  # never a traceback: say what ran out and what to do
        print(
            f"rpg {args.command}: error: out of memory; give smaller inputs (images, batch, "
            "model) or run it where more memory is free",
            file=sys.stderr,
        )
        return 2
    except BrokenPipeError:  # `rpg inspect x.rpg | head`
        sys.stderr.close()
        return 0
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
