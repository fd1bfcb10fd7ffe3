"""Service commands of ``rpg``: submit, submit-sweep, status, download, token create. (``rpg api``,
which serves the composed app, is ``studio.cli``'s.)"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path
from typing import Any


def register(sub: Any) -> None:
    def remote(p: argparse.ArgumentParser) -> None:
        p.add_argument(
            "--url",
            help="API URL (default: $RPG_API_URL, else the server `rpg serve` recorded in "
            "$RPG_HOME/server.json, else http://127.0.0.1:8000)",
        )
        p.add_argument("--token", help="API token (default: $RPG_API_TOKEN)")

    p = sub.add_parser("submit", help="queue an experiment spec (YAML/JSON) on the API server")
    p.add_argument("spec", help="spec file")
    remote(p)
    p.set_defaults(func=run_submit)

    p = sub.add_parser("submit-sweep", help="queue every experiment of a sweep file on the server")
    p.add_argument("file", help="sweep file (YAML/JSON)")
    remote(p)
    p.set_defaults(func=run_submit_sweep)

    local_sweep = sub.choices.get("sweep")  # `rpg sweep FILE` (rpg_core) gains --remote
    if local_sweep is not None:
        local_sweep.add_argument(
            "--remote", action="store_true", help="queue it on the API server instead"
        )
        remote(local_sweep)
        run_local = local_sweep.get_default("func")
        local_sweep.set_defaults(func=lambda a: run_submit_sweep(a) if a.remote else run_local(a))

    p = sub.add_parser("status", help="one experiment's status, or the latest experiments")
    p.add_argument("id", nargs="?", type=int, help="experiment id (omit: list)")
    p.add_argument("--limit", type=int, default=20)
    p.add_argument("--json", action="store_true", help="print JSON")
    remote(p)
    p.set_defaults(func=run_status)

    p = sub.add_parser("download", help="download an experiment's .rpg model")
    p.add_argument("id", type=int, help="experiment id")
    p.add_argument("-o", "--output", help="file to write (default: experiment-ID.rpg)")
    remote(p)
    p.set_defaults(func=run_download)

    p = sub.add_parser(
        "token",
        help="manage API tokens (in the database of $RPG_HOME, or of RPG_DATABASE_URL)",
    )
    tsub = p.add_subparsers(dest="token_command", required=True, metavar="ACTION")
    c = tsub.add_parser("create", help="create a token and print it (shown once)")
    c.add_argument("name", help="a label for the token, e.g. the user or machine")
    c.set_defaults(func=run_token_create)


def _client(args: argparse.Namespace) -> Any:
    from .client import Client, server_url

    url, source = server_url(args.url)
    token = args.token or os.environ.get("RPG_API_TOKEN")
    print(
        f"rpg {args.command}: server {url} ({source}); "
        + ("token from " + ("--token" if args.token else "RPG_API_TOKEN") if token else "no token"),
        file=sys.stderr,
    )
    return Client(url, token, url_source=source)


def run_submit(args: argparse.Namespace) -> int:
    from rpg_core.spec import load_spec

    spec = load_spec(args.spec)
    with _client(args) as c:
        out = c.submit(spec.model_dump(mode="json"))
    print(f"experiment {out['id']} {out['status']}")
    return 0


def run_submit_sweep(args: argparse.Namespace) -> int:
    from rpg_core.spec.sweep import expand, expand_search, load_sweep

    sweep = load_sweep(args.file)
    # fail here, with the field named, before anything is sent
    expand_search(sweep) if sweep.search is not None else expand(sweep)
    with _client(args) as c:
        out = c.submit_sweep(sweep.model_dump(mode="json"))
    studies = out.get("study_ids") or []
    n = len(studies)
    more = (
        f", {n} stud{'y' if n == 1 else 'ies'} (search: trials follow as they finish)" if n else ""
    )
    print(f"sweep {out['id']} {out['name']}: {len(out['experiment_ids'])} experiments queued{more}")
    return 0


def run_status(args: argparse.Namespace) -> int:
    with _client(args) as c:
        if args.id is not None:
            exp = c.experiment(args.id)
            print(json.dumps(exp, indent=2) if args.json else _status_line(exp))
            return 0
        page = c.experiments(limit=max(1, min(args.limit, 200)))
    if args.json:
        print(json.dumps(page["items"], indent=2))
    for exp in [] if args.json else page["items"]:
        print(_status_line(exp))
    return 0


def _status_line(exp: dict[str, Any]) -> str:
    acc = exp.get("best_val_acc")
    acc_s = f"  best_val_acc={acc:.4f}" if isinstance(acc, float) else ""
    flags = exp.get("flags") or []
    flag_s = "".join(f"  [WARNING {f}]" for f in flags)
    return (
        f"{exp['id']:>6}  {exp['status']:<10} {exp['progress'] * 100:5.1f}%  {exp['name']}{acc_s}"
        f"{flag_s}"
    )


def run_download(args: argparse.Namespace) -> int:
    dest = Path(args.output or f"experiment-{args.id}.rpg")
    with _client(args) as c:
        path = c.download(args.id, dest)
    print(f"wrote {path}")
    return 0


def run_token_create(args: argparse.Namespace) -> int:
    from .crud.errors import ConflictError
    from .crud.tokens import create_token
    from .db import make_engine, make_sessionmaker
    from .migrate import upgrade
    from .settings import ensure_sqlite_dir, get_settings, safe_url

    settings = get_settings()
    ensure_sqlite_dir(settings.database_url)
    upgrade(settings.database_url)
    engine = make_engine(settings.database_url)
    try:
        with make_sessionmaker(engine)() as session:
            token = create_token(session, args.name)
    except ConflictError as err:
        from rpg_core.exceptions import RPGConfigError

        raise RPGConfigError(f"token create: {err}; pick another NAME") from None
    finally:
        engine.dispose()
    print(token)
    print(
        f"rpg token: created {args.name!r} in {safe_url(settings.database_url)} "
        f"(RPG_HOME={settings.home.resolve()}); pass it as `export RPG_API_TOKEN=<token>` or the header "
        "`Authorization: Bearer <token>`",
        file=sys.stderr,
    )
    return 0
