"""The job lifecycle: the one owner of an experiment's status, lease, fencing and dispatch.

Every status change of an experiment after its creation happens here, for the API, the worker
and the reconciler alike (none of them writes these columns itself). The statuses, their groups
and ``TRANSITIONS`` (the state machine) are ``api.status``'s; every change here passes
``api.status.check_transition`` (an ORM object through ``_move``, an UPDATE through ``_moving``,
which checks each status its WHERE accepts), so a change ``TRANSITIONS`` does not list raises
``IllegalTransition`` instead of being written.

A claim takes a lease (``lease_token`` is incremented, the *fencing token*); every later worker
write names its token and is refused (returns False) once another claim took the run over or
the run left ``LEASED``: the worker must then stop without writing anything more. Worker
protocol::

    lease = claim_experiment(s, exp_id, worker="host:pid", lease_s=60)   # None: not claimable
    heartbeat(s, exp_id, lease.token, lease_s=60)      # -> HeartbeatState(alive, cancel_requested)
    report_progress(s, exp_id, lease.token, progress=0.4, epoch=2)
    record_metrics(s, exp_id, lease.token, epoch=2, values={"train_loss": 0.3, "val_acc": 0.8})
    finish_experiment(s, exp_id, lease.token, result={...}, files=[FileRecord(...)])
    prune_experiment(s, exp_id, lease.token, result={...})   # a search's pruner stopped it
    fail_experiment(s, exp_id, lease.token, error="...")
    requeue(s, exp_id, lease.token, error="...")       # False when a cancel came in meanwhile
    mark_cancelled(s, exp_id, lease.token)              # after seeing cancel_requested

Dispatch: ``dispatch_jobs`` sends the train tasks (``api.dispatch``) and marks what was sent.
Reconciler: ``redispatch_candidates``, ``finalize_abandoned_cancels``, ``settled_among``;
``rpg serve`` at start: ``requeue_interrupted``.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import ColumnElement, and_, case, delete, func, or_, select, update
from sqlalchemy.orm import Session

from rpg_core.catalog.tasks import TASKS
from rpg_core.training.result import ExperimentResult, result_columns

from .. import dispatch as broker
from ..models import Experiment, MetricPoint, Result, StoredFile, utcnow
from ..settings import Settings
from ..status import FINISHED, LEASED, IllegalTransition, JobStatus, check_transition
from ..status import TRANSITIONS as TRANSITIONS  # the state machine, re-exported
from .errors import ConflictError
from .files import FileRecord

RESULT_COLUMNS = result_columns()  # the result fields that are experiments columns
MAX_ERROR = 10_000


@dataclass(frozen=True)
class Lease:
    experiment_id: int
    token: int
    attempt: int
    spec: dict[str, Any]


@dataclass(frozen=True)
class HeartbeatState:
    alive: bool
    cancel_requested: bool


@dataclass(frozen=True)
class JobState:
    """What a worker may know of a job besides its lease (a plain copy, no ORM object)."""

    status: str
    error: str | None
    worker: str | None
    lease_owner: str | None
    lease_expires_at: datetime | None


def new_job_values() -> dict[str, Any]:
    """The lifecycle columns of a new experiment: queued, never claimed."""
    return {
        "status": JobStatus.queued,
        "progress": 0.0,
        "attempts": 0,
        "lease_token": 0,
        "cancel_requested": False,
    }


def job_state(session: Session, experiment_id: int) -> JobState | None:
    row = session.execute(
        select(
            Experiment.status,
            Experiment.error,
            Experiment.worker,
            Experiment.lease_owner,
            Experiment.lease_expires_at,
        ).where(Experiment.id == experiment_id)
    ).first()
    return None if row is None else JobState(*row)


# ---------------------------------------------------------------- status changes


def _move(exp: Experiment, new: JobStatus) -> None:
    """Change a loaded (locked) row's status; :class:`IllegalTransition` unless ``TRANSITIONS``
    allows it."""
    exp.status = check_transition(exp.status, new)


def _moving(new: JobStatus, *sources: JobStatus) -> tuple[ColumnElement[bool], dict[str, Any]]:
    """An UPDATE's status change: its WHERE (the row is in one of ``sources``) and its values;
    :class:`IllegalTransition` unless ``TRANSITIONS`` allows every ``source -> new``."""
    for source in sources:
        check_transition(source, new)
    return Experiment.status.in_(sources), {"status": new}


# ---------------------------------------------------------------- API side


def request_cancel(session: Session, experiment_id: int) -> JobStatus:
    """Cancel a run: queued -> cancelled, running -> cancelling (the worker stops at its next
    check). Returns the new status; raises ConflictError on a finished run, KeyError if absent."""
    exp = session.get(Experiment, experiment_id, with_for_update=True)
    if exp is None:
        raise KeyError(experiment_id)
    if exp.status in FINISHED:
        raise ConflictError(f"experiment {experiment_id} is already {exp.status}")
    exp.cancel_requested = True
    if exp.status == JobStatus.queued:
        _move(exp, JobStatus.cancelled)
        exp.finished_at = utcnow()
    else:
        _move(exp, JobStatus.cancelling)
    session.flush()
    return JobStatus(exp.status)


def retry_experiment(session: Session, experiment_id: int) -> None:
    """Put a failed or cancelled run back in the queue (its attempt count is kept)."""
    exp = session.get(Experiment, experiment_id, with_for_update=True)
    if exp is None:
        raise KeyError(experiment_id)
    try:
        if exp.status not in FINISHED:  # running -> queued is a worker's requeue, not a retry
            raise IllegalTransition(exp.status, JobStatus.queued)
        _move(exp, JobStatus.queued)
    except IllegalTransition:
        raise ConflictError(
            f"experiment {experiment_id} is {exp.status}; only failed or cancelled runs can retry"
        ) from None
    exp.cancel_requested = False
    exp.error = None
    exp.progress = 0.0
    exp.epoch = None
    exp.lease_owner = None
    exp.lease_expires_at = None
    exp.started_at = None
    exp.finished_at = None
    exp.dispatched_at = None
    session.flush()


def dispatch_premarked(
    session: Session, settings: Settings, experiment_ids: Sequence[int]
) -> list[int]:
    """As ``dispatch_jobs`` for runs committed already marked dispatched (``create_experiment``
    with ``dispatched=True``): sends, and only for those not sent clears the mark (so the
    reconciler sends them at once), which saves the UPDATE after every good send. A process
    that dies between the commit and the send leaves the mark: the reconciler sends the run
    once the mark is ``requeue_after_s`` old."""
    sent = broker.dispatch(settings, experiment_ids)
    unsent = [i for i in experiment_ids if i not in set(sent)]
    if unsent and settings.broker_url:  # without a broker nothing was marked
        if not session.in_transaction():
            session.connection(execution_options={"isolation_level": "AUTOCOMMIT"})
        session.execute(
            update(Experiment)
            .where(Experiment.id.in_(unsent), Experiment.status == JobStatus.queued)
            .values(dispatched_at=None)
            .execution_options(synchronize_session=False)
        )
        session.commit()
    return sent


def mark_dispatched(session: Session, experiment_ids: Sequence[int]) -> None:
    """Record that a train task was sent for these runs (not committed). A run already claimed
    (running) is marked too: the reconciler sends a dead worker's run again only once its last
    dispatch is older than ``requeue_after_s``."""
    if experiment_ids:
        session.execute(
            update(Experiment)
            .where(
                Experiment.id.in_(experiment_ids),
                Experiment.status.in_((JobStatus.queued, JobStatus.running)),
            )
            .values(dispatched_at=utcnow())
            .execution_options(synchronize_session=False)
        )


def dispatch_jobs(session: Session, settings: Settings, experiment_ids: Sequence[int]) -> list[int]:
    """Send a train task for each run (after the caller committed them) and mark the ones sent
    as dispatched; commits. Returns the ids sent ([] without a broker or when it is down: the
    runs stay queued for the reconciler)."""
    sent = broker.dispatch(settings, experiment_ids)
    if sent:
        if not session.in_transaction():
            # one UPDATE is atomic by itself: sent without BEGIN and COMMIT, two round trips
            # less on every submission (bench_api.py --mode profile)
            session.connection(execution_options={"isolation_level": "AUTOCOMMIT"})
        mark_dispatched(session, sent)
        session.commit()
    return sent


# ---------------------------------------------------------------- worker side


def _fenced(experiment_id: int, token: int) -> list[ColumnElement[bool]]:
    return [
        Experiment.id == experiment_id,
        Experiment.lease_token == token,
        Experiment.status.in_(LEASED),
    ]


def claim_experiment(
    session: Session, experiment_id: int, worker: str, lease_s: float = 60.0
) -> Lease | None:
    """Take a queued run (or one whose lease expired) and commit. None: nothing to run
    (finished, cancelled, or another worker holds a live lease)."""
    now = utcnow()
    from_queued, to_running = _moving(JobStatus.running, JobStatus.queued)
    from_running, _ = _moving(JobStatus.running, JobStatus.running)
    # a cancelling run is never claimed: it has cancel_requested
    claimable = or_(from_queued, and_(from_running, Experiment.lease_expires_at < now))
    stmt = (
        update(Experiment)
        .where(Experiment.id == experiment_id, claimable, Experiment.cancel_requested.is_(False))
        .values(
            **to_running,
            lease_owner=worker,
            worker=worker,
            lease_token=Experiment.lease_token + 1,
            lease_expires_at=now + timedelta(seconds=lease_s),
            heartbeat_at=now,
            attempts=Experiment.attempts + 1,
            started_at=func.coalesce(Experiment.started_at, now),
            updated_at=now,
        )
        .returning(Experiment.lease_token, Experiment.attempts, Experiment.spec)
        .execution_options(synchronize_session=False)
    )
    row = session.execute(stmt).first()
    session.commit()
    if row is None:
        return None
    return Lease(experiment_id, int(row[0]), int(row[1]), dict(row[2]))


def _fenced_update(
    session: Session, experiment_id: int, token: int, *extra: ColumnElement[bool], **values: Any
) -> bool:
    values.setdefault("updated_at", utcnow())
    res = session.execute(
        update(Experiment)
        .where(*_fenced(experiment_id, token), *extra)
        .values(**values)
        .execution_options(synchronize_session=False)
    )
    session.commit()
    return bool(res.rowcount)  # type: ignore[attr-defined]


def heartbeat(
    session: Session, experiment_id: int, token: int, lease_s: float = 60.0
) -> HeartbeatState:
    """Extend the lease. ``alive`` False: the lease is lost, stop now."""
    now = utcnow()
    res = session.execute(
        update(Experiment)
        .where(*_fenced(experiment_id, token))
        .values(heartbeat_at=now, lease_expires_at=now + timedelta(seconds=lease_s))
        .returning(Experiment.cancel_requested)
        .execution_options(synchronize_session=False)
    ).first()
    session.commit()
    if res is None:
        return HeartbeatState(alive=False, cancel_requested=True)
    return HeartbeatState(alive=True, cancel_requested=bool(res[0]))


def is_cancel_requested(session: Session, experiment_id: int) -> bool:
    q = select(Experiment.cancel_requested).where(Experiment.id == experiment_id)
    value = session.scalar(q)
    return True if value is None else bool(value)


def report_progress(
    session: Session, experiment_id: int, token: int, progress: float, epoch: int | None = None
) -> bool:
    new = min(max(float(progress), 0.0), 1.0)
    # never backwards: a resumed attempt restarts at its last checkpoint's epoch boundary
    values: dict[str, Any] = {
        "progress": case((Experiment.progress > new, Experiment.progress), else_=new)
    }
    if epoch is not None:
        values["epoch"] = epoch
    return _fenced_update(session, experiment_id, token, **values)


def _upsert_metrics(session: Session, rows: list[dict[str, Any]]) -> None:
    from sqlalchemy.dialects import postgresql, sqlite

    dialect = session.get_bind().dialect.name
    insert = postgresql.insert if dialect == "postgresql" else sqlite.insert
    stmt: Any = insert(MetricPoint).values(rows)
    stmt = stmt.on_conflict_do_update(
        index_elements=["experiment_id", "epoch", "name"], set_={"value": stmt.excluded.value}
    )
    session.execute(stmt)


def record_metrics(
    session: Session, experiment_id: int, token: int, epoch: int, values: dict[str, float]
) -> bool:
    """Store one epoch's metrics; a redelivered write overwrites instead of duplicating."""
    alive = session.execute(
        select(Experiment.id).where(*_fenced(experiment_id, token)).with_for_update()
    ).first()
    if alive is None:
        session.rollback()
        return False
    now = utcnow()
    rows = [
        {
            "experiment_id": experiment_id,
            "epoch": epoch,
            "name": k,
            "value": float(v),
            "created_at": now,
        }
        for k, v in values.items()
    ]
    if rows:
        _upsert_metrics(session, rows)
    session.execute(update(Experiment).where(Experiment.id == experiment_id).values(updated_at=now))
    session.commit()
    return True


