"""FastAPI dependencies (Annotated aliases): settings, DB session, read/write authorisation.

A dependency that does no I/O is ``async def``: FastAPI runs a plain ``def`` dependency in its
thread pool, a hand-off each way per request (bench_api.py --mode profile); the session (its
close returns the connection) and the token check (a query) stay in the pool.
"""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Annotated, Any, Literal

from fastapi import Depends, HTTPException, Path, Query, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from pydantic import BeforeValidator, Field
from sqlalchemy.orm import Session

from rpg_core.catalog.tasks import DEFAULT_TASK, TASKS, list_tasks

from .crud.listing import ListFilter
from .crud.tokens import TokenCache, check_token
from .settings import Settings
from .status import JobStatus
from .validation import TAG_QUERY_PATTERN

bearer = HTTPBearer(auto_error=False, description="an API token from `rpg token create NAME`")


async def get_settings(request: Request) -> Settings:
    settings: Settings = request.app.state.settings
    return settings


def get_session(request: Request) -> Iterator[Session]:
    with request.app.state.sessionmaker() as session:
        yield session


SettingsDep = Annotated[Settings, Depends(get_settings)]
SessionDep = Annotated[Session, Depends(get_session)]
Credentials = Annotated[HTTPAuthorizationCredentials | None, Depends(bearer)]


HOW_TO_TOKEN = (
    "Create one where the server runs, with its RPG_HOME (or RPG_DATABASE_URL): "
    "`rpg token create NAME`; then `export RPG_API_TOKEN=<token>` for the rpg commands, "
    "or send the header `Authorization: Bearer <token>`"
)


def _unauthorized(message: str) -> HTTPException:
    return HTTPException(401, detail=message, headers={"WWW-Authenticate": "Bearer"})


async def require_token(request: Request, session: SessionDep, creds: Credentials) -> str:
    """Every write: a valid ``Authorization: Bearer <token>``. Returns the token's name.
    A client whose tokens failed ``auth_max_failures`` times in the window gets 429s.
    A token found valid in the last ``token_cache_s`` needs no query (api.crud.TokenCache);
    otherwise the lookup (a query) runs in the thread pool."""
    if creds is None or not creds.credentials:
        raise _unauthorized(f"this request needs an API token. {HOW_TO_TOKEN}")
    throttle = getattr(request.app.state, "auth_throttle", None)
    client = request.client.host if request.client else "?"
    if throttle is not None:
        throttle.check(client)
    cache: TokenCache | None = getattr(request.app.state, "token_cache", None)
    name = cache.cached(creds.credentials) if cache is not None else None
    if name is None:
        name = await run_in_threadpool(_lookup, cache, session, creds.credentials)
    if name is None:
        if throttle is not None:
            throttle.failed(client)
        raise _unauthorized(
            "invalid API token: this server's database does not know it (a token belongs to the "
            f"database it was created in). {HOW_TO_TOKEN}"
        )
    return name


def _lookup(cache: TokenCache | None, session: Session, token: str) -> str | None:
    if cache is not None:
        return cache.name_of(session, token)
    row = check_token(session, token)
    return None if row is None else row.name


async def allow_read(
    request: Request, session: SessionDep, settings: SettingsDep, creds: Credentials
) -> str | None:
    """Reads: public when ``public_reads`` is set, otherwise they need a token as writes do."""
    if settings.public_reads:
        return None
    return await require_token(request, session, creds)


WriteAuth = Annotated[str, Depends(require_token)]
ReadAuth = Annotated[str | None, Depends(allow_read)]

MAX_ID = 2**31 - 1
_DIGITS = re.compile(r"0|[1-9][0-9]{0,9}", re.ASCII)


def _strict_int(value: Any) -> Any:
    """Path and query integers: plain ASCII digits ("1.0", "01", "1\n", "+1", "١" are refused)."""
    if isinstance(value, str) and not _DIGITS.fullmatch(value):
        raise ValueError(
            "must be a whole number in plain digits (no sign, leading zero or decimal point)"
        )
    return value


