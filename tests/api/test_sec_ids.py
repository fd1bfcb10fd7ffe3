"""Security, ids family: path and query integers are plain ASCII digits, nothing else.

Before the fix ``/api/experiments/1.0`` and ``/api/experiments/1%0a`` resolved to experiment 1,
and ``DELETE /api/experiments/1.0`` deleted it.
"""

from __future__ import annotations

import pytest
from fastapi.testclient import TestClient
from sqlalchemy.orm import Session

from .conftest import run_to_end, submit

pytestmark = pytest.mark.isolated  # throwaway databases, no Redis or server process

LOOSE = ["1.0", "1%0a", "%201", "1%20", "+1", "01", "1e0", "%d9%a1", "0x1", "1_0"]


@pytest.mark.parametrize("bad", LOOSE)
def test_loose_experiment_ids_are_refused(client: TestClient, bad: str) -> None:
    r = client.get(f"/api/experiments/{bad}")
    assert r.status_code == 422, (bad, r.status_code)
    [err] = r.json()["detail"]
    assert err["field"] == "experiment_id" and "plain digits" in err["message"]


def test_delete_by_a_loose_id_deletes_nothing(
    client: TestClient, auth: dict[str, str], session: Session
) -> None:
    exp_id = submit(client, auth)
    run_to_end(session, exp_id)
    for bad in (f"{exp_id}.0", f"{exp_id}%0a", f"0{exp_id}"):
        assert client.delete(f"/api/experiments/{bad}", headers=auth).status_code == 422
        assert client.post(f"/api/experiments/{bad}/retry", headers=auth).status_code == 422
    assert client.get(f"/api/experiments/{exp_id}").status_code == 200
    assert client.delete(f"/api/experiments/{exp_id}", headers=auth).status_code == 204


@pytest.mark.parametrize(
    "url",
    [
        "/api/sweeps/1.0",
        "/api/sweeps?limit=10.0",
        "/api/sweeps?cursor=1%0a",
        "/api/experiments?limit=5.0",
        "/api/experiments?sweep=01",
        "/api/analysis/power-law?sweep=1.0",
        "/api/experiments/1.0/metrics",
        "/api/experiments/1.0/events",
        "/api/experiments/1.0/model",
    ],
)
def test_other_ids_and_integer_queries_are_strict(client: TestClient, url: str) -> None:
    r = client.get(url)
    assert r.status_code == 422, (url, r.status_code, r.text[:200])


def test_plain_ids_still_work(client: TestClient, auth: dict[str, str]) -> None:
    exp_id = submit(client, auth)
    assert client.get(f"/api/experiments/{exp_id}").json()["id"] == exp_id
    assert client.get("/api/experiments?limit=1").status_code == 200
    assert client.get("/api/experiments/0").status_code == 422  # ge=1
    assert client.get("/api/experiments/2147483648").status_code == 422
    assert client.get("/api/experiments/99999").status_code == 404
