"""The composed web app: the REST API (``api.main``) with the dashboard (``frontend``) at ``/``.

``create_app(settings)`` is what ``rpg serve`` and ``rpg api`` run; ``app`` is the instance
``uvicorn studio.app:app`` serves (built on first access, from the environment's settings).
"""

from __future__ import annotations

from fastapi import FastAPI

import frontend
from api import main as api_main
from api.settings import Settings


def create_app(settings: Settings | None = None) -> FastAPI:
    """The API app of ``settings`` with the dashboard mounted."""
    app = api_main.create_app(settings)
    frontend.mount(app)
    return app


app: FastAPI  # built on first access (below), so importing this module has no side effects


def __getattr__(name: str) -> FastAPI:
    if name == "app":
        global app
        app = create_app()
        return app
    raise AttributeError(name)