StrictDigits = BeforeValidator(_strict_int)
ExperimentId = Annotated[
    int, Path(ge=1, le=MAX_ID, description="experiment id", examples=[42]), StrictDigits
]
SweepId = Annotated[int, Path(ge=1, le=MAX_ID, description="sweep id", examples=[3]), StrictDigits]


def unprocessable(field: str, message: str) -> HTTPException:
    """A 422 naming the query field, in the shape of the API's validation errors."""
    return HTTPException(422, detail=[{"field": field, "message": message}])


TaskName = Annotated[
    str | None,
    Query(
        max_length=64,
        description="a task of the registry (GET /api/tasks): classification, pose, multitask",
    ),
]


def checked_task(task: str | None) -> str | None:
    """``task`` if the registry knows it (None passes), else a 422 naming ``task``."""
    if task is not None and task not in TASKS:
        raise unprocessable("task", f"unknown task {task!r}; use one of {', '.join(list_tasks())}")
    return task


# --- the experiment listing's query (the API's list and the dashboard's runs table) ---------
Sort = Literal[
    "id", "-id", "created", "-created", "name", "-name",
    "best_val_acc", "-best_val_acc", "updated", "-updated",
]  # fmt: skip
Label = Annotated[str, Query(max_length=128, pattern=r"^[A-Za-z0-9_.:\-]+$")]


@dataclass(frozen=True)
class ListQuery:
    filter: ListFilter
    sort: str
    limit: int
    cursor: str | None
    cursor_key: bytes | None = None  # Settings.cursor_key(): signs and checks the cursors


async def list_query(
    settings: SettingsDep,
    status: JobStatus | None = None,
    arch: Label | None = None,
    dataset: Label | None = None,
    scope: Label | None = None,
    sweep: Annotated[int | None, Query(ge=1, le=MAX_ID), StrictDigits] = None,
    tag: Annotated[str | None, Query(max_length=64, pattern=TAG_QUERY_PATTERN)] = None,
    sort: Sort = "-id",
    limit: Annotated[int, Query(ge=1, le=200), StrictDigits] = 50,
    cursor: Annotated[str | None, Query(max_length=512)] = None,
    task: TaskName = None,
) -> ListQuery:
    f = ListFilter(
        status=status,
        arch=arch,
        dataset=dataset,
        sweep_id=sweep,
        tag=tag,
        scope=scope,
        task=checked_task(task),
    )
    return ListQuery(
        filter=f, sort=sort, limit=limit, cursor=cursor, cursor_key=settings.cursor_key()
    )


ListQueryDep = Annotated[ListQuery, Depends(list_query)]


# --- the analysis queries (the API's analysis and the dashboard's figures) --------------------
Accuracy = Annotated[float, Field(gt=0, lt=1)]
Quantity = Literal["accuracy", "gap"]


async def analysis_filter(
    sweep: Annotated[int | None, Query(ge=1, le=MAX_ID), StrictDigits] = None,
    arch: Label | None = None,
    dataset: Label | None = None,
    scope: Label | None = None,
    tag: Annotated[str | None, Query(max_length=64, pattern=TAG_QUERY_PATTERN)] = None,
) -> ListFilter:
    """Which succeeded runs an analysis reads (every analysis endpoint and figure)."""
    return ListFilter(arch=arch, dataset=dataset, sweep_id=sweep, tag=tag, scope=scope)


AnalysisFilterDep = Annotated[ListFilter, Depends(analysis_filter)]


def metric_keys(task: str) -> list[str]:
    """The metrics a task's analysis can read: its metric keys (classification: also the
    best_val_acc and val_acc columns)."""
    return list(TASKS[task].analysis_metrics)


def checked_metric(task: str, metric: str | None) -> str:
    """``metric`` (default: the task's first primary metric; classification: best_val_acc, as
    before tasks) if the task has it, else a 422 naming ``metric`` and the allowed keys."""
    if metric is None:
        return TASKS[task].default_metric
    keys = metric_keys(task)
    if metric not in keys:
        raise unprocessable(
            "metric", f"task {task!r} has no metric {metric!r}; use one of {', '.join(keys)}"
        )
    return metric


