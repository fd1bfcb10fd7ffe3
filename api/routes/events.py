"""Server-Sent Events: one experiment's progress and metrics, and a global status stream.

The server polls the database every ``sse_poll_s`` seconds; a stream lasts at most ``sse_max_s``
(or ``?max_s=``) and browsers' EventSource reconnects by itself.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncIterator, Callable
from datetime import datetime
from typing import Annotated, Any, TypeVar

from fastapi import APIRouter, HTTPException, Query, Request
from fastapi.responses import StreamingResponse
from starlette.concurrency import run_in_threadpool

from .. import crud
from ..deps import ExperimentId, ReadAuth, SessionDep, SettingsDep
from ..models import utcnow
from ..status import FINISHED

router = APIRouter(tags=["events"])
T = TypeVar("T")
MaxSeconds = Annotated[float | None, Query(gt=0, le=3600, description="end the stream after")]
SSE_HEADERS = {"Cache-Control": "no-cache", "X-Accel-Buffering": "no"}


def sse(event: str, data: Any) -> str:
    return f"event: {event}\ndata: {json.dumps(data, default=str, separators=(',', ':'))}\n\n"


async def _in_session(request: Request, fn: Callable[..., T], *args: Any) -> T:
    def run() -> T:
        with request.app.state.sessionmaker() as session:
            return fn(session, *args)

    return await run_in_threadpool(run)


def _progress(exp: Any) -> dict[str, Any]:
    return {
        "id": exp.id,
        "status": exp.status,
        "progress": exp.progress,
        "epoch": exp.epoch,
        "attempts": exp.attempts,
        "error": exp.error,
        "best_val_acc": exp.best_val_acc,
    }


async def _experiment_stream(
    request: Request, experiment_id: int, poll: float, max_s: float
) -> AsyncIterator[str]:
    last_state: dict[str, Any] | None = None
    last_metric = 0
    deadline = time.monotonic() + max_s
    while True:
        exp = await _in_session(request, crud.get_experiment, experiment_id)
        if exp is None:
            yield sse("end", {"id": experiment_id, "status": "deleted"})
            return
        points = await _in_session(request, crud.metric_series, experiment_id, last_metric)
        for p in points:
            last_metric = max(last_metric, p.id)
            yield sse("metric", {"epoch": p.epoch, "name": p.name, "value": p.value})
        state = _progress(exp)
        if state != last_state:
            last_state = state
            yield sse("progress", state)
        if exp.status in FINISHED:
            yield sse("end", state)
            return
        if time.monotonic() > deadline or await request.is_disconnected():
            return
        await asyncio.sleep(poll)


@router.get("/experiments/{experiment_id}/events")
async def experiment_events(
    experiment_id: ExperimentId,
    request: Request,
    session: SessionDep,
    settings: SettingsDep,
    _auth: ReadAuth,
    max_s: MaxSeconds = None,
) -> StreamingResponse:
    """SSE: ``progress`` on every change, ``metric`` per new point, ``end`` when finished."""
    if crud.get_experiment(session, experiment_id) is None:
        raise HTTPException(404, detail=f"experiment {experiment_id} not found")
    session.close()
    stream = _experiment_stream(
        request,
        experiment_id,
        settings.sse_poll_s,
        min(max_s or settings.sse_max_s, settings.sse_max_s),
    )
    return StreamingResponse(stream, media_type="text/event-stream", headers=SSE_HEADERS)


async def _global_stream(request: Request, poll: float, max_s: float) -> AsyncIterator[str]:
    counts = await _in_session(request, crud.count_by_status)
    yield sse("summary", {"counts": counts})
    since: datetime = utcnow()
    deadline = time.monotonic() + max_s
    while time.monotonic() < deadline and not await request.is_disconnected():
        await asyncio.sleep(poll)
        changed = await _in_session(request, crud.changed_since, since)
        for exp in changed:
            since = max(since, exp.updated_at)
            yield sse("status", _progress(exp))


@router.get("/events")
async def global_events(
    request: Request, settings: SettingsDep, _auth: ReadAuth, max_s: MaxSeconds = None
) -> StreamingResponse:
    """SSE for the dashboard: a ``summary`` of counts by status, then ``status`` per change."""
    stream = _global_stream(
        request, settings.sse_poll_s, min(max_s or settings.sse_max_s, settings.sse_max_s)
    )
    return StreamingResponse(stream, media_type="text/event-stream", headers=SSE_HEADERS)
