"""Liveness/readiness (/healthz) and Prometheus metrics (/metrics)."""

from __future__ import annotations

import logging
import time
from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse, Response
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from sqlalchemy import text

from .. import crud
from ..deps import ReadAuth, SessionDep, SettingsDep
from ..schemas import HealthOut
from ..status import STATUSES

log = logging.getLogger(__name__)
router = APIRouter(tags=["health"])


def _check_db(session: SessionDep) -> dict[str, Any]:
    start = time.perf_counter()
    try:
        session.execute(text("SELECT 1"))
    except Exception as err:  # noqa: BLE001 - reported, not raised
        return {"ok": False, "error": type(err).__name__}
    return {
        "ok": True,
        "backend": session.get_bind().dialect.name,
        "latency_ms": round((time.perf_counter() - start) * 1000, 2),
    }


def _check_broker(url: str | None) -> dict[str, Any]:
    if not url:
        return {"ok": True, "mode": "embedded"}
    start = time.perf_counter()
    try:
        if url.startswith(("redis://", "rediss://")):
            import redis

            redis.Redis.from_url(url, socket_connect_timeout=1, socket_timeout=1).ping()
        else:
            from kombu import Connection

            with Connection(url, connect_timeout=1) as conn:
                conn.ensure_connection(max_retries=1)
    except Exception as err:  # noqa: BLE001 - reported, not raised
        return {"ok": False, "error": type(err).__name__}
    return {"ok": True, "latency_ms": round((time.perf_counter() - start) * 1000, 2)}


@router.get("/healthz", response_model=HealthOut, responses={503: {"model": HealthOut}})
def healthz(session: SessionDep, settings: SettingsDep) -> Any:
    """200 when the database and the broker answer, 503 (same body) when one does not."""
    db = _check_db(session)
    broker = _check_broker(settings.broker_url)
    ok = db["ok"] and broker["ok"]
    body = HealthOut(status="ok" if ok else "degraded", database=db, broker=broker)
    return JSONResponse(body.model_dump(), status_code=200 if ok else 503)


@router.get(
    "/metrics",
    response_class=Response,
    responses={200: {"content": {CONTENT_TYPE_LATEST: {"schema": {"type": "string"}}}}},
)
def metrics(request: Request, session: SessionDep, _auth: ReadAuth) -> Response:
    """Prometheus text: request counts/latencies and experiments by status. Needs a token
    (``authorization`` in the scrape config) when public reads are off."""
    gauge = request.app.state.experiments_gauge
    try:
        counts = crud.count_by_status(session)
    except Exception as err:  # noqa: BLE001 - a scrape must not fail on the database
        log.warning("metrics: cannot count experiments: %s", err)
        counts = {}
    for status in STATUSES:
        gauge.labels(status).set(counts.get(status, 0))
    return Response(generate_latest(request.app.state.registry), media_type=CONTENT_TYPE_LATEST)
