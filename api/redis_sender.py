"""kombu's Redis transport for the API's sends, with one redis client per channel.

kombu 5.7's Redis channel makes a new ``redis.Redis`` for every message it puts
(``Channel.conn_or_acquire``), and redis-py 8 builds ~170 response callbacks in each
``Redis.__init__``: about half of the CPU of a ``send_task`` (0.47 of 1.1 ms, cProfile), which is
a quarter of what ``POST /api/experiments`` costs the product over a bare FastAPI app (issue 27).
This channel keeps the client it made while its connection pool is the same (a redis client
holds no connection itself: it borrows one from the pool per command, so sharing it between the
threads that use the channel is safe). Only the API's sender uses it (``api.dispatch.sender``);
the workers consume with kombu's own transport."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from kombu.transport import redis as kombu_redis

TRANSPORT = f"{__name__}:Transport"  # the Celery app's ``broker_transport``


class Channel(kombu_redis.Channel):
    _send_client: Any = None

    @contextmanager
    def conn_or_acquire(self, client: Any = None) -> Iterator[Any]:
        if client:
            yield client
            return
        cached = self._send_client
        if cached is None or cached.connection_pool is not self.pool:
            cached = self._send_client = self._create_client()
        yield cached


class Transport(kombu_redis.Transport):
    Channel = Channel
