"""The service layer: every database read and write of the API and the worker goes through here.

Worker protocol (fenced by ``lease_token``; a call that returns False means the lease was lost,
e.g. a reconciler re-queued the run, and the worker must stop without writing anything more)::

    lease = claim_experiment(s, exp_id, worker="host:pid", lease_s=60)   # None: not claimable
    heartbeat(s, exp_id, lease.token, lease_s=60)      # -> HeartbeatState(alive, cancel_requested)
    report_progress(s, exp_id, lease.token, progress=0.4, epoch=2)
    record_metrics(s, exp_id, lease.token, epoch=2, values={"train_loss": 0.3, "val_acc": 0.8})
    finish_experiment(s, exp_id, lease.token, result={...}, files=[FileRecord(...)])
    fail_experiment(s, exp_id, lease.token, error="...")
    mark_cancelled(s, exp_id, lease.token)              # after seeing cancel_requested

Reconciler: ``redispatch_candidates`` (ids to send again), ``finalize_abandoned_cancels``.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import json
import logging
import secrets
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

from sqlalchemy import ColumnElement, Select, and_, case, delete, func, or_, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from .models import (
    ACTIVE,
    FINISHED,
    ApiToken,
    Experiment,
    ExperimentTag,
    MetricPoint,
    Result,
    StoredFile,
    Sweep,
    utcnow,
)

log = logging.getLogger(__name__)

RESULT_COLUMNS = (
    "val_acc",
    "best_val_acc",
    "train_acc",
    "backbone_params",
    "total_params",
    "train_time_s",
    "flags",
)


class ConflictError(Exception):
    """The experiment is not in a state that allows the operation (HTTP 409)."""


class CursorError(ValueError):
    """A pagination cursor that this server did not produce (HTTP 422)."""


# ---------------------------------------------------------------- experiments


def _scope_of(spec: dict[str, Any]) -> str:
    rpg = spec.get("rpg")
    if not rpg:
        return "plain"
    scope = rpg.get("scope", "global")
    return scope if isinstance(scope, str) else "custom"


def _row_for(spec: dict[str, Any], sweep_id: int | None) -> Experiment:
    rpg = spec.get("rpg") or {}
    exp = Experiment(
        name=spec["name"],
        spec=spec,
        status="queued",
        arch=spec["model"]["arch"],
        dataset=spec["data"]["dataset"],
        ring_size=rpg.get("ring_size"),
        scope=_scope_of(spec),
        sweep_id=sweep_id,
        progress=0.0,
        attempts=0,
        lease_token=0,
        cancel_requested=False,
    )
    exp.tag_rows = [ExperimentTag(tag=t) for t in sorted(set(spec.get("tags") or []))]
    return exp


def create_experiment(session: Session, spec: dict[str, Any], sweep_id: int | None = None) -> int:
    """Insert a queued experiment (``spec`` is a validated ExperimentSpec dump); not committed."""
    exp = _row_for(spec, sweep_id)
    session.add(exp)
    session.flush()
    return exp.id


def create_sweep(
    session: Session, name: str, sweep_spec: dict[str, Any], specs: Sequence[dict[str, Any]]
) -> tuple[int, list[int]]:
    """Insert a sweep and its experiments (not committed: the caller commits once)."""
    sweep = Sweep(name=name, spec=sweep_spec)
    session.add(sweep)
    session.flush()
    rows = [_row_for(spec, sweep.id) for spec in specs]
    session.add_all(rows)
    session.flush()
    return sweep.id, [r.id for r in rows]


def get_experiment(session: Session, experiment_id: int) -> Experiment | None:
    return session.get(Experiment, experiment_id)


def get_result(session: Session, experiment_id: int) -> dict[str, Any] | None:
    row = session.get(Result, experiment_id)
    return None if row is None else row.data


def mark_dispatched(session: Session, experiment_ids: Sequence[int]) -> None:
    if experiment_ids:
        session.execute(
            update(Experiment)
            .where(Experiment.id.in_(experiment_ids), Experiment.status == "queued")
            .values(dispatched_at=utcnow())
        )


def request_cancel(session: Session, experiment_id: int) -> str:
    """Cancel a run: queued -> cancelled, running -> cancelling (the worker stops at its next
    check). Returns the new status; raises ConflictError on a finished run, KeyError if absent."""
    exp = session.get(Experiment, experiment_id, with_for_update=True)
    if exp is None:
        raise KeyError(experiment_id)
    if exp.status in FINISHED:
        raise ConflictError(f"experiment {experiment_id} is already {exp.status}")
    exp.cancel_requested = True
    if exp.status == "queued":
        exp.status = "cancelled"
        exp.finished_at = utcnow()
    else:
        exp.status = "cancelling"
    session.flush()
    return exp.status


def retry_experiment(session: Session, experiment_id: int) -> None:
    """Put a failed or cancelled run back in the queue (its attempt count is kept)."""
    exp = session.get(Experiment, experiment_id, with_for_update=True)
    if exp is None:
        raise KeyError(experiment_id)
    if exp.status not in ("failed", "cancelled"):
        raise ConflictError(
            f"experiment {experiment_id} is {exp.status}; only failed or cancelled runs can retry"
        )
    exp.status = "queued"
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


def delete_experiment(session: Session, experiment_id: int) -> list[str]:
    """Delete a finished run with its metrics, result and file rows; returns the files' stored
    paths (relative to the artifact dir) for the caller to remove after the commit."""
    exp = session.get(Experiment, experiment_id, with_for_update=True)
    if exp is None:
        raise KeyError(experiment_id)
    if exp.status not in FINISHED:
        raise ConflictError(
            f"experiment {experiment_id} is {exp.status}; cancel it and wait until it has stopped"
        )
    paths = list(
        session.scalars(select(StoredFile.path).where(StoredFile.experiment_id == experiment_id))
    )
    for model in (MetricPoint, Result, StoredFile):
        session.execute(delete(model).where(model.experiment_id == experiment_id))
    session.delete(exp)
    session.flush()
    return paths


# ---------------------------------------------------------------- listing


SORTS: dict[str, Any] = {
    "id": Experiment.id,
    "created": Experiment.id,
    "name": Experiment.name,
    "best_val_acc": func.coalesce(Experiment.best_val_acc, -1.0),
    "updated": Experiment.updated_at,
}


@dataclass(frozen=True)
class ListFilter:
    status: str | None = None
    arch: str | None = None
    dataset: str | None = None
    sweep_id: int | None = None
    tag: str | None = None
    scope: str | None = None


def _filtered(q: Select[Any], f: ListFilter) -> Select[Any]:
    if f.status:
        q = q.where(Experiment.status == f.status)
    if f.arch:
        q = q.where(Experiment.arch == f.arch)
    if f.dataset:
        q = q.where(Experiment.dataset == f.dataset)
    if f.scope:
        q = q.where(Experiment.scope == f.scope)
    if f.sweep_id is not None:
        q = q.where(Experiment.sweep_id == f.sweep_id)
    if f.tag:
        q = q.where(
            Experiment.id.in_(select(ExperimentTag.experiment_id).where(ExperimentTag.tag == f.tag))
        )
    return q


def encode_cursor(sort: str, value: Any, last_id: int) -> str:
    if isinstance(value, datetime):
        value = value.isoformat()
    raw = json.dumps({"s": sort, "v": value, "i": last_id}, separators=(",", ":"))
    return base64.urlsafe_b64encode(raw.encode()).decode().rstrip("=")


def decode_cursor(cursor: str, sort: str) -> tuple[Any, int]:
    try:
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4))
        data = json.loads(raw)
        value, last_id = data["v"], data["i"]
        ok = data["s"] == sort and isinstance(last_id, int) and not isinstance(last_id, bool)
    except (binascii.Error, ValueError, TypeError, KeyError, UnicodeDecodeError):
        ok = False
    if not ok:
        raise CursorError("cursor is not one this listing returned (or the sort changed)")
    if sort == "updated":
        try:
            value = datetime.fromisoformat(value)
        except (TypeError, ValueError):
            raise CursorError("cursor is not one this listing returned") from None
    elif sort == "name" and not isinstance(value, str):
        raise CursorError("cursor is not one this listing returned")
    elif sort == "best_val_acc" and not isinstance(value, int | float):
        raise CursorError("cursor is not one this listing returned")
    elif sort in ("id", "created") and not isinstance(value, int):
        raise CursorError("cursor is not one this listing returned")
    return value, last_id


def _sort_value(exp: Experiment, sort: str) -> Any:
    if sort in ("id", "created"):
        return exp.id
    if sort == "best_val_acc":
        return exp.best_val_acc if exp.best_val_acc is not None else -1.0
    if sort == "updated":
        return exp.updated_at
    return exp.name


def list_experiments(
    session: Session,
    f: ListFilter,
    sort: str = "-id",
    limit: int = 50,
    cursor: str | None = None,
) -> tuple[list[Experiment], str | None]:
    """One page of experiments and the cursor of the next page (None at the end).

    ``sort`` is a key of SORTS, with a leading ``-`` for descending; ties break on the id.
    """
    desc = sort.startswith("-")
    key = sort.lstrip("-")
    col = SORTS[key]
    q = _filtered(select(Experiment), f)
    if cursor:
        value, last_id = decode_cursor(cursor, sort)
        cond: ColumnElement[bool]
        if key in ("id", "created"):
            cond = Experiment.id < last_id if desc else Experiment.id > last_id
        elif desc:
            cond = or_(col < value, and_(col == value, Experiment.id < last_id))
        else:
            cond = or_(col > value, and_(col == value, Experiment.id > last_id))
        q = q.where(cond)
    if key in ("id", "created"):
        q = q.order_by(Experiment.id.desc() if desc else Experiment.id.asc())
    else:
        q = q.order_by(
            *((col.desc(), Experiment.id.desc()) if desc else (col.asc(), Experiment.id.asc()))
        )
    rows = list(session.scalars(q.limit(limit + 1)))
    if len(rows) <= limit:
        return rows, None
    rows = rows[:limit]
    return rows, encode_cursor(sort, _sort_value(rows[-1], key), rows[-1].id)


def count_by_status(session: Session, sweep_id: int | None = None) -> dict[str, int]:
    q = select(Experiment.status, func.count()).group_by(Experiment.status)
    if sweep_id is not None:
        q = q.where(Experiment.sweep_id == sweep_id)
    return {status: n for status, n in session.execute(q).all()}


def changed_since(session: Session, since: datetime, limit: int = 500) -> list[Experiment]:
    q = (
        select(Experiment)
        .where(Experiment.updated_at > since)
        .order_by(Experiment.updated_at, Experiment.id)
        .limit(limit)
    )
    return list(session.scalars(q))


# ---------------------------------------------------------------- sweeps


def get_sweep(session: Session, sweep_id: int) -> Sweep | None:
    return session.get(Sweep, sweep_id)


def list_sweeps(session: Session, limit: int = 50, before_id: int | None = None) -> list[Sweep]:
    q = select(Sweep).order_by(Sweep.id.desc()).limit(limit)
    if before_id is not None:
        q = q.where(Sweep.id < before_id)
    return list(session.scalars(q))


def sweep_counts(session: Session, sweep_ids: Iterable[int]) -> dict[int, dict[str, int]]:
    ids = list(sweep_ids)
    out: dict[int, dict[str, int]] = {i: {} for i in ids}
    if not ids:
        return out
    q = (
        select(Experiment.sweep_id, Experiment.status, func.count())
        .where(Experiment.sweep_id.in_(ids))
        .group_by(Experiment.sweep_id, Experiment.status)
    )
    for sweep_id, status, n in session.execute(q).all():
        if sweep_id is not None:
            out[sweep_id][status] = n
    return out


# ---------------------------------------------------------------- metrics and results


def metric_series(session: Session, experiment_id: int, after_id: int = 0) -> list[MetricPoint]:
    q = (
        select(MetricPoint)
        .where(MetricPoint.experiment_id == experiment_id, MetricPoint.id > after_id)
        .order_by(MetricPoint.id)
    )
    return list(session.scalars(q))


@dataclass(frozen=True)
class Point:
    experiment_id: int
    arch: str
    scope: str
    dataset: str
    params: int
    accuracy: float
    flags: tuple[str, ...] = ()  # guard-rail flags (rpg_core.health)


def power_law_points(
    session: Session, f: ListFilter, metric: str = "best_val_acc", limit: int = 10_000
) -> list[Point]:
    """(params, accuracy) of succeeded runs with both set, oldest first (columns only)."""
    col = getattr(Experiment, metric)
    q = select(
        Experiment.id,
        Experiment.arch,
        Experiment.scope,
        Experiment.dataset,
        Experiment.backbone_params,
        col,
        Experiment.flags,
    )
    q = _filtered(q, f).where(
        Experiment.status == "succeeded",
        Experiment.backbone_params.is_not(None),
        col.is_not(None),
    )
    rows = session.execute(q.order_by(Experiment.id).limit(limit)).all()
    return [
        Point(int(r[0]), r[1], r[2], r[3], int(r[4]), float(r[5]), tuple((r[6] or "").split(",")))
        if r[6]
        else Point(int(r[0]), r[1], r[2], r[3], int(r[4]), float(r[5]))
        for r in rows
    ]


def gap_points(session: Session, f: ListFilter, limit: int = 10_000) -> list[tuple[Point, float]]:
    """(point at final val accuracy, train - val gap) of succeeded runs with train accuracy."""
    q: Any = select(
        Experiment.id,
        Experiment.arch,
        Experiment.scope,
        Experiment.dataset,
        Experiment.backbone_params,
        Experiment.val_acc,
        Experiment.flags,
        Experiment.train_acc,
    )
    q = _filtered(q, f).where(
        Experiment.status == "succeeded",
        Experiment.backbone_params.is_not(None),
        Experiment.val_acc.is_not(None),
        Experiment.train_acc.is_not(None),
    )
    rows = session.execute(q.order_by(Experiment.id).limit(limit)).all()
    flags = [tuple(str(c) for c in str(r[6] or "").split(",") if c) for r in rows]
    return [
        (Point(int(r[0]), r[1], r[2], r[3], int(r[4]), float(r[5]), fl), float(r[7]) - float(r[5]))
        for r, fl in zip(rows, flags, strict=True)
    ]


def ood_results(
    session: Session, f: ListFilter, limit: int = 2_000
) -> list[tuple[Experiment, dict[str, Any]]]:
    """Succeeded runs whose result holds out-of-distribution accuracies (eval.ood), oldest
    first, with their result JSON."""
    q = select(Experiment, Result.data).join(Result, Result.experiment_id == Experiment.id)
    q = _filtered(q, f).where(Experiment.status == "succeeded")
    rows = session.execute(q.order_by(Experiment.id).limit(limit)).all()
    return [(r[0], r[1]) for r in rows if isinstance(r[1], dict) and r[1].get("ood")]


def get_file(session: Session, experiment_id: int, kind: str) -> StoredFile | None:
    q = select(StoredFile).where(StoredFile.experiment_id == experiment_id, StoredFile.kind == kind)
    return session.scalars(q).first()


# ---------------------------------------------------------------- worker protocol


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
class FileRecord:
    """A file the worker wrote under the artifact dir (``path`` relative to it)."""

    kind: str
    path: str
    sha256: str
    size: int


def _fenced(experiment_id: int, token: int) -> list[ColumnElement[bool]]:
    return [
        Experiment.id == experiment_id,
        Experiment.lease_token == token,
        Experiment.status.in_(ACTIVE),
    ]


def claim_experiment(
    session: Session, experiment_id: int, worker: str, lease_s: float = 60.0
) -> Lease | None:
    """Take a queued run (or one whose lease expired) and commit. None: nothing to run
    (finished, cancelled, or another worker holds a live lease)."""
    now = utcnow()
    claimable = or_(
        Experiment.status == "queued",
        and_(Experiment.status.in_(ACTIVE), Experiment.lease_expires_at < now),
    )
    stmt = (
        update(Experiment)
        .where(Experiment.id == experiment_id, claimable, Experiment.cancel_requested.is_(False))
        .values(
            status="running",
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


def _fenced_update(session: Session, experiment_id: int, token: int, **values: Any) -> bool:
    values.setdefault("updated_at", utcnow())
    res = session.execute(
        update(Experiment)
        .where(*_fenced(experiment_id, token))
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


def finish_experiment(
    session: Session,
    experiment_id: int,
    token: int,
    result: dict[str, Any],
    files: Sequence[FileRecord] = (),
) -> bool:
    """Mark the run succeeded, storing its result (JSON) and its files' records."""
    now = utcnow()
    columns = {k: result[k] for k in RESULT_COLUMNS if result.get(k) is not None}
    res = session.execute(
        update(Experiment)
        .where(*_fenced(experiment_id, token))
        .values(
            status="succeeded",
            progress=1.0,
            finished_at=now,
            updated_at=now,
            lease_expires_at=None,
            error=None,
            **columns,
        )
        .execution_options(synchronize_session=False)
    )
    if not res.rowcount:  # type: ignore[attr-defined]
        session.rollback()
        return False
    session.execute(delete(Result).where(Result.experiment_id == experiment_id))
    session.add(Result(experiment_id=experiment_id, data=result))
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
    now = utcnow()
    extra: dict[str, Any] = {} if attempts is None else {"attempts": attempts}
    return _fenced_update(
        session,
        experiment_id,
        token,
        status="failed",
        error=error[:10_000],
        finished_at=now,
        lease_expires_at=None,
        **extra,
    )