def result_column_values(result: ExperimentResult) -> dict[str, Any]:
    """The experiments columns a result sets: :meth:`ExperimentResult.columns`, except that a
    result that does not name its task leaves the row's (set at submission) alone, and a
    classification result without a primary metric gets ``acc`` = its final val accuracy
    (a result from a worker older than tasks)."""
    columns = result.columns()
    if "task" not in result.model_fields_set:
        columns.pop("task", None)
    task = columns.get("task", result.task)
    info = TASKS.get(str(task))
    if (
        info
        and info.metric_columns
        and result.primary_metric is None
        and result.val_acc is not None
    ):
        columns["primary_metric"] = info.primary[0]
        columns["primary_value"] = result.val_acc
    return columns


def finish_experiment(
    session: Session,
    experiment_id: int,
    token: int,
    result: ExperimentResult | Mapping[str, Any],
    files: Sequence[FileRecord] = (),
) -> bool:
    """Mark the run succeeded, storing its result (JSON) and its files' records: fenced, and
    only from ``running`` (False for a run whose cancel came meanwhile: it ends cancelled, by
    :func:`mark_cancelled`, never succeeded).

    ``result``: the stored-result contract (a mapping is validated into it; its unset fields
    are left out of the stored JSON, its columns come from :func:`result_columns`).
    """
    return _end_with_result(
        session, experiment_id, token, JobStatus.succeeded, result, files, progress=1.0
    )


