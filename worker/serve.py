"""``rpg serve`` (its command is ``studio.cli``'s, which passes the composed app): the app, a
reconciler and (embedded mode) one worker, on this machine.

Embedded mode (no ``RPG_BROKER_URL`` in the environment): everything lives in the one home folder
(``$RPG_HOME``, default ``.rpg-studio``; the one ``make demo``, ``rpg token`` and ``rpg submit``
use): the broker is kombu's filesystem transport in ``HOME/broker`` (no server to install or run),
the database SQLite in ``HOME/rpg-studio.db``, the artifacts in ``HOME/artifacts`` and the server's
URL in ``HOME/server.json`` (where the ``rpg`` client finds it); one CPU/GPU worker process is
started next to the API. The task code is the same Celery code as in production.

It refuses to start when its home is already served (a lock in the home, naming the PID that
holds it) or its port is taken, stops on SIGINT, SIGTERM or SIGHUP (its worker too; a SIGKILL
takes the worker with it as well: ``worker.lifeline``),
and on start resumes the runs that were training when it last stopped (from their checkpoints).

Production mode (``RPG_BROKER_URL`` and ``RPG_DATABASE_URL`` set): the API and the reconciler
against them; workers run elsewhere (``rpg worker``), unless ``--worker`` asks for a local one.
"""

from __future__ import annotations

import json
import logging
import os
import signal
import socket
import threading
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from api.client import SERVER_FILE
from api.dispatch import FILESYSTEM_SCHEME

from .lifeline import HomeLock, HomeTakenError, descendants, kill_all

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class ServeConfig:
    host: str = "127.0.0.1"
    port: int = 8000
    workdir: Path | None = None  # None: $RPG_HOME, else .rpg-studio
    worker: bool | None = None  # None: in embedded mode only
    gpus: str | None = None


def embedded_env(environ: Mapping[str, str], workdir: Path) -> dict[str, str]:
    """The environment of embedded mode: unset RPG_* service variables get local defaults."""
    env = dict(environ)
    root = workdir.resolve()
    env["RPG_HOME"] = str(root)
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


def serve(cfg: ServeConfig, build_app: Callable[[Any], Any]) -> int:
    """Run ``build_app(settings)`` (the composed web app, ``studio.app.create_app``) with a
    reconciler and, in embedded mode, a worker, until SIGINT, SIGTERM or SIGHUP.

    One server per home: it holds ``HOME/serve.lock`` (``flock``) while it runs, and a second
    one on the same home is refused with the PID of the first. Its worker (and the worker's
    pool children) die with it, even by SIGKILL (:mod:`worker.lifeline`)."""
    from api.settings import home_dir

    home = (cfg.workdir or home_dir()).resolve()
    url = f"http://{cfg.host}:{cfg.port}"
    lock = lock_home(home, url)
    try:
        check_port(cfg.host, cfg.port)
        return _serve(cfg, build_app, home, url)
    finally:
        lock.release()


def lock_home(home: Path, url: str) -> HomeLock:
    """Take ``home``'s lock for this server's lifetime, or refuse naming the PID that holds it."""
    from rpg_core.exceptions import RPGConfigError

    lock = HomeLock(home)
    try:
        lock.acquire(note=f"rpg serve on {url}")
    except HomeTakenError as err:
        raise RPGConfigError(
            f"the home {home} is already served by another rpg serve or make demo "
            f"({err.holder}; lock {lock.path}); stop that one first, or use another home: "
            f"rpg serve --home OTHER_FOLDER"
        ) from None
    return lock


def _serve(cfg: ServeConfig, build_app: Callable[[Any], Any], home: Path, url: str) -> int:
    import uvicorn

    from api.migrate import upgrade
    from api.settings import Settings, ensure_sqlite_dir, safe_url
    from api.storage import open_store

    from .config import WorkerSettings
    from .process import Supervisor, detect_gpus, parse_gpus
    from .reconcile import ReconcilerThread

    embedded = is_embedded(os.environ)
    env = embedded_env(os.environ, home) if embedded else dict(os.environ)
    with _environment(env):
        settings, wcfg = Settings(), WorkerSettings()
    ensure_sqlite_dir(settings.database_url)
    upgrade(settings.database_url)
    log.info(
        "home %s; database %s; artifacts in %s", home, safe_url(settings.database_url),
        open_store(settings).name,
    )  # fmt: skip
    resumed = resume_interrupted(settings)
    if resumed:
        log.info(
            "resuming %d run(s) that were training when the service stopped: experiments %s "
            "(before the queued ones)", len(resumed), list(resumed),
        )  # fmt: skip
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
    server = uvicorn.Server(
        uvicorn.Config(
            build_app(settings),
            host=cfg.host,
            port=cfg.port,
            log_level="warning",
            # under overload, open connections must not hold a stop: drain for at most this
            timeout_graceful_shutdown=SHUTDOWN_DRAIN_S,
        )
    )
    previous = install_term_handler(server, stop)
    info = home / SERVER_FILE
    write_server_file(info, url, resumed)
    log.info("serving on %s/ (%s mode)", url, _mode(embedded))
    failed = False
    try:
        server.run()
        failed = not server.started
        if failed:
            log.error("the API could not start on %s (is the port taken?)", url)
    except KeyboardInterrupt:
        log.info("stopping")
    finally:
        stop[0] = True
        reconciler.stop()
        if supervisor is not None:
            leftovers = [
                c for s in supervisor.slots if s.process for c in descendants(s.process.pid)
            ]
            supervisor.stop_all(timeout_s=10)
            kill_all(leftovers)  # a Celery pool child left by a killed worker
            supervisor.lifeline.close()  # anything still left sees its server gone
        _remove_server_file(info, url)
        for sig, handler in previous.items():
            signal.signal(sig, handler)
        log.info("stopped")
    return 1 if failed else 0