MetricName = Annotated[
    str | None,
    Query(
        max_length=64,
        description="a metric key of the task (GET /api/tasks); default: its first primary "
        "metric (classification: best_val_acc; also val_acc, acc = val_acc)",
    ),
]


XAxis = Literal["params", "bytes"]  # a power law's x: backbone parameters, or model file bytes


@dataclass(frozen=True)
class PowerLawQuery:
    filter: ListFilter
    metric: str = "best_val_acc"
    targets: tuple[float, ...] = ()
    include_flagged: bool = False
    quantity: Quantity = "accuracy"
    task: str = "classification"
    x: XAxis = "params"  # the x axis: backbone parameters, or the model file's bytes
    tuned: bool = True  # search trials: the best of each study as a tuned series (False: none)


async def power_law_query(
    f: AnalysisFilterDep,
    metric: MetricName = None,
    target: Annotated[
        list[Accuracy] | None,
        Query(max_length=16, description="accuracies to predict params for"),
    ] = None,
    include_flagged: Annotated[
        bool, Query(description="also fit runs the guard rails flagged (diverged, near chance)")
    ] = False,
    quantity: Annotated[
        Quantity,
        Query(
            description="accuracy: the metric, with fitted power laws; gap: train accuracy minus "
            "final validation accuracy per run (metric ignored, not fitted)"
        ),
    ] = "accuracy",
    task: TaskName = DEFAULT_TASK,
    x: Annotated[
        XAxis,
        Query(
            description="the x axis: params (backbone parameters, the default) or bytes (the "
            "bytes of the run's downloadable model file; runs without one are left out)",
        ),
    ] = "params",
    tuned: Annotated[
        bool,
        Query(
            description="search trials: the best trial of each study as a tuned series next to "
            "the untuned runs (true, the default), or left out (false)"
        ),
    ] = True,
) -> PowerLawQuery:
    name = checked_task(task) or DEFAULT_TASK
    if quantity == "gap" and TASKS[name].train_metric is None:
        with_gap = ", ".join(f"task={t.name}" for t in TASKS.values() if t.train_metric)
        raise unprocessable(
            "quantity",
            "quantity=gap (train accuracy minus validation accuracy) exists only for "
            f"{with_gap}; task {name!r} has no train accuracy: use quantity=accuracy "
            f"with one of its metrics ({', '.join(metric_keys(name))})",
        )
    f = dataclasses.replace(f, task=name)
    return PowerLawQuery(
        f,
        checked_metric(name, metric),
        tuple(target or ()),
        include_flagged,
        quantity,
        name,
        x,
        tuned,
    )


PowerLawQueryDep = Annotated[PowerLawQuery, Depends(power_law_query)]


# --- the comparison table (paper Tables 4 and 5) ----------------------------------------------
@dataclass(frozen=True)
class ComparisonQuery:
    filter: ListFilter
    task: str
    conditions: str | None = None


ConditionsKey = Annotated[
    str | None,
    Query(
        pattern=r"^[0-9a-f]{16}$",
        description="a table's conditions key (the response's conditions_key, or one of its "
        "others): default, the largest group of comparable runs",
    ),
]


async def comparison_query(
    f: AnalysisFilterDep, task: TaskName = None, conditions: ConditionsKey = None
) -> ComparisonQuery:
    """A sweep (``sweep``) or a task with filters; without ``task`` the sweep's runs say it."""
    name = checked_task(task)
    if name is None and f.sweep_id is None:
        raise unprocessable(
            "task", "give a sweep (?sweep=<id>) or a task (?task=pose or ?task=multitask)"
        )
    return ComparisonQuery(dataclasses.replace(f, task=name), name or "", conditions)


ComparisonQueryDep = Annotated[ComparisonQuery, Depends(comparison_query)]
