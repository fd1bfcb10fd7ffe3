"""Metric series and the Server-Sent Events streams."""

from __future__ import annotations

import json
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy.orm import Session

from api import crud

from .conftest import submit

pytestmark = pytest.mark.isolated  # throwaway databases, no Redis or server process


def _events(client: TestClient, url: str, stop_after: int = 100) -> list[tuple[str, Any]]:
    out: list[tuple[str, Any]] = []
    with client.stream("GET", url) as r:
        assert r.status_code == 200
        assert r.headers["content-type"].startswith("text/event-stream")
        event = None
        for line in r.iter_lines():
            if line.startswith("event: "):
                event = line[7:]
            elif line.startswith("data: "):
                out.append((event or "", json.loads(line[6:])))
                if len(out) >= stop_after:
                    break
    return out


def test_experiment_stream_replays_metrics_and_ends(
    client: TestClient, auth: dict[str, str], session: Session
) -> None:
    exp_id = submit(client, auth)
    lease = crud.claim_experiment(session, exp_id, "w1")
    assert lease is not None
    crud.record_metrics(session, exp_id, lease.token, 1, {"loss": 1.0})
    crud.record_metrics(session, exp_id, lease.token, 2, {"loss": 0.5})
    crud.finish_experiment(session, exp_id, lease.token, {"best_val_acc": 0.7})
    events = _events(client, f"/api/experiments/{exp_id}/events")
    kinds = [e for e, _ in events]
    assert kinds == ["metric", "metric", "progress", "end"]
    assert [d["value"] for e, d in events if e == "metric"] == [1.0, 0.5]
    assert events[-1][1]["status"] == "succeeded" and events[-1][1]["best_val_acc"] == 0.7


def test_running_stream_reports_progress_until_max_s(
    client: TestClient, auth: dict[str, str], session: Session
) -> None:
    exp_id = submit(client, auth)
    lease = crud.claim_experiment(session, exp_id, "w1")
    assert lease is not None
    crud.report_progress(session, exp_id, lease.token, 0.25, epoch=1)
    events = _events(client, f"/api/experiments/{exp_id}/events?max_s=0.3")
    assert events[0] == ("progress", {**events[0][1], "status": "running", "progress": 0.25})
    assert all(e != "end" for e, _ in events)


def test_global_stream_starts_with_a_summary(client: TestClient, auth: dict[str, str]) -> None:
    submit(client, auth)
    events = _events(client, "/api/events?max_s=0.2", stop_after=1)
    assert events[0] == ("summary", {"counts": {"queued": 1}})


def test_stream_of_unknown_experiment_is_404(client: TestClient) -> None:
    assert client.get("/api/experiments/424242/events").status_code == 404


def test_global_stream_reports_a_status_change(
    client: TestClient, auth: dict[str, str], session: Session
) -> None:
    exp_id = submit(client, auth)
    with client.stream("GET", "/api/events?max_s=3") as r:
        lines = r.iter_lines()
        assert next(lines) == "event: summary"
        assert crud.request_cancel(session, exp_id) == "cancelled"
        session.commit()
        events = []
        for line in lines:
            if line.startswith("data: ") and '"status"' in line:
                events.append(json.loads(line[6:]))
                break
    assert events and events[0]["id"] == exp_id and events[0]["status"] == "cancelled"
