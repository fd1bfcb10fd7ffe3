"""The listing's queries are index scans on PostgreSQL (EXPLAIN over 20,000 ANALYZEd rows): a
page, the next page from its cursor, a status filter, the sorts by name and by best accuracy,
and the power law's version lookup; none reads the whole table or sorts it."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from typing import Any

import psycopg
import pytest
from sqlalchemy import Engine, event
from sqlalchemy.orm import Session

from api import crud
from api.crud.metrics import results_version
from api.db import make_engine, make_sessionmaker

from ..pg import throwaway_database

pytestmark = pytest.mark.isolated  # throwaway databases, no Redis or server process

ROWS = 20_000
FILL = f"""
INSERT INTO experiments (name, spec, status, arch, dataset, scope, progress, attempts,
    lease_token, cancel_requested, created_at, updated_at, task, best_val_acc)
SELECT 'run-' || lpad(g::text, 6, '0'), '{{}}',
    CASE WHEN g % 50 = 0 THEN 'failed' WHEN g % 10 = 0 THEN 'succeeded' ELSE 'queued' END,
    'resnet18', 'digits', 'global', 0, 0, 0, false,
    now() - g * interval '1 second', now() - g * interval '1 second', 'classification',
    CASE WHEN g % 10 = 0 THEN (g % 997) / 1000.0 END
FROM generate_series(1, {ROWS}) AS g
"""


@pytest.fixture(scope="module")
def engine() -> Iterator[Engine]:
    with throwaway_database("rpg_plan") as url:
        dsn = url.replace("postgresql+psycopg://", "postgresql://")
        with psycopg.connect(dsn, autocommit=True) as conn:
            conn.execute(FILL)
            conn.execute("VACUUM ANALYZE experiments")
        engine = make_engine(url)
        yield engine
        engine.dispose()


def _plans(engine: Engine, call: Callable[[Session], Any]) -> list[dict[str, Any]]:
    """EXPLAIN (FORMAT JSON) of each SELECT on experiments that ``call`` runs, with its values."""
    seen: list[tuple[str, Any]] = []

    def capture(_c: object, _cur: object, statement: str, params: Any, *_: object) -> None:
        if statement.lstrip().startswith("SELECT") and "FROM experiments" in statement:
            seen.append((statement, params))

    event.listen(engine, "before_cursor_execute", capture)
    try:
        with make_sessionmaker(engine)() as s:
            call(s)
            raw = s.connection().connection.dbapi_connection
            assert raw is not None
            plans = []
            for statement, params in seen:
                with raw.cursor() as cur:
                    cur.execute("EXPLAIN (FORMAT JSON) " + statement, params)
                    plan = cur.fetchone()[0]
                plans.append(plan[0]["Plan"] if isinstance(plan, list) else json.loads(plan)[0])
    finally:
        event.remove(engine, "before_cursor_execute", capture)
    assert plans, "no query on experiments was run"
    return plans


def _nodes(plan: dict[str, Any]) -> Iterator[dict[str, Any]]:
    yield plan
    for child in plan.get("Plans", []):
        yield from _nodes(child)


def _check(plans: list[dict[str, Any]], index: str | None = None) -> None:
    for plan in plans:
        assert plan["Node Type"] == "Limit", plan["Node Type"]  # a page, never every row
        nodes = list(_nodes(plan))
        kinds = [(n["Node Type"], n.get("Relation Name"), n.get("Index Name")) for n in nodes]
        assert not [k for k in kinds if k[0] == "Seq Scan" and k[1] == "experiments"], kinds
        assert not [k for k in kinds if k[0] in ("Sort", "Incremental Sort")], kinds
        scans = [k for k in kinds if k[0] in ("Index Scan", "Index Only Scan")]
        assert scans, kinds
        if index is not None:
            assert any(k[2] == index for k in scans), kinds


def _two_pages(sort: str, f: crud.ListFilter | None = None) -> Callable[[Session], Any]:
    def call(s: Session) -> None:
        rows, cursor = crud.list_experiments(s, f or crud.ListFilter(), sort=sort, summary=True)
        assert len(rows) == 50 and cursor
        crud.list_experiments(s, f or crud.ListFilter(), sort=sort, cursor=cursor, summary=True)

    return call


@pytest.mark.parametrize(
    ("sort", "index"),
    [
        ("-id", "pk_experiments"),
        ("id", "pk_experiments"),
        ("name", "ix_experiments_name_id"),
        ("-best_val_acc", "ix_experiments_best_val_acc_order"),
        ("best_val_acc", "ix_experiments_best_val_acc_order"),
    ],
)
def test_a_page_and_the_next_are_index_scans(engine: Engine, sort: str, index: str) -> None:
    _check(_plans(engine, _two_pages(sort)), index)


def test_a_status_filter_is_an_index_scan(engine: Engine) -> None:
    _check(_plans(engine, _two_pages("-id", crud.ListFilter(status="failed"))))


def test_the_power_law_version_is_index_lookups(engine: Engine) -> None:
    plans = _plans(engine, results_version)
    for plan in plans:
        kinds = [(n["Node Type"], n.get("Relation Name")) for n in _nodes(plan)]
        assert ("Seq Scan", "experiments") not in kinds, kinds
