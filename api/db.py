"""Engine and sessions: SQLite (WAL, busy timeout) or PostgreSQL, picked by the URL.

PostgreSQL connections are pinged on checkout only when they sat idle in the pool for over
``PING_AFTER_IDLE_S`` (a ping per checkout is a round trip per request: bench_api.py --mode
profile). A connection that was used a moment ago and died since (a PostgreSQL restart under
load) fails its request: SQLAlchemy then invalidates the whole pool, the error handler answers
503 + Retry-After (api.errors), and the next request connects afresh."""

from __future__ import annotations

import time
from typing import Any

from sqlalchemy import Engine, create_engine, event, exc
from sqlalchemy.orm import Session, sessionmaker

SQLITE_BUSY_TIMEOUT_MS = 10_000
PING_AFTER_IDLE_S = 2.0  # a pooled connection idle longer than this is pinged before use


def _sqlite_on_connect(dbapi_conn: Any, _record: Any) -> None:
    cur = dbapi_conn.cursor()
    cur.execute("PRAGMA journal_mode=WAL")
    cur.execute(f"PRAGMA busy_timeout={SQLITE_BUSY_TIMEOUT_MS}")
    cur.execute("PRAGMA foreign_keys=ON")
    cur.execute("PRAGMA synchronous=NORMAL")
    cur.close()


def make_engine(url: str, **kwargs: Any) -> Engine:
    """An engine for ``url``; SQLite connections get WAL mode, a busy timeout and foreign keys."""
    if url.startswith("sqlite"):
        if ":memory:" in url or url.rstrip("/") == "sqlite:":
            for key in ("pool_size", "max_overflow", "pool_timeout"):
                kwargs.pop(key, None)  # a single-connection pool takes none of these
        engine = create_engine(
            url, connect_args={"check_same_thread": False, "timeout": 10}, **kwargs
        )
        event.listen(engine, "connect", _sqlite_on_connect)
        return engine
    kwargs.setdefault("pool_size", 10)
    kwargs.setdefault("max_overflow", 20)
    ping_after = kwargs.pop("ping_after_idle_s", PING_AFTER_IDLE_S)
    engine = create_engine(url, pool_pre_ping=False, **kwargs)
    _ping_when_idle(engine, ping_after)
    return engine


def _ping_when_idle(engine: Engine, after_s: float) -> None:
    """Ping a connection on checkout when it was idle over ``after_s``; a dead one is replaced
    (the pool retries the checkout on DisconnectionError)."""

    def checked_in(_dbapi_conn: Any, record: Any) -> None:
        record.info["idle_since"] = time.monotonic()

    def checked_out(dbapi_conn: Any, record: Any, _proxy: Any) -> None:
        since = record.info.pop("idle_since", None)
        if since is None or time.monotonic() - since <= after_s:
            return
        try:
            alive = engine.dialect.do_ping(dbapi_conn)
        except Exception as err:  # whatever the driver raises for a dead connection
            raise exc.DisconnectionError(f"pooled connection is dead: {err}") from err
        if not alive:
            raise exc.DisconnectionError("pooled connection is dead")

    event.listen(engine, "checkin", checked_in)
    event.listen(engine, "checkout", checked_out)


def make_sessionmaker(engine: Engine) -> sessionmaker[Session]:
    return sessionmaker(engine, expire_on_commit=False)
