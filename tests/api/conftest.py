"""Fixtures: every API test runs on SQLite and on PostgreSQL (a fresh database per session)."""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import Engine, delete
from sqlalchemy.orm import Session

from api import crud
from api.db import make_engine, make_sessionmaker
from api.migrate import upgrade
from api.models import Base
from api.settings import Settings
from api.storage import open_store
from rpg_core.training.result import ExperimentResult
from studio.app import create_app

from ..pg import throwaway_database

# RPG_TEST_REDIS_DB picks another database (parallel checkouts on one Redis)
REDIS_URL = f"redis://127.0.0.1:6379/{os.environ.get('RPG_TEST_REDIS_DB', '15')}"

SPEC: dict[str, Any] = {
    "name": "r18-ring",
    "model": {"arch": "resnet18", "width": 0.25},
    "rpg": {"ring_size": 1000},
    "data": {"dataset": "digits"},
    "train": {"epochs": 2, "batch_size": 32},
    "tags": ["t1"],
}


@pytest.fixture(scope="session")
def pg_url() -> Iterator[str]:
    with throwaway_database("rpg_test") as url:
        yield url


@pytest.fixture(scope="session")
def sqlite_url(tmp_path_factory: pytest.TempPathFactory) -> str:
    url = f"sqlite:///{tmp_path_factory.mktemp('db') / 'rpg.db'}"
    upgrade(url)
    return url


@pytest.fixture(params=["sqlite", "postgresql"])
def db_url(request: pytest.FixtureRequest) -> str:
    """A migrated, emptied database of each backend."""
    url: str = request.getfixturevalue("sqlite_url" if request.param == "sqlite" else "pg_url")
    engine = make_engine(url)
    try:
        with engine.begin() as conn:
            for table in reversed(Base.metadata.sorted_tables):
                conn.execute(delete(table))
    finally:
        engine.dispose()
    return url


# the artifact store's backends: ``@BACKENDS`` runs a test on the local directory and on an S3
# bucket of a real S3 API server process (tests/s3server.py)
BACKENDS = pytest.mark.parametrize(
    "settings", ["local", pytest.param("s3", marks=pytest.mark.e2e)], indirect=True
)


@pytest.fixture
def settings(db_url: str, tmp_path: Path, request: pytest.FixtureRequest) -> Settings:
    store: dict[str, Any] = {}
    if getattr(request, "param", "local") == "s3":
        server = request.getfixturevalue("s3_server")
        store = {
            "artifact_url": f"s3://{request.getfixturevalue('s3_bucket')}/api",
            "s3_endpoint_url": server.url,
            "s3_max_attempts": 1,
            "s3_connect_timeout_s": 1.0,
        }
    return Settings(
        database_url=db_url,
        broker_url=None,
        artifact_dir=tmp_path / "artifacts",
        auto_migrate=False,
        sse_poll_s=0.05,
        max_ring_size=1_000_000,
        max_epochs=500,
        max_batch_size=1024,
        **store,
    )


def store_file(settings: Settings, rel: str, payload: bytes) -> crud.FileRecord:
    """Put ``payload`` in the settings' store at ``rel`` (as the worker does: write, upload)
    and return its record."""
    path = settings.artifact_dir / rel
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(payload)
    record = crud.file_record(settings.artifact_dir, rel)
    store = open_store(settings)
    store.put_file(rel, path)
    if store.remote:
        path.unlink()  # the API must read the store, not this copy
    return record


@pytest.fixture
def app_and_client(settings: Settings) -> Iterator[tuple[Any, TestClient]]:
    app = create_app(settings)
    with TestClient(app) as client:
        yield app, client


@pytest.fixture
def client(app_and_client: tuple[Any, TestClient]) -> TestClient:
    return app_and_client[1]


@pytest.fixture
def engine(app_and_client: tuple[Any, TestClient]) -> Engine:
    engine: Engine = app_and_client[0].state.engine
    return engine


@pytest.fixture
def session(engine: Engine) -> Iterator[Session]:
    with make_sessionmaker(engine)() as s:
        yield s


@pytest.fixture
def token(session: Session) -> str:
    return crud.create_token(session, f"tester-{uuid.uuid4().hex[:6]}")


@pytest.fixture
def auth(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def submit(client: TestClient, auth: dict[str, str], **over: Any) -> int:
    """POST a spec (SPEC with top-level overrides); returns the new id."""
    r = client.post("/api/experiments", json={**SPEC, **over}, headers=auth)
    assert r.status_code == 201, r.text
    exp_id: int = r.json()["id"]
    return exp_id


def run_to_end(
    session: Session,
    exp_id: int,
    result: dict[str, Any] | ExperimentResult | None = None,
    files: list[crud.FileRecord] | None = None,
    fail: str | None = None,
) -> None:
    """Drive an experiment through the worker protocol to succeeded (or failed)."""
    lease = crud.claim_experiment(session, exp_id, worker="test-worker")
    assert lease is not None
    if fail is not None:
        assert crud.fail_experiment(session, exp_id, lease.token, fail)
        return
    assert crud.finish_experiment(session, exp_id, lease.token, result or {}, files or [])