def mark_cancelled(session: Session, experiment_id: int, token: int) -> bool:
    now = utcnow()
    return _fenced_update(
        session, experiment_id, token, status="cancelled", finished_at=now, lease_expires_at=None
    )


def redispatch_candidates(session: Session, stale_s: float = 60.0, limit: int = 500) -> list[int]:
    """For the reconciler: queued runs never dispatched or dispatched over ``stale_s`` ago, and
    running runs whose lease expired (their worker died). Send each again with ``dispatch``;
    ``claim_experiment`` decides who really runs it."""
    now = utcnow()
    old = now - timedelta(seconds=stale_s)
    q = (
        select(Experiment.id)
        .where(
            or_(
                and_(
                    Experiment.status == "queued",
                    or_(Experiment.dispatched_at.is_(None), Experiment.dispatched_at < old),
                ),
                and_(Experiment.status == "running", Experiment.lease_expires_at < now),
            )
        )
        .order_by(Experiment.id)
        .limit(limit)
    )
    return list(session.scalars(q))


def finalize_abandoned_cancels(session: Session) -> int:
    """ "cancelling" runs whose worker stopped heart-beating become "cancelled". Commits."""
    now = utcnow()
    res = session.execute(
        update(Experiment)
        .where(Experiment.status == "cancelling", Experiment.lease_expires_at < now)
        .values(status="cancelled", finished_at=now, updated_at=now, lease_expires_at=None)
        .execution_options(synchronize_session=False)
    )
    session.commit()
    return int(res.rowcount)  # type: ignore[attr-defined]


