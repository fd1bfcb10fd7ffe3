"""/healthz, /metrics, and dispatch to the real Redis broker (one queue name per test)."""

from __future__ import annotations

import base64
import json
import uuid
from collections.abc import Iterator

import pytest
import redis
from fastapi.testclient import TestClient
from sqlalchemy.orm import Session

from api import crud
from api.main import create_app
from api.settings import Settings

from .conftest import REDIS_URL, SPEC


@pytest.fixture
def queue() -> Iterator[str]:
    name = f"rpg-test-{uuid.uuid4().hex[:10]}"
    yield name
    redis.Redis.from_url(REDIS_URL).delete(name)


def test_healthz_ok_with_database_and_broker(settings: Settings, queue: str) -> None:
    s = settings.model_copy(update={"broker_url": REDIS_URL, "dispatch_queue": queue})
    with TestClient(create_app(s)) as c:
        r = c.get("/healthz")
    assert r.status_code == 200
    body = r.json()
    assert body["status"] == "ok" and body["database"]["ok"] and body["broker"]["ok"]


@pytest.mark.parametrize("db_url", ["sqlite"], indirect=True)  # the broker part is the same
def test_healthz_degraded_when_broker_down(settings: Settings) -> None:
    s = settings.model_copy(update={"broker_url": "redis://127.0.0.1:1/0"})
    with TestClient(create_app(s)) as c:
        r = c.get("/healthz")
    assert r.status_code == 503 and r.json()["broker"]["ok"] is False
    assert r.json()["database"]["ok"] is True


def test_prometheus_metrics(client: TestClient, auth: dict[str, str]) -> None:
    client.post("/api/experiments", json=SPEC, headers=auth)
    text = client.get("/metrics").text
    assert 'rpg_experiments{status="queued"} 1.0' in text
    assert 'rpg_http_requests_total{method="POST",route="/api/experiments",status="201"}' in text


def test_submit_lands_in_the_redis_queue(
    settings: Settings, token: str, queue: str, session: Session
) -> None:
    s = settings.model_copy(update={"broker_url": REDIS_URL, "dispatch_queue": queue})
    auth = {"Authorization": f"Bearer {token}"}
    with TestClient(create_app(s)) as c:
        r = c.post("/api/experiments", json=SPEC, headers=auth)
        assert r.status_code == 201 and r.json()["dispatched"] is True
        exp_id = r.json()["id"]
        sweep = {"name": "sw", "base": SPEC, "grid": {"rpg.ring_size": [10, 20]}}
        assert c.post("/api/sweeps", json=sweep, headers=auth).json()["dispatched"] == 2
    r_ = redis.Redis.from_url(REDIS_URL)
    assert r_.llen(queue) == 3
    raw = r_.lindex(queue, -1)  # LPUSH: the oldest message is at the tail
    assert raw is not None
    message = json.loads(raw)
    assert message["headers"]["task"] == "rpg.train_experiment"
    args = json.loads(base64.b64decode(message["body"]))[0]
    assert args == [exp_id]
    exp = crud.get_experiment(session, exp_id)
    assert exp is not None and exp.dispatched_at is not None


@pytest.mark.parametrize("db_url", ["sqlite"], indirect=True)  # ~2 s of connect retries
def test_broker_down_keeps_the_job_queued(settings: Settings, token: str, session: Session) -> None:
    s = settings.model_copy(update={"broker_url": "redis://127.0.0.1:1/0"})
    with TestClient(create_app(s)) as c:
        r = c.post("/api/experiments", json=SPEC, headers={"Authorization": f"Bearer {token}"})
    assert r.status_code == 201 and r.json()["dispatched"] is False
    exp = crud.get_experiment(session, r.json()["id"])
    assert exp is not None and exp.status == "queued" and exp.dispatched_at is None
