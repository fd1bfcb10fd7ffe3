"""Token-only reads, CORS off by default and on when configured, token storage."""

from __future__ import annotations

import hashlib
from collections.abc import Iterator

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import select
from sqlalchemy.orm import Session

from api import crud
from api.main import create_app
from api.models import ApiToken
from api.settings import Settings

from .conftest import submit


@pytest.fixture
def private_client(settings: Settings) -> Iterator[TestClient]:
    with TestClient(create_app(settings.model_copy(update={"public_reads": False}))) as c:
        yield c


def test_private_reads_need_a_token(private_client: TestClient, auth: dict[str, str]) -> None:
    exp_id = submit(private_client, auth)
    for url in (
        "/api/experiments",
        f"/api/experiments/{exp_id}",
        "/api/sweeps",
        "/api/analysis/power-law",
        f"/api/experiments/{exp_id}/metrics",
    ):
        assert private_client.get(url).status_code == 401, url
        assert private_client.get(url, headers={"Authorization": "Bearer nope"}).status_code == 401
        assert private_client.get(url, headers=auth).status_code == 200, url


def test_tokens_are_stored_hashed(session: Session, token: str) -> None:
    rows = list(session.scalars(select(ApiToken)))
    assert [r.token_hash for r in rows] == [hashlib.sha256(token.encode()).hexdigest()]
    assert token not in {r.name for r in rows}
    assert crud.check_token(session, token) is not None
    assert crud.check_token(session, token + "x") is None
    with pytest.raises(crud.ConflictError):
        crud.create_token(session, rows[0].name)


def test_cors_off_by_default(client: TestClient) -> None:
    r = client.get("/api/experiments", headers={"Origin": "https://evil.example"})
    assert "access-control-allow-origin" not in r.headers


def test_cors_when_configured(settings: Settings) -> None:
    s = settings.model_copy(update={"cors_origins": ["https://ui.example"]})
    with TestClient(create_app(s)) as c:
        ok = c.get("/api/experiments", headers={"Origin": "https://ui.example"})
        assert ok.headers["access-control-allow-origin"] == "https://ui.example"
        other = c.get("/api/experiments", headers={"Origin": "https://evil.example"})
        assert "access-control-allow-origin" not in other.headers


def test_cors_origins_from_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("RPG_CORS_ORIGINS", "https://a.example, https://b.example")
    monkeypatch.setenv("RPG_BROKER_URL", "")
    s = Settings()
    assert s.cors_origins == ["https://a.example", "https://b.example"]
    assert s.broker_url is None


def test_token_guesses_are_throttled_per_client(settings: Settings, token: str) -> None:
    """Issue 23: 190 guesses/s all answered 401, never slowed. After auth_max_failures failed
    tokens in the window a client gets 429 + Retry-After, even for a right token (guessing
    learns nothing), other clients are not affected, and the lock ends with the window."""
    import time

    limited = settings.model_copy(update={"auth_max_failures": 5, "auth_failure_window_s": 1.5})
    app = create_app(limited)
    good = {"Authorization": f"Bearer {token}"}
    with TestClient(app) as guesser, TestClient(app, client=("10.0.0.9", 1)) as other:
        for i in range(5):
            bad = {"Authorization": f"Bearer rpg_guess{i}"}
            assert guesser.post("/api/experiments", json={}, headers=bad).status_code == 401
        start = time.monotonic()
        r = guesser.post("/api/experiments", json={}, headers={"Authorization": "Bearer rpg_x"})
        assert r.status_code == 429 and 1 <= int(r.headers["Retry-After"]) <= 2, r.text
        assert "too many failed token attempts" in r.json()["detail"]
        assert guesser.post("/api/experiments/1/cancel", headers=good).status_code == 429
        # no token at all is not a guess; another address is not locked out
        assert guesser.post("/api/experiments", json={}).status_code == 401
        assert other.post("/api/experiments/999/cancel", headers=good).status_code == 404
        time.sleep(max(0.0, 1.6 - (time.monotonic() - start)))
        assert guesser.post("/api/experiments/999/cancel", headers=good).status_code == 404
