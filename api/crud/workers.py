"""Worker hosts and their devices (issue 26): what a worker records when it starts, and the
largest host of a queue, which a submission's ``train.devices`` is checked against.

The table (``worker_hosts``, one row per queue and host) is the capacity's one owner: workers
write it (``worker.app`` at start-up), the API reads it (``api.validation.check_devices``). A
host is recorded, never forgotten: a job asking for more devices than any host has ever had is
refused; one asking for what a host that is down has waits in the queue for it.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import select
from sqlalchemy.orm import Session

from ..models import WorkerHost, utcnow


@dataclass(frozen=True)
class HostCapacity:
    host: str
    devices: int
    kind: str
    seen_at: datetime


def record_host(session: Session, queue: str, host: str, devices: int, kind: str) -> None:
    """Record (or update) ``host``'s device count on ``queue``; commits."""
    row = session.get(WorkerHost, (queue, host), with_for_update=True)
    if row is None:
        session.add(WorkerHost(queue=queue, host=host, devices=devices, kind=kind))
    else:
        row.devices, row.kind, row.seen_at = devices, kind, utcnow()
    session.commit()


def largest_host(session: Session, queue: str) -> HostCapacity | None:
    """The host with the most devices on ``queue`` (None: no worker recorded yet)."""
    row = session.execute(
        select(WorkerHost.host, WorkerHost.devices, WorkerHost.kind, WorkerHost.seen_at)
        .where(WorkerHost.queue == queue)
        .order_by(WorkerHost.devices.desc(), WorkerHost.host)
        .limit(1)
    ).first()
    return None if row is None else HostCapacity(*row)
