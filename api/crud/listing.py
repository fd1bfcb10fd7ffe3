"""The experiment listing: filters, sorts, opaque cursors, counts by status, changes since."""

from __future__ import annotations

import base64
import binascii
import json
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import ColumnElement, Select, and_, func, or_, select
from sqlalchemy.orm import Session

from ..models import Experiment, ExperimentTag
from .errors import CursorError

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
    task: str | None = None  # rpg_core.catalog.tasks name


def filtered(q: Select[Any], f: ListFilter) -> Select[Any]:
    if f.status:
        q = q.where(Experiment.status == f.status)
    if f.arch:
        q = q.where(Experiment.arch == f.arch)
    if f.dataset:
        q = q.where(Experiment.dataset == f.dataset)
    if f.scope:
        q = q.where(Experiment.scope == f.scope)
    if f.task:
        q = q.where(Experiment.task == f.task)
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
    q = filtered(select(Experiment), f)
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
