"""Worker commands of ``rpg``: ``worker`` (GPU/CPU workers) and ``reconcile``. (``rpg serve``, the
API with a worker on this machine, is ``studio.cli``'s: it composes the app.)"""

from __future__ import annotations

import argparse
import logging
import time
from typing import Any


def register(sub: Any) -> None:
    p = sub.add_parser("worker", help="run training workers: one process per GPU (or CPU workers)")
    p.add_argument(
        "--gpus",
        default="auto",
        help="GPU indices, e.g. 0,1 (one worker per GPU); auto (default): every GPU "
        "nvidia-smi lists; cpu: CPU workers",
    )
    p.add_argument(
        "--concurrency",
        type=int,
        default=1,
        help="CPU workers to run when there is no GPU (default 1)",
    )
    p.add_argument("--no-reconcile", action="store_true", help="do not run the reconciler here")
    p.set_defaults(func=run_worker)

    p = sub.add_parser("reconcile", help="re-dispatch lost queued jobs and jobs of dead workers")
    p.add_argument("--loop", action="store_true", help="repeat every RPG_RECONCILE_S seconds")
    p.set_defaults(func=run_reconcile)


def log_setup() -> None:
    logging.basicConfig(
        level=logging.INFO, format="%(asctime)s %(name)s %(levelname)s %(message)s", force=True
    )


def run_worker(args: argparse.Namespace) -> int:
    from api.settings import get_settings

    from .config import get_worker_settings
    from .process import Supervisor, detect_gpus, parse_gpus
    from .reconcile import ReconcilerThread

    log_setup()
    if args.concurrency < 1:
        from rpg_core.exceptions import RPGConfigError

        raise RPGConfigError("--concurrency must be at least 1")
    gpus = parse_gpus(args.gpus)
    gpus = detect_gpus() if gpus is None else gpus
    settings = get_settings()
    if not settings.broker_url:
        from rpg_core.exceptions import RPGConfigError

        raise RPGConfigError("rpg worker needs RPG_BROKER_URL (or use rpg serve for embedded mode)")
    supervisor = Supervisor.for_devices(settings.dispatch_queue, gpus, args.concurrency)
    print(  # noqa: T201
        f"starting {len(supervisor.slots)} worker(s) on queue {settings.dispatch_queue}: "
        + ", ".join(f"GPU {s.device}" if s.device else "CPU" for s in supervisor.slots)
    )
    reconciler = None if args.no_reconcile else ReconcilerThread(settings, get_worker_settings())
    if reconciler is not None:
        reconciler.start()
    from .serve import install_term_handler

    install_term_handler()
    stop = [False]
    supervisor.start_all()
    try:
        supervisor.watch(stop)
    except KeyboardInterrupt:
        print(  # noqa: T201
            "stopping workers"
        )
    finally:
        stop[0] = True
        if reconciler is not None:
            reconciler.stop()
        supervisor.stop_all()
    return 0


def run_reconcile(args: argparse.Namespace) -> int:
    from api.settings import get_settings

    from .config import get_worker_settings
    from .reconcile import reconcile
    from .runner import sessions_for

    settings, wcfg = get_settings(), get_worker_settings()
    sessions = sessions_for(settings.database_url)
    while True:
        with sessions() as session:
            report = reconcile(settings, wcfg, session)
        print(  # noqa: T201
            f"re-dispatched {report.redispatched or 'none'}; cancelled {report.cancelled or 'none'}"
        )
        if not args.loop:
            return 0
        time.sleep(wcfg.reconcile_s)
