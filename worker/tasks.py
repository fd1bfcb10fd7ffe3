"""The Celery task the API dispatches: ``rpg.train_experiment(experiment_id)``."""

from __future__ import annotations

import logging

from api.settings import get_settings

from .app import TRAIN_TASK, celery_app
from .config import get_worker_settings
from .runner import run_experiment

log = logging.getLogger(__name__)


@celery_app.task(name=TRAIN_TASK, acks_late=True, reject_on_worker_lost=True, ignore_result=True)
def train_experiment(experiment_id: int) -> str:
    """Run one experiment (idempotent: a redelivered message for a finished job does nothing)."""
    if isinstance(experiment_id, bool) or not isinstance(experiment_id, int):
        log.error("rpg.train_experiment got %r; expected an experiment id", experiment_id)
        return "rejected"
    outcome = run_experiment(get_settings(), get_worker_settings(), experiment_id)
    log.info("experiment %d: %s", experiment_id, outcome)
    return outcome
