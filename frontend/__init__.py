"""RPG Studio dashboard: server-rendered pages with plotly figures built in Python.

``mount(app)`` adds the pages (/, /runs/{id}, /power-law, /similarity, /sweeps, /tables), the static
assets (/static), plotly.js from the installed plotly package (/assets) and the JSON the pages
need beyond the REST API (/ui/...). Nothing is fetched from the internet.
"""

from __future__ import annotations

from fastapi import FastAPI
from fastapi.staticfiles import StaticFiles


def mount(app: FastAPI) -> None:
    """Add the dashboard's routes and static files to ``app`` (an api.main.create_app app)."""
    from .routes import STATIC, router
    from .routes_tasks import router as tasks_router
    from .routes_tradeoffs import router as tradeoffs_router

    if getattr(app.state, "frontend_mounted", False):
        return
    app.state.frontend_mounted = True
    app.include_router(router)
    app.include_router(tradeoffs_router)
    app.include_router(tasks_router)
    app.mount("/static", StaticFiles(directory=STATIC), name="static")
    from .figures import warm

    warm()  # plotly's lazy validators, before the first figure request


__all__ = ["mount"]
