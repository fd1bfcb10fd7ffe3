"""A throw-away PostgreSQL database (127.0.0.1:5432, trust auth), migrated, for one test session."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from contextlib import contextmanager

import psycopg
import pytest

from api.migrate import upgrade

PG_ADMIN = "host=127.0.0.1 port=5432 user=postgres dbname=test"
PG_URL = "postgresql+psycopg://postgres@127.0.0.1:5432/{name}"


@contextmanager
def throwaway_database(prefix: str) -> Iterator[str]:
    """Create ``<prefix>_<random>``, migrate it, yield its URL, and drop it afterwards."""
    name = f"{prefix}_{uuid.uuid4().hex[:12]}"
    try:
        admin = psycopg.connect(PG_ADMIN, autocommit=True, connect_timeout=3)
    except psycopg.OperationalError as err:
        pytest.fail(f"PostgreSQL at 127.0.0.1:5432 is needed for these tests: {err}")
    admin.execute(f'CREATE DATABASE "{name}"')
    url = PG_URL.format(name=name)
    try:
        upgrade(url)
        yield url
    finally:
        admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        admin.close()