def prune_experiment(
    session: Session,
    experiment_id: int,
    token: int,
    result: ExperimentResult | Mapping[str, Any],
    files: Sequence[FileRecord] = (),
) -> bool:
    """Fenced, from ``running`` only: the search's pruner stopped the trial after an evaluation;
    it ends ``pruned`` with its result (the curve so far and its last metrics) and its files
    (its model as of that evaluation) stored like a finished run's. False when the lease is
    lost or a cancel came meanwhile (it wins)."""
    return _end_with_result(
        session,
        experiment_id,
        token,
        JobStatus.pruned,
        result,
        files,
        Experiment.cancel_requested.is_(False),
    )


def _end_with_result(
    session: Session,
    experiment_id: int,
    token: int,
    status: JobStatus,
    result: ExperimentResult | Mapping[str, Any],
    files: Sequence[FileRecord],
    *where: Any,
    **values: Any,
) -> bool:
    """A running run ends ``status`` with its result and files stored, in one fenced
    transaction (``where``: more conditions; ``values``: more columns). False, nothing written,
    when the lease is lost or a condition fails."""
    now = utcnow()
    if not isinstance(result, ExperimentResult):
        result = ExperimentResult.model_validate(dict(result))
    running, to_status = _moving(status, JobStatus.running)
    res = session.execute(
        update(Experiment)
        .where(*_fenced(experiment_id, token), running, *where)
        .values(
            **to_status,
            finished_at=now,
            updated_at=now,
            lease_expires_at=None,
            error=None,
            **values,
            **result_column_values(result),
        )
        .execution_options(synchronize_session=False)
    )
    if not res.rowcount:  # type: ignore[attr-defined]
        session.rollback()
        return False
    session.execute(delete(Result).where(Result.experiment_id == experiment_id))
    session.add(Result(experiment_id=experiment_id, data=result.stored()))
    for f in files:
        session.execute(
            delete(StoredFile).where(
                StoredFile.experiment_id == experiment_id, StoredFile.kind == f.kind
            )
        )
        session.add(
            StoredFile(
                experiment_id=experiment_id, kind=f.kind, path=f.path, sha256=f.sha256, size=f.size
            )
        )
    session.commit()
    return True


