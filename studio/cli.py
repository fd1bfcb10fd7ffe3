"""The ``rpg`` commands that run the composed app: ``api`` (the web app alone) and ``serve`` (the
web app with a reconciler and, in embedded mode, a worker). Registered through the ``rpg.commands``
entry points (pyproject.toml)."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any


def register(sub: Any) -> None:
    p = sub.add_parser(
        "api", help="run the REST API and the dashboard (uvicorn) on the configured database"
    )
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, default=8000)
    p.set_defaults(func=run_api)

    p = sub.add_parser(
        "serve", help="run the API and a worker here (embedded without RPG_BROKER_URL)"
    )
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, default=8000)
    p.add_argument(
        "--home",
        "--workdir",
        dest="workdir",
        default=None,
        help="embedded mode: the home folder of the database, broker and artifacts "
        "(default: $RPG_HOME, else .rpg-studio)",
    )
    p.add_argument("--gpus", default=None, help="the local worker's GPUs (as for rpg worker)")
    p.add_argument(
        "--worker",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="start a local worker (default: in embedded mode only)",
    )
    p.set_defaults(func=run_serve)


def run_api(args: argparse.Namespace) -> int:
    import uvicorn

    from .app import create_app

    uvicorn.run(create_app(), host=args.host, port=args.port, log_level="info")
    return 0


def run_serve(args: argparse.Namespace) -> int:
    from worker.cli import log_setup
    from worker.serve import ServeConfig, serve

    from .app import create_app

    log_setup()
    cfg = ServeConfig(
        host=args.host,
        port=args.port,
        workdir=Path(args.workdir) if args.workdir else None,
        worker=args.worker,
        gpus=args.gpus,
    )
    return serve(cfg, create_app)
