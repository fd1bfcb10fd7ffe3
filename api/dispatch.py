"""Sending work to the workers: the train task by name, over the configured broker.

A neutral module: it knows the task's name (``TRAIN_TASK``, defined here once) and the broker's
transport options, never the worker's code, so the API process imports no training code. The
worker's Celery app (``worker.app``) takes both from here.

Brokers:

* ``redis://HOST:PORT/DB`` - production (see docs/DEPLOY.md for the visibility timeout).
* ``filesystem:///ABS/DIR`` (or ``filesystem://REL/DIR``) - embedded mode (``rpg serve``): kombu's
  filesystem transport, one file per message under ``DIR/queue``; no server to run.

``dispatch`` only sends; ``api.crud.lifecycle.dispatch_jobs`` sends and marks what was sent.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Sequence
from functools import lru_cache
from pathlib import Path
from typing import TYPE_CHECKING, Any

from .settings import Settings

if TYPE_CHECKING:  # Celery is imported on the first send, not with the API
    from celery import Celery

log = logging.getLogger(__name__)
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


_SENDER_LOCK = threading.Lock()


def sender(broker_url: str, queue: str) -> Celery:
    """A Celery app that only sends (no task is registered in it), one per (broker, queue).
    Made under a lock: requests run in threads, and two first imports of celery at once fail
    (its package is a lazy module: "cannot import name 'Celery'", seen at 2 concurrent POSTs)."""
    with _SENDER_LOCK:
        return _sender(broker_url, queue)


@lru_cache(maxsize=8)
def _sender(broker_url: str, queue: str) -> Celery:
    from celery import Celery

    app = Celery("rpg-dispatch", broker=broker_url)
    if broker_url.startswith("redis://"):  # one redis client per channel (not rediss: TLS)
        from .redis_sender import TRANSPORT

        app.conf.broker_transport = TRANSPORT
    app.conf.update(
        task_default_queue=queue,
        broker_transport_options=transport_options(broker_url),
        broker_connection_timeout=2,
        broker_connection_retry_on_startup=True,
        task_ignore_result=True,
    )
    return app


def _is_broker_down(app: Celery | None, err: Exception) -> bool:
    """Whether ``err`` says the broker cannot be reached (the transport's connection errors),
    rather than a bug or a misconfiguration."""
    from kombu.exceptions import OperationalError

    if isinstance(err, OperationalError | OSError | TimeoutError):
        return True
    if app is None:
        return False
    try:
        with app.connection_for_write() as conn:
            return isinstance(err, tuple(conn.connection_errors))
    except Exception:  # noqa: BLE001 - the transport itself is broken: not a broker outage
        return False


def _next_millisecond() -> None:
    """Wait for the next millisecond of the monotonic clock: the filesystem broker names each
    message by that millisecond (and a random id), and workers take the files in name order, so
    two messages sent in one millisecond would be taken in random order."""
    start = int(round(time.monotonic() * 1000))
    while int(round(time.monotonic() * 1000)) == start:
        time.sleep(0.0002)


def dispatch(settings: Settings, experiment_ids: Sequence[int]) -> list[int]:
    """Send one ``TRAIN_TASK`` message per id, in the order given (workers take them in that
    order); returns the ids that were sent.

    Never raises: the runs not sent stay "queued" in the database for the reconciler. A broker
    that is down is a warning; any other error (a bug or a misconfiguration, which retrying
    cannot fix) is logged as an error with its traceback. With no broker configured (embedded
    mode without a worker) nothing is sent.
    """
    if not settings.broker_url or not experiment_ids:
        return []
    sent: list[int] = []
    app = None
    in_order = settings.broker_url.startswith(FILESYSTEM_SCHEME)
    try:
        app = sender(settings.broker_url, settings.dispatch_queue)
        with app.producer_or_acquire() as producer:
            for exp_id in experiment_ids:
                if in_order and sent:
                    _next_millisecond()
                app.send_task(
                    TRAIN_TASK,
                    args=[exp_id],
                    queue=settings.dispatch_queue,
                    producer=producer,
                    retry=False,
                )
                sent.append(exp_id)
    except Exception as err:  # noqa: BLE001 - a failed send must not lose the job (it stays queued)
        left = len(experiment_ids) - len(sent)
        if _is_broker_down(app, err):
            log.warning(
                "dispatch: the broker is unreachable (%s); %d experiment(s) stay queued for the "
                "reconciler", err, left,
            )  # fmt: skip
        else:
            log.error(
                "dispatch failed with an unexpected error; %d experiment(s) stay queued: %s",
                left, err, exc_info=True,
            )  # fmt: skip
    return sent