def fail_experiment(
    session: Session, experiment_id: int, token: int, error: str, attempts: int | None = None
) -> bool:
    """Fenced: the run ends failed with ``error``; ``attempts`` corrects the count (a claim that
    only records giving up is not an attempt)."""
    extra: dict[str, Any] = {} if attempts is None else {"attempts": attempts}
    leased, to_failed = _moving(JobStatus.failed, *LEASED)
    return _fenced_update(
        session,
        experiment_id,
        token,
        leased,
        **to_failed,
        error=error[:MAX_ERROR],
        finished_at=utcnow(),
        lease_expires_at=None,
        **extra,
    )


def mark_cancelled(session: Session, experiment_id: int, token: int) -> bool:
    """Fenced: cancelling -> cancelled (the worker saw the cancel and stopped). False when the
    lease is lost or the run is not cancelling (a cancel always makes a running run cancelling
    first)."""
    cancelling, to_cancelled = _moving(JobStatus.cancelled, JobStatus.cancelling)
    return _fenced_update(
        session,
        experiment_id,
        token,
        cancelling,
        **to_cancelled,
        finished_at=utcnow(),
        lease_expires_at=None,
    )


def requeue(session: Session, experiment_id: int, token: int, error: str) -> bool:
    """Fenced: running -> queued after a transient error (the lease is given back, the
    checkpoint kept). False when the lease is lost or a cancel came in meanwhile (the run is
    ``cancelling``: the caller ends it with ``mark_cancelled``, never back in the queue)."""
    running, to_queued = _moving(JobStatus.queued, JobStatus.running)
    return _fenced_update(
        session,
        experiment_id,
        token,
        running,
        Experiment.cancel_requested.is_(False),
        **to_queued,
        error=error[:MAX_ERROR],
        lease_owner=None,
        lease_expires_at=None,
        dispatched_at=None,
    )


