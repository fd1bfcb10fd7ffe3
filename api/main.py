"""The REST API's application factory: ``create_app(settings)`` (routers, middleware, error
handlers). The served app, with the dashboard, is composed in ``studio.app``."""

from __future__ import annotations

import gc
import logging
import threading
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import APIRouter, FastAPI
from fastapi.middleware.cors import CORSMiddleware
from prometheus_client import CollectorRegistry, Gauge

from . import errors, openapi
from .crud.tokens import TokenCache
from .db import make_engine, make_sessionmaker
from .middleware import AdmissionMiddleware, BodyLimitMiddleware, PrometheusMiddleware
from .ratelimit import FailureThrottle, RateLimit
from .routes import (
    analysis,
    events,
    experiments,
    files,
    health,
    methods,
    metrics,
    studies,
    sweeps,
    tasks,
)
from .settings import Settings, get_settings

log = logging.getLogger(__name__)
DESCRIPTION = """Submit RPG experiments and sweeps, follow them, and download their models.

Writes need `Authorization: Bearer <token>` (create one with `rpg token create NAME`).
Errors name the field: `{"detail": [{"field": "rpg.ring_size", "message": "..."}]}`."""


def _api_router() -> APIRouter:
    api = APIRouter(prefix="/api")
    for module in (experiments, metrics, events, sweeps, studies, analysis, files, tasks, methods):
        api.include_router(module.router)
    return api


_frozen = threading.Event()


def freeze_start_up_heap() -> int:
    """Move what the process holds once warmed (torch's import alone: some 300,000 objects)
    into the collector's permanent generation, once per process: a full collection otherwise
    scans them all again, about once per 10,000 new objects (a power law of 10,000 points
    paid 0.15-0.3 s of collections per answer). What is created later is collected as usual.
    Returns how many objects were frozen (0: already done)."""
    if _frozen.is_set():
        return 0
    _frozen.set()
    gc.collect()  # garbage of the start-up is freed, not frozen
    gc.freeze()
    n = gc.get_freeze_count()
    log.info("start-up heap frozen: %d objects out of the collector's scans", n)
    return n


def create_app(settings: Settings | None = None) -> FastAPI:
    """A configured app: its own engine, session factory, metrics registry and middleware."""
    settings = settings or get_settings()

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        if settings.auto_migrate:
            from .migrate import upgrade

            upgrade(settings.database_url)
        if settings.warm_on_start:
            from .validation import warm_submission_path

            warm_submission_path(settings)
            from .analysis import warm_power_law

            warm_power_law(app.state.sessionmaker)
            freeze_start_up_heap()
        yield
        app.state.engine.dispose()

    app = FastAPI(
        title="RPG Studio API",
        version="0.1.0",
        description=DESCRIPTION,
        lifespan=lifespan,
        docs_url=None,  # served by .docs from the installed package (no CDN)
        redoc_url=None,
    )
    app.state.settings = settings
    app.state.engine = make_engine(
        settings.database_url,
        pool_size=settings.db_pool_size,
        max_overflow=settings.db_pool_size // 2,
        pool_timeout=settings.db_pool_timeout_s,
    )
    app.state.sessionmaker = make_sessionmaker(app.state.engine)
    registry = CollectorRegistry()
    app.state.registry = registry
    app.state.experiments_gauge = Gauge(
        "rpg_experiments", "experiments by status", ["status"], registry=registry
    )
    app.state.parse_spec_limiter = RateLimit(settings.parse_spec_rate, settings.parse_spec_burst)
    app.state.token_cache = TokenCache(settings.token_cache_s)
    app.state.auth_throttle = FailureThrottle(
        settings.auth_max_failures, settings.auth_failure_window_s
    )
    errors.install(app)
    openapi.install(app, settings)
    from .docs import mount_docs

    mount_docs(app)
    app.include_router(_api_router())
    app.include_router(health.router)
    app.add_middleware(
        BodyLimitMiddleware,
        limit=settings.max_body_bytes,
        upload_limit=settings.max_upload_bytes,
        upload_paths=(files.INSPECT_PATH,),
    )
    if settings.cors_origins:
        app.add_middleware(
            CORSMiddleware,
            allow_origins=settings.cors_origins,
            allow_methods=["GET", "POST", "DELETE"],
            allow_headers=["Authorization", "Content-Type"],
        )
    app.add_middleware(
        AdmissionMiddleware,
        limit=settings.max_concurrent_requests,
        max_queued=settings.max_queued_requests,
        timeout_s=settings.queue_timeout_s,
        retry_after_s=settings.retry_after_s,
        exempt_paths=("/healthz", "/metrics"),
        exempt_suffixes=("/events",),  # SSE streams poll with their own short sessions
        exempt_prefixes=("/static/", "/assets/"),
    )
    app.add_middleware(PrometheusMiddleware, registry=registry)
    return app
