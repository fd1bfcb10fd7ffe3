"""The worker's Celery application (``celery -A worker.app``).

The broker comes from ``Settings.broker_url``, its transport options and the task's name from
``api.dispatch`` (the API sends by name through it and never imports this package); the training
task is registered by ``worker.tasks``, imported when a worker starts. A worker a supervisor
started, and each of its pool children, exits when that supervisor dies (``worker.lifeline``).
"""

from __future__ import annotations

import logging

from celery import Celery
from celery.signals import worker_init, worker_process_init

from api.dispatch import TRAIN_TASK, transport_options
from api.settings import Settings, get_settings

from .lifeline import watch_lifeline

__all__ = ["TRAIN_TASK", "celery_app", "make_celery", "record_devices"]

log = logging.getLogger(__name__)


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


celery_app = make_celery()


@worker_init.connect
def _die_with_the_server(**_: object) -> None:
    """A worker started by ``rpg serve`` / ``rpg worker`` exits when its server dies."""
    watch_lifeline()


@worker_init.connect
def _record_devices(**_: object) -> None:
    """Record this host's devices on the queue (``api.crud.workers``: what the API checks a
    job's ``train.devices`` against). A database that cannot be reached only logs."""
    record_devices(get_settings())


def record_devices(settings: Settings) -> None:
    import socket

    from api.crud.workers import record_host

    from .devices import host_devices
    from .runner import sessions_for

    host = host_devices()
    try:
        with sessions_for(settings.database_url)() as session:
            record_host(
                session, settings.dispatch_queue, socket.gethostname(), len(host.devices), host.kind
            )
    except Exception as err:  # noqa: BLE001 - a worker without its record still runs jobs
        log.warning("could not record this host's devices: %s", err)


@worker_process_init.connect
def _pool_child_dies_with_the_server(**_: object) -> None:
    """So does each prefork pool child (without waiting for the Celery main process)."""
    watch_lifeline()