def release(session: Session, experiment_id: int, token: int, note: str) -> bool:
    """Fenced: running -> queued without counting the attempt, with ``note`` saying why (a
    worker that cannot give the job the devices it asks for, ``train.devices``: the reconciler
    sends it again, to any worker). False when the lease is lost or a cancel came in."""
    running, to_queued = _moving(JobStatus.queued, JobStatus.running)
    return _fenced_update(
        session,
        experiment_id,
        token,
        running,
        Experiment.cancel_requested.is_(False),
        **to_queued,
        attempts=Experiment.attempts - 1,
        error=note[:MAX_ERROR],
        lease_owner=None,
        lease_expires_at=None,
        dispatched_at=None,
    )


def note_queued(session: Session, experiment_id: int, note: str) -> None:
    """A queued run's status note (what it waits for); not committed."""
    session.execute(
        update(Experiment)
        .where(Experiment.id == experiment_id, Experiment.status == JobStatus.queued)
        .values(error=note[:MAX_ERROR])
        .execution_options(synchronize_session=False)
    )


# ---------------------------------------------------------------- reconciler side


def redispatch_candidates(session: Session, stale_s: float = 60.0, limit: int = 500) -> list[int]:
    """Runs to send again, oldest first: queued runs (not cancelled) never dispatched or last
    dispatched over ``stale_s`` ago, and running runs whose lease expired (their worker died)
    and that were not sent again within ``stale_s``. ``claim_experiment`` decides who runs it."""
    now = utcnow()
    old = now - timedelta(seconds=stale_s)
    not_recent = or_(Experiment.dispatched_at.is_(None), Experiment.dispatched_at < old)
    q = (
        select(Experiment.id)
        .where(
            or_(
                and_(Experiment.status == JobStatus.queued, Experiment.cancel_requested.is_(False)),
                and_(Experiment.status == JobStatus.running, Experiment.lease_expires_at < now),
            ),
            not_recent,
        )
        .order_by(Experiment.id)
        .limit(limit)
    )
    return list(session.scalars(q))


