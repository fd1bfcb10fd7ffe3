"""The API's sends to Redis reuse one redis client per kombu channel (api.redis_sender, issue
27): kombu 5.7 made a new ``redis.Redis`` per message, about half the CPU of a send. The
messages are the ones kombu's own transport delivers: a plain kombu consumer reads them."""

from __future__ import annotations

import json
from typing import Any

import pytest
import redis

from api import dispatch
from api.settings import Settings

from .conftest import REDIS_URL

QUEUE = "rpg-test-redis-sender"


@pytest.fixture
def settings() -> Any:
    r = redis.Redis.from_url(REDIS_URL)
    r.delete(QUEUE)
    dispatch._sender.cache_clear()
    yield Settings(database_url="sqlite://", broker_url=REDIS_URL, dispatch_queue=QUEUE)
    r.delete(QUEUE)
    dispatch._sender.cache_clear()


def test_sends_reuse_one_redis_client(settings: Settings, monkeypatch: pytest.MonkeyPatch) -> None:
    assert dispatch.dispatch(settings, [1]) == [1]  # the channel and its client exist now
    made: list[object] = []
    init = redis.Redis.__init__

    def counting(self: redis.Redis, *a: Any, **k: Any) -> None:
        made.append(self)
        init(self, *a, **k)

    monkeypatch.setattr(redis.Redis, "__init__", counting)
    assert dispatch.dispatch(settings, list(range(2, 22))) == list(range(2, 22))
    for i in range(22, 32):
        assert dispatch.dispatch(settings, [i]) == [i]
    assert made == []  # kombu's own channel made 30 here


def test_the_messages_are_celery_task_messages_in_order(settings: Settings) -> None:
    ids = [7, 8, 9]
    assert dispatch.dispatch(settings, ids) == ids
    r = redis.Redis.from_url(REDIS_URL)
    raw = [json.loads(m) for m in reversed(r.lrange(QUEUE, 0, -1))]  # LPUSH: newest first
    assert [m["headers"]["task"] for m in raw] == [dispatch.TRAIN_TASK] * 3
    assert [m["headers"]["argsrepr"] for m in raw] == [f"[{i}]" for i in ids]
    assert all(m["properties"]["delivery_info"]["routing_key"] == QUEUE for m in raw)


def test_a_rediss_url_keeps_kombus_own_transport() -> None:
    dispatch._sender.cache_clear()
    try:
        app = dispatch.sender("rediss://127.0.0.1:6380/0", QUEUE)
        assert app.conf.broker_transport in (None, "")  # TLS options stay kombu's
        app = dispatch.sender(REDIS_URL, QUEUE)
        assert app.conf.broker_transport == "api.redis_sender:Transport"
    finally:
        dispatch._sender.cache_clear()
