"""The experiment listing: filters, sorts, opaque cursors, counts by status, changes since."""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import json
import math
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, cast

from sqlalchemy import ColumnElement, Float, Select, func, literal_column, select, tuple_
from sqlalchemy.orm import Session, defer

from ..models import BEST_VAL_ACC_ORDER, Experiment, ExperimentTag
from .errors import CursorError

SORTS: dict[str, Any] = {
    "id": Experiment.id,
    "created": Experiment.id,
    "name": Experiment.name,
    # the expression of ix_experiments_best_val_acc_order, as text so the planner matches it
    "best_val_acc": literal_column(BEST_VAL_ACC_ORDER, Float),
    "updated": Experiment.updated_at,
}


SUMMARY_DEFERRED = (Experiment.spec, Experiment.conditions)  # not in a listing's rows


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


# A cursor is ``base64url(json) "." base64url(hmac)``: signed with the server's key (an HMAC-SHA256
# over the JSON), so only cursors this server issued are read, and its values are range-checked
# anyway (a leaked key or an old format never reaches the database as an out-of-range value).
MAX_ROW_ID = 2**31 - 1  # the id columns are 32-bit integers (PostgreSQL ``integer``)
MAX_NAME_CHARS = 128  # Experiment.name is String(128)
MAX_CURSOR_CHARS = 512  # the query parameter's limit (api.deps)
_SIG_BYTES = 16
DEFAULT_CURSOR_KEY = b"rpg-studio listing cursor"  # callers pass Settings.cursor_key()


def _b64(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def _signature(key: bytes, payload: bytes) -> bytes:
    return hmac.new(key, payload, hashlib.sha256).digest()[:_SIG_BYTES]


def encode_cursor(sort: str, value: Any, last_id: int, key: bytes | None = None) -> str:
    """The opaque, signed cursor after the row (``value``, ``last_id``) in ``sort`` order."""
    if isinstance(value, datetime):
        value = value.isoformat()
    payload = json.dumps({"s": sort, "v": value, "i": last_id}, separators=(",", ":")).encode()
    return f"{_b64(payload)}.{_b64(_signature(key or DEFAULT_CURSOR_KEY, payload))}"


def _bad(why: str) -> CursorError:
    return CursorError(
        f"cursor is not one this listing returned ({why}); drop the cursor parameter to start "
        "from the first page, and pass back next_cursor unchanged with the same sort"
    )


def _is_int(v: Any) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


def _checked_value(key_name: str, value: Any) -> Any:
    """The cursor's sort value in the column's type and range, or a CursorError."""
    if key_name == "updated":
        if not isinstance(value, str) or len(value) > 40:
            raise _bad("not a timestamp")
        try:
            at = datetime.fromisoformat(value)
        except ValueError:
            raise _bad("not a timestamp") from None
        if at.tzinfo is None:
            raise _bad("a timestamp without a time zone")
        try:
            return at.astimezone(UTC)
        except OverflowError:
            raise _bad("timestamp out of range") from None
    if key_name == "name":
        if not isinstance(value, str) or not value or len(value) > MAX_NAME_CHARS:
            raise _bad(f"a name is 1 to {MAX_NAME_CHARS} characters")
        if not value.isprintable():  # NUL, control characters, lone surrogates
            raise _bad("a name has no control characters")
        return value
    if key_name == "best_val_acc":
        if not (_is_int(value) or isinstance(value, float)):
            raise _bad("not a number")
        try:
            number = float(value)
        except OverflowError:
            raise _bad("number out of range") from None
        if not math.isfinite(number) or abs(number) > 1e300:
            raise _bad("number out of range")
        return number
    # id / created: the id itself
    if not _is_int(value) or not 0 <= value <= MAX_ROW_ID:
        raise _bad(f"an id is a whole number from 0 to {MAX_ROW_ID}")
    return value


def decode_cursor(cursor: str, sort: str, key: bytes | None = None) -> tuple[Any, int]:
    """(sort value, last id) of a cursor ``encode_cursor`` issued for ``sort``, with the value in
    its column's type and range; anything else (forged, altered, another sort's) is a
    CursorError (HTTP 422 naming ``cursor``)."""
    if not isinstance(cursor, str) or len(cursor) > MAX_CURSOR_CHARS or cursor.count(".") != 1:
        raise _bad("not in the cursor format")
    body, sig = cursor.split(".")
    try:
        payload, given = _unb64(body), _unb64(sig)
    except (binascii.Error, ValueError):
        raise _bad("not in the cursor format") from None
    if _b64(payload) != body or _b64(given) != sig:  # one spelling per cursor (no stray bits)
        raise _bad("not in the cursor format")
    if not hmac.compare_digest(given, _signature(key or DEFAULT_CURSOR_KEY, payload)):
        raise _bad("its signature does not match this server's key")
    try:
        data = json.loads(payload)
        cursor_sort, value, last_id = data["s"], data["v"], data["i"]
    except (ValueError, TypeError, KeyError, UnicodeDecodeError):
        raise _bad("not in the cursor format") from None
    if cursor_sort != sort:
        raise _bad(f"it was issued for sort={cursor_sort!r}, not sort={sort!r}")
    if not _is_int(last_id) or not 0 <= last_id <= MAX_ROW_ID:
        raise _bad(f"an id is a whole number from 0 to {MAX_ROW_ID}")
    return _checked_value(sort.lstrip("-"), value), last_id


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
    key: bytes | None = None,
    summary: bool = False,
) -> tuple[list[Experiment], str | None]:
    """One page of experiments and the cursor of the next page (None at the end).

    ``sort`` is a key of SORTS, with a leading ``-`` for descending; ties break on the id.
    ``key`` signs and checks the cursors (the API passes ``Settings.cursor_key()``).
    ``summary``: the rows leave out the stored spec and conditions (JSON documents a listing
    never shows; reading them raises instead of loading them row by row).
    """
    q = select(Experiment)
    if summary:
        q = q.options(*(defer(c, raiseload=True) for c in SUMMARY_DEFERRED))
    q = _page(q, f, sort, limit, cursor, key)
    rows = list(session.scalars(q))
    if len(rows) <= limit:
        return rows, None
    rows = rows[:limit]
    col_key = sort.lstrip("-")
    return rows, encode_cursor(sort, _sort_value(rows[-1], col_key), rows[-1].id, key)


