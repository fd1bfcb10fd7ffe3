"""Round trips per request (issue 27): a submission and a listing page use a bounded number of
database statements, counted with a before_cursor_execute listener (and the pool's pings), so
a change that adds a query to the hot paths fails here."""

from __future__ import annotations

import time
from typing import Any

import psycopg
import pytest
from fastapi.testclient import TestClient
from sqlalchemy import Engine, event, text
from sqlalchemy.orm import Session

from api import crud
from api.db import PING_AFTER_IDLE_S
from api.settings import Settings
from studio.app import create_app

from .conftest import REDIS_URL, SPEC, submit


class Statements:
    def __init__(self, engine: Engine) -> None:
        self.seen: list[str] = []
        event.listen(engine, "before_cursor_execute", self._statement)

    def _statement(self, _conn: Any, _cursor: Any, statement: str, *_rest: Any) -> None:
        self.seen.append(statement.split(None, 1)[0].upper())


def test_submission_and_listing_statements(
    settings: Settings, session: Session, token: str
) -> None:
    auth = {"Authorization": f"Bearer {token}"}
    with TestClient(create_app(settings.model_copy(update={"broker_url": REDIS_URL}))) as c:
        submit(c, auth)  # the token is checked (and cached) once
        counted = Statements(c.app.state.engine)  # type: ignore[attr-defined]
        exp_id = submit(c, auth)
        # the experiment (its dispatch mark included: no UPDATE after the send) and its tag
        assert counted.seen == ["INSERT", "INSERT"], counted.seen
        row = crud.get_experiment(session, exp_id)
        assert row is not None and row.dispatched_at is not None
        counted.seen.clear()
        page = c.get("/api/experiments?limit=1", headers=auth)
        assert page.status_code == 200 and page.json()["next_cursor"]
        assert counted.seen == ["SELECT", "SELECT"], counted.seen  # the page and its tags


@pytest.mark.parametrize("db_url", ["sqlite"], indirect=True)  # the broker's test
def test_unsent_submission_is_unmarked(settings: Settings, session: Session, token: str) -> None:
    """The mark goes with the INSERT; a send that fails clears it (the reconciler's cue)."""
    dead = settings.model_copy(update={"broker_url": "redis://127.0.0.1:1/0"})
    with TestClient(create_app(dead)) as c:
        r = c.post("/api/experiments", json=SPEC, headers={"Authorization": f"Bearer {token}"})
    assert r.status_code == 201 and r.json()["dispatched"] is False
    row = crud.get_experiment(session, r.json()["id"])
    assert row is not None and row.dispatched_at is None and row.status == "queued"


def test_token_cache_bound(settings: Settings, session: Session, token: str) -> None:
    """A deleted token stops working within ``token_cache_s``; 0 checks every request."""
    auth = {"Authorization": f"Bearer {token}"}
    private = settings.model_copy(update={"public_reads": False, "token_cache_s": 0.0})
    with TestClient(create_app(private)) as c:
        assert c.get("/api/experiments", headers=auth).status_code == 200
        session.execute(text("DELETE FROM api_tokens"))
        session.commit()
        assert c.get("/api/experiments", headers=auth).status_code == 401
    cache = crud.TokenCache(ttl_s=60.0)
    fresh = crud.create_token(session, "again")
    assert cache.name_of(session, fresh) == "again"
    assert cache.name_of(session, fresh + "x") is None
    assert cache.cached(fresh + "x") is None  # wrong tokens are never cached


@pytest.mark.parametrize("db_url", ["postgresql"], indirect=True)
def test_survives_dropped_connections(
    settings: Settings, client: TestClient, engine: Engine, auth: dict[str, str]
) -> None:
    """Without a ping per checkout: connections killed server-side (as by a PostgreSQL restart)
    cost at most one 503, never a 500, and an idle pool is pinged and replaced first."""
    submit(client, auth)
    dsn = engine.url.set(drivername="postgresql").render_as_string(hide_password=False)

    def kill_the_apps_connections() -> None:
        with psycopg.connect(dsn, autocommit=True) as other:  # not one of the app's
            killed = other.execute(
                "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity "
                "WHERE datname = current_database() AND pid <> pg_backend_pid()"
            ).fetchone()
        assert killed is not None and killed[0] >= 1

    kill_the_apps_connections()
    codes = [client.get("/api/experiments").status_code for _ in range(3)]
    assert codes[0] in (200, 503) and codes[1:] == [200, 200], codes
    kill_the_apps_connections()
    time.sleep(PING_AFTER_IDLE_S + 0.3)  # idle: pinged on checkout, replaced, no error at all
    assert client.get("/api/experiments").status_code == 200
