"""The Alembic migration builds exactly the tables the models declare (both backends)."""

from __future__ import annotations

import uuid
from collections.abc import Callable
from typing import Any

import psycopg
import pytest
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import inspect

from api.db import make_engine
from api.migrate import alembic_config, upgrade
from api.models import Base
from api.optuna_tables import optuna_metadata

from ..pg import PG_ADMIN, PG_URL

pytestmark = pytest.mark.isolated  # throwaway databases, no Redis or server process


def _diff(url: str) -> list[object]:
    engine = make_engine(url)
    try:
        with engine.connect() as conn:
            ctx = MigrationContext.configure(conn, opts={"compare_type": True})
            return list(compare_metadata(ctx, [Base.metadata, optuna_metadata()]))
    finally:
        engine.dispose()


def test_models_match_migrations(db_url: str) -> None:
    assert _diff(db_url) == []


def test_upgrade_from_empty_sqlite_is_idempotent(tmp_path: object) -> None:
    url = f"sqlite:///{tmp_path}/fresh.db"
    upgrade(url)
    upgrade(url)
    engine = make_engine(url)
    try:
        names = set(inspect(engine).get_table_names())
    finally:
        engine.dispose()
    optuna = set(optuna_metadata().tables)
    assert set(Base.metadata.tables) | optuna | {"alembic_version"} == names


def test_upgrade_from_empty_postgresql() -> None:
    name = f"rpg_test_{uuid.uuid4().hex[:12]}"
    with psycopg.connect(PG_ADMIN, autocommit=True) as admin:
        admin.execute(f'CREATE DATABASE "{name}"')
        try:
            upgrade(PG_URL.format(name=name))
            assert _diff(PG_URL.format(name=name)) == []
        finally:
            admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def test_sqlite_connections_use_wal_and_a_busy_timeout(tmp_path: object) -> None:
    engine = make_engine(f"sqlite:///{tmp_path}/wal.db")
    try:
        with engine.connect() as conn:
            assert conn.exec_driver_sql("PRAGMA journal_mode").scalar() == "wal"
            assert int(conn.exec_driver_sql("PRAGMA busy_timeout").scalar() or 0) >= 5000
            assert conn.exec_driver_sql("PRAGMA foreign_keys").scalar() == 1
    finally:
        engine.dispose()


def _backfill_and_downgrade(url: str) -> None:
    """0002 -> 0003: old rows are classification runs; finished ones get primary acc = val_acc;
    downgrading drops the columns again."""
    from sqlalchemy import text

    upgrade(url, "0002")
    engine = make_engine(url)
    try:
        with engine.begin() as conn:
            for i, (status, acc) in enumerate(
                [("succeeded", 0.75), ("queued", None), ("failed", None)], start=1
            ):
                conn.execute(
                    text(
                        "INSERT INTO experiments (id, name, spec, status, arch, dataset, scope, "
                        "progress, attempts, lease_token, cancel_requested, created_at, "
                        "updated_at, val_acc) VALUES (:id, 'r', '{}', :status, 'resnet18', "
                        "'digits', 'global', 0, 0, 0, false, '2026-01-01', '2026-01-01', :acc)"
                    ),
                    {"id": i, "status": status, "acc": acc},
                )
        upgrade(url)
        with engine.connect() as conn:
            rows = conn.execute(
                text("SELECT id, task, primary_metric, primary_value FROM experiments ORDER BY id")
            ).all()
        assert [tuple(r) for r in rows] == [
            (1, "classification", "acc", 0.75),
            (2, "classification", None, None),
            (3, "classification", None, None),
        ]
        assert "ix_experiments_task_id" in {
            ix["name"] for ix in inspect(engine).get_indexes("experiments")
        }
        _downgrade_drops(url, engine, "0002", {"task", "primary_metric", "primary_value"})
    finally:
        engine.dispose()


def test_0003_backfills_and_downgrades_on_sqlite(tmp_path: object) -> None:
    _backfill_and_downgrade(f"sqlite:///{tmp_path}/m3.db")


def _on_fresh_postgresql(check: Callable[[str], None]) -> None:
    """Run ``check`` on the URL of a throw-away PostgreSQL database."""
    name = f"rpg_test_{uuid.uuid4().hex[:12]}"
    with psycopg.connect(PG_ADMIN, autocommit=True) as admin:
        admin.execute(f'CREATE DATABASE "{name}"')
        try:
            check(PG_URL.format(name=name))
        finally:
            admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def _downgrade_drops(url: str, engine: Any, revision: str, columns: set[str]) -> None:
    """Downgrading to ``revision`` drops ``columns``; upgrading again matches the models."""
    from alembic import command

    command.downgrade(alembic_config(url), revision)
    engine.dispose()
    assert not {c["name"] for c in inspect(engine).get_columns("experiments")} & columns
    upgrade(url)
    engine.dispose()
    assert _diff(url) == []