# the columns of a listing's row (api.schemas.ExperimentSummary but its tags), and the sorts'
SUMMARY_COLUMNS = (
    Experiment.id, Experiment.name, Experiment.status, Experiment.arch, Experiment.dataset,
    Experiment.scope, Experiment.ring_size, Experiment.sweep_id, Experiment.progress,
    Experiment.epoch, Experiment.attempts, Experiment.created_at, Experiment.started_at,
    Experiment.finished_at, Experiment.val_acc, Experiment.best_val_acc,
    Experiment.backbone_params, Experiment.flags, Experiment.updated_at,
)  # fmt: skip


def list_summaries(
    session: Session,
    f: ListFilter,
    sort: str = "-id",
    limit: int = 50,
    cursor: str | None = None,
    key: bytes | None = None,
) -> tuple[list[dict[str, Any]], str | None]:
    """As ``list_experiments(summary=True)`` but as plain rows of SUMMARY_COLUMNS (a dict per
    run, its sorted ``tags`` included): Core rows, no ORM objects (bench_api.py --mode profile:
    building Experiment objects was 16% of a listing). Two queries: the page, its tags."""
    columns = cast("Select[Any]", select(*SUMMARY_COLUMNS))
    q = _page(columns, f, sort, limit, cursor, key)
    rows = [dict(r._mapping) for r in session.execute(q)]
    next_cursor = None
    if len(rows) > limit:
        rows = rows[:limit]
        last = rows[-1]
        value = {"id": last["id"], "created": last["id"], "name": last["name"],
                 "updated": last["updated_at"],
                 "best_val_acc": -1.0 if last["best_val_acc"] is None else last["best_val_acc"],
                 }[sort.lstrip("-")]  # fmt: skip
        next_cursor = encode_cursor(sort, value, last["id"], key)
    tags: dict[int, list[str]] = {r["id"]: [] for r in rows}
    if rows:
        for exp_id, tag in session.execute(
            select(ExperimentTag.experiment_id, ExperimentTag.tag).where(
                ExperimentTag.experiment_id.in_(list(tags))
            )
        ):
            tags[exp_id].append(tag)
    for r in rows:
        r["tags"] = sorted(tags[r["id"]])
    return rows, next_cursor


def _page(
    q: Select[Any], f: ListFilter, sort: str, limit: int, cursor: str | None, key: bytes | None
) -> Select[Any]:
    """``q`` filtered, after the cursor, in ``sort`` order, ``limit`` + 1 rows (the extra one
    says whether a next page exists)."""
    desc = sort.startswith("-")
    col_key = sort.lstrip("-")
    col = SORTS[col_key]
    q = filtered(q, f)
    if cursor:
        value, last_id = decode_cursor(cursor, sort, key)
        cond: ColumnElement[bool]
        if col_key in ("id", "created"):
            cond = Experiment.id < last_id if desc else Experiment.id > last_id
        elif desc:  # a row comparison: one range of the (col, id) index
            cond = tuple_(col, Experiment.id) < tuple_(value, last_id)
        else:
            cond = tuple_(col, Experiment.id) > tuple_(value, last_id)
        q = q.where(cond)
    if col_key in ("id", "created"):
        q = q.order_by(Experiment.id.desc() if desc else Experiment.id.asc())
    else:
        q = q.order_by(
            *((col.desc(), Experiment.id.desc()) if desc else (col.asc(), Experiment.id.asc()))
        )
    return q.limit(limit + 1)


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
