"""Pure ASGI middleware: a request-body size limit (413), overload control (503 +
Retry-After) and Prometheus request metrics."""

from __future__ import annotations

import asyncio
import json
import time
from typing import Any

from fastapi import HTTPException
from prometheus_client import CollectorRegistry, Counter, Histogram
from starlette.types import ASGIApp, Message, Receive, Scope, Send


class BodyTooLarge(HTTPException):
    def __init__(self, limit: int) -> None:
        super().__init__(413, detail=f"request body larger than {limit} bytes")


class BodyLimitMiddleware:
    """413 for a Content-Length over the limit, and for a streamed body that grows past it.

    ``upload_paths`` get ``upload_limit`` instead of ``limit``.
    """

    def __init__(
        self, app: ASGIApp, limit: int, upload_limit: int, upload_paths: tuple[str, ...] = ()
    ) -> None:
        self.app = app
        self.limit = limit
        self.upload_limit = upload_limit
        self.upload_paths = upload_paths

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        limit = self.upload_limit if scope["path"] in self.upload_paths else self.limit
        length = _content_length(scope)
        if length is not None and length > limit:
            await _send_413(send, limit)
            return
        seen = 0

        async def limited() -> Message:
            nonlocal seen
            message = await receive()
            if message["type"] == "http.request":
                seen += len(message.get("body", b""))
                if seen > limit:
                    raise BodyTooLarge(limit)
            return message

        await self.app(scope, limited, send)


def _content_length(scope: Scope) -> int | None:
    for key, value in scope.get("headers", []):
        if key == b"content-length":
            try:
                return int(value)
            except ValueError:
                return None
    return None


async def _send_413(send: Send, limit: int) -> None:
    body = f'{{"detail":"request body larger than {limit} bytes"}}'.encode()
    await send(
        {
            "type": "http.response.start",
            "status": 413,
            "headers": [
                (b"content-type", b"application/json"),
                (b"content-length", str(len(body)).encode()),
                (b"connection", b"close"),
            ],
        }
    )
    await send({"type": "http.response.body", "body": body})


class PrometheusMiddleware:
    """Counts requests and their latency by method, route template and status."""

    def __init__(self, app: ASGIApp, registry: CollectorRegistry) -> None:
        self.app = app
        self.requests = Counter(
            "rpg_http_requests", "HTTP requests", ["method", "route", "status"], registry=registry
        )
        self.latency = Histogram(
            "rpg_http_request_seconds",
            "HTTP request latency",
            ["method", "route"],
            registry=registry,
        )

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        status = [500]
        start = time.perf_counter()

        async def capture(message: Message) -> None:
            if message["type"] == "http.response.start":
                status[0] = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, capture)
        finally:
            route = _route_of(scope)
            self.requests.labels(scope["method"], route, str(status[0])).inc()
            self.latency.labels(scope["method"], route).observe(time.perf_counter() - start)


def _route_of(scope: Scope) -> str:
    """The matched route's template (/api/experiments/{experiment_id}); bounded label values."""
    route: Any = scope.get("route")
    if route is None:
        return "(unmatched)"
    params = {str(v): k for k, v in (scope.get("path_params") or {}).items()}
    parts = [f"{{{params[p]}}}" if p in params else p for p in scope["path"].split("/")]
    return "/".join(parts)


class AdmissionMiddleware:
    """Overload control: at most ``limit`` requests run at once; up to ``max_queued`` more wait
    (at most ``timeout_s``) for a slot; beyond that, or after the wait, the answer is an
    immediate 503 with ``Retry-After`` instead of a request stalled on the database pool.

    Long-lived streams (``exempt_suffixes``: SSE) and ``exempt_paths`` are not counted.
    """

    def __init__(
        self,
        app: ASGIApp,
        limit: int,
        max_queued: int,
        timeout_s: float,
        retry_after_s: int,
        exempt_paths: tuple[str, ...] = (),
        exempt_suffixes: tuple[str, ...] = (),
        exempt_prefixes: tuple[str, ...] = (),
    ) -> None:
        self.app = app
        self.limit = limit
        self.max_queued = max_queued
        self.timeout_s = timeout_s
        self.retry_after_s = retry_after_s
        self.exempt_paths = exempt_paths
        self.exempt_suffixes = exempt_suffixes
        self.exempt_prefixes = exempt_prefixes
        self.running = 0
        self.waiting = 0
        self._slots: asyncio.Semaphore | None = None

    def _exempt(self, path: str) -> bool:
        return (
            path in self.exempt_paths
            or path.endswith(self.exempt_suffixes)
            or path.startswith(self.exempt_prefixes)
        )

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or self._exempt(scope["path"]):
            await self.app(scope, receive, send)
            return
        if self._slots is None:
            self._slots = asyncio.Semaphore(self.limit)
        slots = self._slots
        if slots.locked():
            if self.waiting >= self.max_queued:
                await _send_503(send, self.retry_after_s, "the server is busy")
                return
            self.waiting += 1
            try:
                await asyncio.wait_for(slots.acquire(), self.timeout_s)
            except TimeoutError:
                await _send_503(send, self.retry_after_s, "the server is busy")
                return
            finally:
                self.waiting -= 1
        else:
            await slots.acquire()
        self.running += 1
        try:
            await self.app(scope, receive, send)
        finally:
            self.running -= 1
            slots.release()


async def _send_503(send: Send, retry_after_s: int, why: str) -> None:
    body = json.dumps({"detail": f"{why}; retry after {retry_after_s} s"}).encode()
    await send(
        {
            "type": "http.response.start",
            "status": 503,
            "headers": [
                (b"content-type", b"application/json"),
                (b"content-length", str(len(body)).encode()),
                (b"retry-after", str(retry_after_s).encode()),
            ],
        }
    )
    await send({"type": "http.response.body", "body": body})