def write_server_file(path: Path, url: str, resumed: dict[int, str] | None = None) -> None:
    """Record where the server listens, so ``rpg`` commands using this home find it, and which
    runs it resumed at its start with their notes (``make demo`` says so: by the time it asks
    the API, a short resumed run may have finished and its note is gone)."""
    notes = [{"id": i, "note": n} for i, n in (resumed or {}).items()]
    info = {"url": url, "pid": os.getpid(), "resumed": notes}
    path.write_text(json.dumps(info) + "\n", encoding="utf-8")


def _remove_server_file(path: Path, url: str) -> None:
    try:
        if json.loads(path.read_text(encoding="utf-8")).get("pid") == os.getpid():
            path.unlink()
    except (OSError, ValueError):
        pass


def check_port(host: str, port: int) -> None:
    """Refuse to start, before anything else, when ``host:port`` is taken."""
    from rpg_core.exceptions import RPGConfigError

    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind((host, port))
        except OSError as err:
            raise RPGConfigError(
                f"port {port} on {host} is already in use ({err.strerror}): another rpg serve or "
                f"make demo still running? Stop it, or pick another port: rpg serve --port "
                f"{port + 10} (make demo PORT={port + 10})"
            ) from None


INTERRUPTED = "the service stopped while it was training"  # the start of every resume note


def resume_note(epochs_done: int | None) -> str:
    """What a run interrupted by a stop is told (its ``error`` field, shown as a note)."""
    if epochs_done is None or epochs_done < 1:
        return f"{INTERRUPTED}, before its first checkpoint; it restarts from the beginning"
    return f"{INTERRUPTED}; it resumes from its checkpoint after epoch {epochs_done}"


def resume_interrupted(settings: Any) -> dict[int, str]:
    """Requeue the runs left ``running`` by workers of this machine that are gone (the service
    stopped, or was killed, while they trained); the next worker resumes each from its last
    checkpoint (a run with none restarts from the beginning), before the runs that were only
    queued: in embedded mode the pending messages are sent again after theirs. Each run's note
    says which; returns their ids with their notes, in id order."""
    from api.crud import lifecycle
    from rpg_core.training.checkpoint_info import completed_epochs

    from .artifacts import checkpoint_dir
    from .broker import drop_filesystem_pending
    from .runner import is_dead_local, sessions_for

    notes: dict[int, str] = {}

    def note(exp_id: int) -> str:
        notes[exp_id] = resume_note(completed_epochs(checkpoint_dir(settings.artifact_dir, exp_id)))
        return notes[exp_id]

    with sessions_for(settings.database_url)() as session:
        ids = lifecycle.requeue_interrupted(session, is_dead_local, error=note)
        if not ids:
            return {}
        for exp_id in ids:
            log.info("experiment %d: %s", exp_id, notes[exp_id])
        # the queue's other messages go behind theirs (embedded mode: no worker runs yet)
        behind = [i for i in drop_filesystem_pending(settings) if i not in notes]
        lifecycle.dispatch_jobs(session, settings, [*ids, *dict.fromkeys(behind)])
    return {i: notes[i] for i in ids}


def _mode(embedded: bool) -> str:
    return "embedded: filesystem broker, SQLite" if embedded else "production"


STOP_SIGNALS = (signal.SIGTERM, signal.SIGHUP)
SHUTDOWN_DRAIN_S = 10  # seconds a stopping server waits for the requests in flight


def install_term_handler(server: Any = None, stop: list[bool] | None = None) -> dict[int, Any]:
    """SIGTERM and SIGHUP behave like Ctrl-C: uvicorn and the supervisor shut down cleanly.

    With a uvicorn ``server``, the signal asks it to exit (then the caller's cleanup runs);
    without one it raises KeyboardInterrupt. ``stop[0]`` becomes True at once, so a supervisor
    watching it restarts no worker while the server drains its requests. Returns the previous
    handlers."""

    def handler(_sig: int, _frame: Any) -> None:
        if stop is not None:
            stop[0] = True
        if server is not None and server.started and not server.should_exit:
            server.should_exit = True
            return
        raise KeyboardInterrupt

    return {sig: signal.signal(sig, handler) for sig in STOP_SIGNALS}
