"""The Celery application shared by the API (which only sends) and the worker (which runs tasks).

The broker comes from ``Settings.broker_url``; the training task ``rpg.train_experiment`` is
registered by the worker's own module (``worker.tasks``, imported when a worker starts, never by
the API, so the API process does not import torch).

Brokers:

* ``redis://HOST:PORT/DB`` - production (see docs/DEPLOY.md for the visibility timeout).
* ``filesystem:///ABS/DIR`` (or ``filesystem://REL/DIR``) - embedded mode (``rpg serve``): kombu's
  filesystem transport, one file per message under ``DIR/queue``; no server to run.
"""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path
from typing import Any

from celery import Celery

from api.settings import Settings, get_settings

TRAIN_TASK = "rpg.train_experiment"
FILESYSTEM_SCHEME = "filesystem://"
# Redis redelivers an unacked message after this long; it must exceed the longest job, or a
# second copy starts while the first still runs (the lease stops it from writing, but it wastes
# a GPU). Jobs that die are re-dispatched by the reconciler long before this (docs/DEPLOY.md).
REDIS_VISIBILITY_TIMEOUT_S = 7 * 24 * 3600


def filesystem_folder(broker_url: str) -> Path:
    """The directory of a ``filesystem://DIR`` broker URL (default ``./broker``)."""
    rest = broker_url[len(FILESYSTEM_SCHEME) :]
    return Path(rest or "broker")


def transport_options(broker_url: str | None) -> dict[str, Any]:
    """Kombu transport options for ``broker_url`` (and the filesystem broker's folders)."""
    if broker_url and broker_url.startswith(FILESYSTEM_SCHEME):
        root = filesystem_folder(broker_url)
        folders = {
            "data_folder_in": root / "queue",
            "data_folder_out": root / "queue",
            "control_folder": root / "control",
            "processed_folder": root / "processed",
        }
        for folder in folders.values():
            folder.mkdir(parents=True, exist_ok=True)
        return {k: str(v) for k, v in folders.items()}
    return {
        "socket_connect_timeout": 2,
        "socket_timeout": 5,
        "visibility_timeout": REDIS_VISIBILITY_TIMEOUT_S,
    }


def make_celery(settings: Settings | None = None) -> Celery:
    """A Celery app for ``settings`` (late acks, one task at a time per worker process)."""
    s = settings or get_settings()
    app = Celery("rpg", broker=s.broker_url or "memory://")
    app.conf.update(
        task_default_queue=s.dispatch_queue,
        task_acks_late=True,
        task_reject_on_worker_lost=True,
        worker_prefetch_multiplier=1,
        worker_max_tasks_per_child=1,
        worker_concurrency=1,
        task_ignore_result=True,
        broker_connection_retry_on_startup=True,
        broker_transport_options=transport_options(s.broker_url),
        broker_connection_timeout=2,
        worker_hijack_root_logger=False,
        include=["worker.tasks"],
    )
    return app


@lru_cache(maxsize=8)
def celery_for(broker_url: str, queue: str) -> Celery:
    """One cached Celery app per (broker, queue), for the API's dispatcher."""
    return make_celery(Settings(broker_url=broker_url, dispatch_queue=queue))


celery_app = make_celery()
