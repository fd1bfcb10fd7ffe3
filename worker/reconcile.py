"""The reconciler: puts back to work the jobs the database and the broker disagree about.

* ``queued`` jobs that no broker message holds (lost broker state: FLUSHALL, a restart without
  persistence, a dispatch that failed) once ``requeue_after_s`` passed since their last dispatch;
* ``running`` jobs whose lease expired (no heartbeat: the worker or its machine died): sent again,
  the next worker resumes them from their last checkpoint;
* ``cancelling`` jobs whose lease expired: the worker died before it saw the cancel; they end
  ``cancelled``;
* search studies (``api.search.drive_all``): finished trials told to Optuna, the next trials
  asked and sent, so a restart of the API or the workers resumes every study.

Running several reconcilers at once is safe: a job sent twice is claimed once (the lease).
"""

from __future__ import annotations

import logging
import threading
from dataclasses import dataclass, field

from sqlalchemy.orm import Session

from api.crud import lifecycle
from api.settings import Settings

from .broker import drop_unacked, held_experiments, unacked_experiments
from .config import WorkerSettings

log = logging.getLogger(__name__)


@dataclass
class Report:
    redispatched: list[int] = field(default_factory=list)
    cancelled: list[int] = field(default_factory=list)
    unacked_dropped: int = 0
    trials: list[int] = field(default_factory=list)  # search trials created (api.search)


def _drive_studies(settings: Settings, session: Session) -> list[int]:
    """Settle and top up every running search study (a restart resumes them here)."""
    from api import search

    try:
        return search.drive_all(session, settings)
    except Exception as err:  # noqa: BLE001 - e.g. the search tables not migrated yet
        log.warning("reconciler: driving the search studies failed: %s", err)
        session.rollback()
        return []


def _drop_settled_unacked(settings: Settings, session: Session) -> int:
    """Unacked broker messages of jobs that finished or whose worker died (lease expired)."""
    unacked = unacked_experiments(settings)
    if not unacked:
        return 0
    settled = lifecycle.settled_among(session, unacked.values())
    return drop_unacked(settings, [tag for tag, exp_id in unacked.items() if exp_id in settled])


def reconcile(settings: Settings, wcfg: WorkerSettings, session: Session) -> Report:
    """One pass; commits. Safe to run from any number of processes."""
    report = Report(cancelled=lifecycle.finalize_abandoned_cancels(session))
    report.trials = _drive_studies(settings, session)
    candidates = lifecycle.redispatch_candidates(session, stale_s=wcfg.requeue_after_s)
    session.rollback()
    if not settings.broker_url:
        return report
    report.unacked_dropped = _drop_settled_unacked(settings, session)
    if not candidates:
        return report
    held = held_experiments(settings) or set()
    sent = lifecycle.dispatch_jobs(session, settings, [i for i in candidates if i not in held])
    if sent:
        log.info("reconciler: sent experiments %s again", sent)
    report.redispatched = sent
    return report


class ReconcilerThread(threading.Thread):
    """``reconcile`` every ``wcfg.reconcile_s`` seconds until ``stop()``."""

    def __init__(self, settings: Settings, wcfg: WorkerSettings) -> None:
        super().__init__(name="rpg-reconciler", daemon=True)
        self.settings, self.wcfg = settings, wcfg
        self._stop_event = threading.Event()

    def run(self) -> None:
        from .runner import sessions_for

        sessions = sessions_for(self.settings.database_url)
        while not self._stop_event.is_set():
            try:
                with sessions() as session:
                    reconcile(self.settings, self.wcfg, session)
            except Exception as err:  # noqa: BLE001 - keep reconciling after a DB outage
                log.warning("reconciler pass failed: %s", err)
            self._stop_event.wait(self.wcfg.reconcile_s)

    def stop(self) -> None:
        self._stop_event.set()
