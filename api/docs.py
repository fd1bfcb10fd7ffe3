"""``/docs``: Swagger UI served from the installed ``swagger-ui-bundle-v2`` package, so the API's
documentation works without internet (FastAPI's default loads it from a CDN)."""

from __future__ import annotations

from pathlib import Path

from fastapi import FastAPI
from fastapi.openapi.docs import get_swagger_ui_html, get_swagger_ui_oauth2_redirect_html
from fastapi.responses import HTMLResponse
from fastapi.staticfiles import StaticFiles

ASSETS = "/docs-assets"


def swagger_ui_dir() -> Path:
    """The folder of Swagger UI's files in the installed package."""
    import swagger_ui_bundle

    return Path(str(swagger_ui_bundle.swagger_ui_path))


def mount_docs(app: FastAPI) -> None:
    """Serve Swagger UI at ``/docs`` with its assets under ``/docs-assets`` (no CDN)."""
    folder = swagger_ui_dir()
    app.mount(ASSETS, StaticFiles(directory=folder), name="docs-assets")
    title = f"{app.title} - docs"
    openapi_url = app.openapi_url or "/openapi.json"
    redirect = "/docs/oauth2-redirect"

    @app.get("/docs", include_in_schema=False)
    def swagger_ui() -> HTMLResponse:
        return get_swagger_ui_html(
            openapi_url=openapi_url,
            title=title,
            swagger_js_url=f"{ASSETS}/swagger-ui-bundle.js",
            swagger_css_url=f"{ASSETS}/swagger-ui.css",
            swagger_favicon_url=f"{ASSETS}/favicon-32x32.png",
            oauth2_redirect_url=redirect,
        )

    @app.get(redirect, include_in_schema=False)
    def swagger_ui_redirect() -> HTMLResponse:
        return get_swagger_ui_oauth2_redirect_html()
