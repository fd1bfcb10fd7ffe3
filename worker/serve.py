"""``rpg serve``: the API, a reconciler and (embedded mode) one worker, on this machine.

Embedded mode (no ``RPG_BROKER_URL`` in the environment): the broker is kombu's filesystem
transport in ``WORKDIR/broker`` (no server to install or run), the database SQLite in
``WORKDIR/rpg-studio.db`` and the artifacts in ``WORKDIR/artifacts``; one CPU/GPU worker process is
started next to the API. The task code is the same Celery code as in production.

Production mode (``RPG_BROKER_URL`` and ``RPG_DATABASE_URL`` set): the API and the reconciler
against them; workers run elsewhere (``rpg worker``), unless ``--worker`` asks for a local one.
"""

from __future__ import annotations

import logging
import os
import signal
import threading
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .app import FILESYSTEM_SCHEME

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class ServeConfig:
    host: str = "127.0.0.1"
    port: int = 8000
    workdir: Path = Path(".rpg-studio")
    worker: bool | None = None  # None: in embedded mode only
    gpus: str | None = None


def embedded_env(environ: Mapping[str, str], workdir: Path) -> dict[str, str]:
    """The environment of embedded mode: unset RPG_* service variables get local defaults."""
    env = dict(environ)
    root = workdir.resolve()
    env["RPG_BROKER_URL"] = f"{FILESYSTEM_SCHEME}{root / 'broker'}"
    env.setdefault("RPG_DATABASE_URL", f"sqlite:///{root / 'rpg-studio.db'}")
    env.setdefault("RPG_ARTIFACT_DIR", str(root / "artifacts"))
    env.setdefault("RPG_REQUEUE_AFTER_S", "10")
    env.setdefault("RPG_RECONCILE_S", "5")
    return env


def is_embedded(environ: Mapping[str, str]) -> bool:
    url = environ.get("RPG_BROKER_URL", "").strip()
    return not url or url.startswith(FILESYSTEM_SCHEME)


@contextmanager
def _environment(env: Mapping[str, str]) -> Iterator[None]:
    saved = dict(os.environ)
    os.environ.clear()
    os.environ.update(env)
    try:
        yield
    finally:
        os.environ.clear()
        os.environ.update(saved)


def serve(cfg: ServeConfig) -> int:
    """Run until SIGINT/SIGTERM."""
    import uvicorn

    from api.main import create_app
    from api.migrate import upgrade
    from api.settings import Settings

    from .config import WorkerSettings
    from .process import Supervisor, detect_gpus, parse_gpus
    from .reconcile import ReconcilerThread

    embedded = is_embedded(os.environ)
    env = embedded_env(os.environ, cfg.workdir) if embedded else dict(os.environ)
    if embedded:
        cfg.workdir.mkdir(parents=True, exist_ok=True)
    with _environment(env):
        settings, wcfg = Settings(), WorkerSettings()
    upgrade(settings.database_url)
    reconciler = ReconcilerThread(settings, wcfg)
    reconciler.start()
    supervisor = None
    stop = [False]
    if cfg.worker if cfg.worker is not None else embedded:
        gpus = parse_gpus(cfg.gpus)
        supervisor = Supervisor.for_devices(
            settings.dispatch_queue, detect_gpus() if gpus is None else gpus, 1
        )
        supervisor.env = env
        supervisor.start_all()
        threading.Thread(target=supervisor.watch, args=(stop,), daemon=True).start()
    log.info("serving on http://%s:%d/ (%s mode)", cfg.host, cfg.port, _mode(embedded))
    server = uvicorn.Server(
        uvicorn.Config(create_app(settings), host=cfg.host, port=cfg.port, log_level="warning")
    )
    install_term_handler()
    try:
        server.run()
    except KeyboardInterrupt:
        log.info("stopping")
    finally:
        stop[0] = True
        reconciler.stop()
        if supervisor is not None:
            supervisor.stop_all(timeout_s=10)
    return 0


def _mode(embedded: bool) -> str:
    return "embedded: filesystem broker, SQLite" if embedded else "production"


def install_term_handler() -> Any:
    """SIGTERM behaves like Ctrl-C (uvicorn and the supervisor shut down cleanly)."""

    def handler(_sig: int, _frame: Any) -> None:
        raise KeyboardInterrupt

    return signal.signal(signal.SIGTERM, handler)