def test_0003_backfills_and_downgrades_on_postgresql() -> None:
    _on_fresh_postgresql(_backfill_and_downgrade)


def _conditions_backfill(url: str) -> None:
    """0003 -> 0004: each old run gets the conditions of its stored spec (and their key); two
    runs differing only in ring size and seed share a key, a run of other epochs does not, a
    spec that no longer validates keeps NULL; downgrading drops the columns."""
    import json

    from sqlalchemy import text

    from rpg_core.spec.conditions import conditions_key

    base = {"model": {"arch": "resnet18"}, "data": {"dataset": "digits"}}
    specs = [
        {**base, "rpg": {"ring_size": 1000}, "train": {"epochs": 3}},
        {**base, "rpg": {"ring_size": 4000, "seed": 2}, "train": {"epochs": 3, "seed": 5}},
        {**base, "rpg": {"ring_size": 1000}, "train": {"epochs": 10}},
        {**base, "train": {"epochs": 3}, "unknown_old_field": 1},
    ]
    upgrade(url, "0003")
    engine = make_engine(url)
    try:
        with engine.begin() as conn:
            for i, spec in enumerate(specs, start=1):
                conn.execute(
                    text(
                        "INSERT INTO experiments (id, name, spec, status, arch, dataset, scope, "
                        "progress, attempts, lease_token, cancel_requested, created_at, "
                        "updated_at) VALUES (:id, 'r', :spec, 'succeeded', 'resnet18', "
                        "'digits', 'global', 0, 0, 0, false, '2026-01-01', '2026-01-01')"
                    ),
                    {"id": i, "spec": json.dumps(spec)},
                )
        upgrade(url)
        with engine.connect() as conn:
            rows = conn.execute(
                text("SELECT id, conditions_key, conditions FROM experiments ORDER BY id")
            ).all()
        keys = [r[1] for r in rows]
        assert keys[0] == keys[1] == conditions_key(specs[0])
        assert keys[2] == conditions_key(specs[2]) != keys[0]
        assert keys[3] is None and rows[3][2] is None
        stored = rows[0][2] if isinstance(rows[0][2], dict) else json.loads(rows[0][2])
        assert stored["train.epochs"] == 3 and "train.seed" not in stored
        assert "ix_experiments_conditions_key_id" in {
            ix["name"] for ix in inspect(engine).get_indexes("experiments")
        }
        _downgrade_drops(url, engine, "0003", {"conditions", "conditions_key"})
    finally:
        engine.dispose()


def test_0004_backfills_conditions_on_sqlite(tmp_path: object) -> None:
    _conditions_backfill(f"sqlite:///{tmp_path}/m4.db")


def test_0004_backfills_conditions_on_postgresql() -> None:
    _on_fresh_postgresql(_conditions_backfill)


def _search_tables(url: str) -> None:
    """0005: Optuna's tables and its version row, which Optuna's storage accepts as they are (no
    table creation, no migration of its own); downgrading drops them and the trial columns."""
    import optuna

    upgrade(url)
    engine = make_engine(url)
    try:
        names = set(inspect(engine).get_table_names())
        assert set(optuna_metadata().tables) | {"search_studies"} <= names
        from api.optuna_tables import storage

        study = optuna.create_study(storage=storage(url), study_name="probe")
        trial = study.ask()
        trial.report(0.5, 1)
        study.tell(trial, 0.5)
        assert optuna.load_study(study_name="probe", storage=storage(url)).best_value == 0.5
        with engine.connect() as conn:
            stamped = conn.exec_driver_sql("SELECT version_num FROM alembic_version").scalar()
        # Optuna did not stamp its own revision: the table still holds our head
        assert stamped == ScriptDirectory.from_config(alembic_config(url)).get_current_head()
        storage(url).engine.dispose()
        _downgrade_drops(url, engine, "0004", {"study_id", "trial_number"})
        from alembic import command

        command.downgrade(alembic_config(url), "0004")
        engine.dispose()
        left = set(inspect(engine).get_table_names())
        assert not left & (set(optuna_metadata().tables) | {"search_studies"})
        upgrade(url)
    finally:
        engine.dispose()


def test_0005_optuna_tables_on_sqlite(tmp_path: object) -> None:
    _search_tables(f"sqlite:///{tmp_path}/m5.db")


def test_0005_optuna_tables_on_postgresql() -> None:
    _on_fresh_postgresql(_search_tables)
