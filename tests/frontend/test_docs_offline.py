"""``/docs`` works without internet: Swagger UI comes from an installed package, not a CDN
(a real chromium whose every request off this machine is refused)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from .conftest import LiveServer, start_server, stop_server


@pytest.fixture(scope="module")
def live(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveServer]:
    srv = start_server(tmp_path_factory.mktemp("docs"), lambda _live: None)
    yield srv
    stop_server(srv)


def test_docs_render_offline(live: LiveServer, browser: Any) -> None:
    context = browser.new_context()
    blocked: list[str] = []

    def offline(route: Any) -> None:
        url = route.request.url
        if url.startswith(live.url):
            route.continue_()
        else:
            blocked.append(url)
            route.abort("internetdisconnected")

    context.route("**/*", offline)
    page = context.new_page()
    errors: list[str] = []
    page.on("pageerror", lambda e: errors.append(str(e)))
    page.goto(f"{live.url}/docs")
    page.wait_for_selector(".swagger-ui h1.title", timeout=20_000)
    assert "RPG Studio API" in page.inner_text(".swagger-ui h1.title")
    page.wait_for_selector('.opblock-summary-path[data-path="/api/experiments"]', timeout=20_000)
    assert blocked == [] and errors == []
    context.close()


def test_docs_assets_come_from_the_installed_package(live: LiveServer) -> None:
    import httpx

    html = httpx.get(f"{live.url}/docs").text
    assert "cdn" not in html.lower() and "/docs-assets/swagger-ui-bundle.js" in html
    js = httpx.get(f"{live.url}/docs-assets/swagger-ui-bundle.js")
    assert js.status_code == 200 and len(js.content) > 100_000
    from api.docs import swagger_ui_dir

    assert Path(swagger_ui_dir(), "swagger-ui-bundle.js").read_bytes() == js.content
