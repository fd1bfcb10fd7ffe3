"""Send experiments to the worker queue (after the DB commit; a failure leaves them queued)."""

from __future__ import annotations

import logging
from collections.abc import Sequence

from .settings import Settings

log = logging.getLogger(__name__)
TRAIN_TASK = "rpg.train_experiment"


def dispatch(settings: Settings, experiment_ids: Sequence[int]) -> list[int]:
    """Send one ``rpg.train_experiment`` message per id; returns the ids that were sent.

    Never raises: on a broker error the rest stay "queued" in the database for the reconciler.
    With no broker configured (embedded mode) nothing is sent.
    """
    if not settings.broker_url or not experiment_ids:
        return []
    sent: list[int] = []
    try:
        from worker.app import celery_for

        app = celery_for(settings.broker_url, settings.dispatch_queue)
        with app.producer_or_acquire() as producer:
            for exp_id in experiment_ids:
                app.send_task(
                    TRAIN_TASK,
                    args=[exp_id],
                    queue=settings.dispatch_queue,
                    producer=producer,
                    retry=False,
                )
                sent.append(exp_id)
    except Exception as err:  # noqa: BLE001 - any broker failure must not lose the job
        log.warning(
            "dispatch failed after %d of %d experiments (%s); they stay queued",
            len(sent),
            len(experiment_ids),
            err,
        )
    return sent
