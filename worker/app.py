"""The Celery application shared by the API (which only sends) and the worker (which runs tasks).

The broker comes from ``Settings.broker_url``; the training task ``rpg.train_experiment`` is
registered by the worker's own module, not here.
"""

from __future__ import annotations

from functools import lru_cache

from celery import Celery

from api.settings import Settings, get_settings

TRAIN_TASK = "rpg.train_experiment"


def make_celery(settings: Settings | None = None) -> Celery:
    """A Celery app for ``settings`` (late acks, one task at a time per worker process)."""
    s = settings or get_settings()
    app = Celery("rpg", broker=s.broker_url or "memory://")
    app.conf.update(
        task_default_queue=s.dispatch_queue,
        task_acks_late=True,
        task_reject_on_worker_lost=True,
        worker_prefetch_multiplier=1,
        task_ignore_result=True,
        broker_connection_retry_on_startup=True,
        broker_transport_options={"socket_connect_timeout": 2, "socket_timeout": 5},
        broker_connection_timeout=2,
    )
    return app


@lru_cache(maxsize=8)
def celery_for(broker_url: str, queue: str) -> Celery:
    """One cached Celery app per (broker, queue), for the API's dispatcher."""
    return make_celery(Settings(broker_url=broker_url, dispatch_queue=queue))


celery_app = make_celery()