def finalize_abandoned_cancels(session: Session) -> list[int]:
    """``cancelling`` runs whose worker stopped heart-beating (lease expired) become
    ``cancelled``. Commits; returns their ids."""
    now = utcnow()
    cancelling, to_cancelled = _moving(JobStatus.cancelled, JobStatus.cancelling)
    abandoned = (cancelling, Experiment.lease_expires_at < now)
    ids = list(session.scalars(select(Experiment.id).where(*abandoned).order_by(Experiment.id)))
    if ids:
        session.execute(
            update(Experiment)
            .where(Experiment.id.in_(ids), *abandoned)
            .values(**to_cancelled, finished_at=now, updated_at=now, lease_expires_at=None)
            .execution_options(synchronize_session=False)
        )
    session.commit()
    return ids


def settled_among(session: Session, experiment_ids: Iterable[int]) -> set[int]:
    """Those of ``experiment_ids`` no worker will run any more: finished, deleted, or claimed
    by a worker whose lease expired (a broker message held for them is stale)."""
    ids = set(experiment_ids)
    if not ids:
        return set()
    now = utcnow()
    rows = session.execute(
        select(Experiment.id, Experiment.status, Experiment.lease_expires_at).where(
            Experiment.id.in_(ids)
        )
    ).all()
    session.rollback()
    settled = {
        r.id
        for r in rows
        if r.status in FINISHED
        or (
            r.status != JobStatus.queued
            and r.lease_expires_at is not None
            and r.lease_expires_at < now
        )
    }
    return settled | (ids - {r.id for r in rows})


def requeue_interrupted(
    session: Session,
    owner_is_gone: Callable[[str | None], bool],
    error: str | Callable[[int], str],
) -> list[int]:
    """running -> queued for the runs whose lease owner ``owner_is_gone`` (without waiting for
    the lease to expire: ``rpg serve`` knows its own dead workers), with ``error`` as the note of
    each (a text, or a function of the run's id). Commits; returns their ids."""
    running, to_queued = _moving(JobStatus.queued, JobStatus.running)
    rows = session.execute(
        select(Experiment.id, Experiment.lease_owner).where(running).order_by(Experiment.id)
    ).all()
    ids = [i for i, owner in rows if owner_is_gone(owner)]

    def note(exp_id: int) -> str:
        return error if isinstance(error, str) else error(exp_id)

    now = utcnow()
    for exp_id in ids:
        session.execute(
            update(Experiment)
            .where(Experiment.id == exp_id, running)
            .values(
                **to_queued,
                lease_owner=None,
                lease_expires_at=None,
                dispatched_at=None,
                error=note(exp_id)[:MAX_ERROR],
                updated_at=now,
            )
            .execution_options(synchronize_session=False)
        )
    session.commit()
    return ids
