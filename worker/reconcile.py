"""The reconciler: puts back to work the jobs the database and the broker disagree about.

* ``queued`` jobs that no broker message holds (lost broker state: FLUSHALL, a restart without
  persistence, a dispatch that failed) once ``requeue_after_s`` passed since their last dispatch;
* ``running`` jobs whose lease expired (no heartbeat: the worker or its machine died): sent again,
  the next worker resumes them from their last checkpoint;
* ``cancelling`` jobs whose lease expired: the worker died before it saw the cancel; they end
  ``cancelled``.

Running several reconcilers at once is safe: a job sent twice is claimed once (the lease).
"""

from __future__ import annotations

import logging
import threading
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from sqlalchemy import or_, select, update
from sqlalchemy.orm import Session

from api.dispatch import dispatch
from api.models import FINISHED, Experiment, utcnow
from api.settings import Settings

from .broker import drop_unacked, held_experiments, unacked_experiments
from .config import WorkerSettings

log = logging.getLogger(__name__)


@dataclass
class Report:
    redispatched: list[int] = field(default_factory=list)
    cancelled: list[int] = field(default_factory=list)
    unacked_dropped: int = 0


def _drop_settled_unacked(settings: Settings, session: Session, now: datetime) -> int:
    """Unacked broker messages of jobs that finished or whose worker died (lease expired)."""
    unacked = unacked_experiments(settings)
    if not unacked:
        return 0
    rows = session.execute(
        select(Experiment.id, Experiment.status, Experiment.lease_expires_at).where(
            Experiment.id.in_(set(unacked.values()))
        )
    ).all()
    session.rollback()
    settled = {
        r.id
        for r in rows
        if r.status in FINISHED
        or (r.status != "queued" and r.lease_expires_at is not None and r.lease_expires_at < now)
    }
    settled |= set(unacked.values()) - {r.id for r in rows}  # deleted experiments
    tags = [tag for tag, exp_id in unacked.items() if exp_id in settled]
    return drop_unacked(settings, tags)


def _stale_queued(session: Session, before: datetime) -> list[int]:
    q = select(Experiment.id).where(
        Experiment.status == "queued",
        Experiment.cancel_requested.is_(False),
        or_(Experiment.dispatched_at.is_(None), Experiment.dispatched_at < before),
    )
    return list(session.scalars(q.order_by(Experiment.id)))


def _dead_running(session: Session, now: datetime, before: datetime) -> list[int]:
    q = select(Experiment.id).where(
        Experiment.status == "running",
        Experiment.lease_expires_at < now,
        or_(Experiment.dispatched_at.is_(None), Experiment.dispatched_at < before),
    )
    return list(session.scalars(q.order_by(Experiment.id)))


def _cancel_dead(session: Session, now: datetime) -> list[int]:
    ids = list(
        session.scalars(
            select(Experiment.id).where(
                Experiment.status == "cancelling", Experiment.lease_expires_at < now
            )
        )
    )
    if ids:
        session.execute(
            update(Experiment)
            .where(
                Experiment.id.in_(ids),
                Experiment.status == "cancelling",
                Experiment.lease_expires_at < now,
            )
            .values(status="cancelled", finished_at=now, lease_expires_at=None, updated_at=now)
            .execution_options(synchronize_session=False)
        )
    return ids


def reconcile(settings: Settings, wcfg: WorkerSettings, session: Session) -> Report:
    """One pass; commits. Safe to run from any number of processes."""
    now = utcnow()
    before = now - timedelta(seconds=wcfg.requeue_after_s)
    report = Report(cancelled=_cancel_dead(session, now))
    session.commit()
    candidates = _stale_queued(session, before) + _dead_running(session, now, before)
    session.rollback()
    if not candidates or not settings.broker_url:
        if settings.broker_url:
            report.unacked_dropped = _drop_settled_unacked(settings, session, now)
        return report
    held = held_experiments(settings) or set()
    todo = [i for i in candidates if i not in held]
    report.unacked_dropped = _drop_settled_unacked(settings, session, now)
    sent = dispatch(settings, todo)
    if sent:
        session.execute(
            update(Experiment)
            .where(Experiment.id.in_(sent), Experiment.status.in_(("queued", "running")))
            .values(dispatched_at=utcnow())
            .execution_options(synchronize_session=False)
        )
        session.commit()
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