def file_record(artifact_dir: Path, relative: str, kind: str = "model") -> FileRecord:
    """Hash a file the worker wrote at ``artifact_dir/relative`` into a FileRecord."""
    path = artifact_dir / relative
    h = hashlib.sha256()
    with path.open("rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            h.update(chunk)
    return FileRecord(kind=kind, path=relative, sha256=h.hexdigest(), size=path.stat().st_size)


def artifact_relpath(experiment_id: int, kind: str = "model") -> str:
    """Where the worker should write an experiment's file, relative to the artifact dir."""
    suffix = {"model": "model.rpg"}.get(kind, f"{kind}.bin")
    return f"experiments/{int(experiment_id)}/{suffix}"


# ---------------------------------------------------------------- API tokens


def hash_token(token: str) -> str:
    return hashlib.sha256(token.encode("utf-8", "surrogatepass")).hexdigest()


def create_token(session: Session, name: str) -> str:
    """A new API token (returned once; only its sha256 is stored). Commits."""
    token = "rpg_" + secrets.token_urlsafe(32)
    session.add(ApiToken(name=name, token_hash=hash_token(token)))
    try:
        session.commit()
    except IntegrityError:
        session.rollback()
        raise ConflictError(f"a token named {name!r} exists already") from None
    return token


def check_token(session: Session, token: str) -> ApiToken | None:
    """The token's row if ``token`` is valid (constant-time comparison of the hashes)."""
    digest = hash_token(token)
    row = session.scalars(select(ApiToken).where(ApiToken.token_hash == digest)).first()
    if row is None or not hmac.compare_digest(row.token_hash, digest):
        return None
    now = utcnow()
    if row.last_used_at is None or now - row.last_used_at > timedelta(minutes=1):
        row.last_used_at = now
        session.commit()
    return row
