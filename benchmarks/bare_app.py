"""The ceiling bench_api.py measures the product against: a bare FastAPI + SQLAlchemy app.

It does what ``POST /api/experiments`` and the keyset listing ``GET /api/experiments`` do to the
database, and nothing else: one INSERT of a queued row into the same ``experiments`` table (the
table is reflected from a database the product's migrations built, so its columns and indexes are
the product's), and ``SELECT ... WHERE id < :cursor ORDER BY id DESC LIMIT n+1`` answered as JSON
through a pydantic model with the listing's fields. Sync endpoints (FastAPI's thread pool, as the
product's), one pooled engine of the same size. No validation beyond pydantic's types, no token,
no admission control, no broker, no middleware, a plain integer cursor.

    RPG_BARE_DATABASE_URL=postgresql+psycopg://... uvicorn benchmarks.bare_app:app --workers N
"""

from __future__ import annotations

import hashlib
import json
import os
from datetime import UTC, datetime
from typing import Any

from fastapi import FastAPI
from pydantic import BaseModel, ConfigDict
from sqlalchemy import MetaData, Table, create_engine, insert, select

DATABASE_URL = os.environ.get("RPG_BARE_DATABASE_URL", "")
POOL_SIZE = int(os.environ.get("RPG_BARE_POOL_SIZE", "16"))  # as many as the product admits


class Spec(BaseModel):
    """The body: any JSON object with a name, a model.arch and a data.dataset."""

    model_config = ConfigDict(extra="allow")
    name: str
    model: dict[str, Any]
    data: dict[str, Any]
    rpg: dict[str, Any] | None = None


class Created(BaseModel):
    id: int
    status: str


class Summary(BaseModel):
    id: int
    name: str
    status: str
    arch: str
    dataset: str
    scope: str
    ring_size: float | None
    sweep_id: int | None
    progress: float
    epoch: int | None
    attempts: int
    created_at: datetime
    started_at: datetime | None
    finished_at: datetime | None
    val_acc: float | None
    best_val_acc: float | None
    backbone_params: int | None
    flags: str | None


class Page(BaseModel):
    items: list[Summary]
    next_cursor: int | None


app = FastAPI()
engine = create_engine(DATABASE_URL, pool_size=POOL_SIZE, max_overflow=0, pool_timeout=30)
experiments = Table("experiments", MetaData(), autoload_with=engine)
SUMMARY_COLUMNS = [experiments.c[name] for name in Summary.model_fields]


@app.post("/api/experiments", status_code=201)
def submit(spec: Spec) -> Created:
    body = spec.model_dump(mode="json")
    rpg = body.get("rpg") or {}
    now = datetime.now(UTC)
    key = hashlib.sha256(json.dumps(body, sort_keys=True).encode()).hexdigest()[:16]
    row = {
        "name": body["name"],
        "spec": body,
        "status": "queued",
        "arch": body["model"]["arch"],
        "dataset": body["data"]["dataset"],
        "ring_size": rpg.get("ring_size"),
        "scope": rpg.get("scope", "global") if rpg else "plain",
        "task": "classification",
        "progress": 0.0,
        "attempts": 0,
        "lease_token": 0,
        "cancel_requested": False,
        "created_at": now,
        "updated_at": now,
        "conditions": body,
        "conditions_key": key,
    }
    with engine.begin() as conn:
        new_id = conn.execute(insert(experiments).values(row).returning(experiments.c.id)).scalar()
    return Created(id=int(new_id or 0), status="queued")


@app.get("/api/experiments")
def listing(limit: int = 50, cursor: int | None = None) -> Page:
    q = select(*SUMMARY_COLUMNS).order_by(experiments.c.id.desc()).limit(limit + 1)
    if cursor is not None:
        q = q.where(experiments.c.id < cursor)
    with engine.connect() as conn:
        rows = conn.execute(q).mappings().all()
    items = [Summary.model_validate(dict(r)) for r in rows[:limit]]
    return Page(items=items, next_cursor=items[-1].id if len(rows) > limit else None)


@app.get("/healthz")
def healthz() -> dict[str, str]:
    return {"status": "ok"}
