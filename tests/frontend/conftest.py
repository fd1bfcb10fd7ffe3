"""Fixtures for the dashboard tests: a live uvicorn server (thread, random port, SQLite in
tmp_path) and one headless Debian chromium per test module (never a downloaded browser)."""

from __future__ import annotations

import os
import socket
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import uvicorn
from fastapi import FastAPI
from sqlalchemy.orm import Session

from api.migrate import upgrade
from api.settings import Settings
from rpg_core.spec import parse_spec
from studio.app import create_app

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]
ARTIFACTS = Path(os.environ.get("RPG_TEST_ARTIFACTS") or Path(__file__).parent / "artifacts")


def spec(name: str, arch: str = "resnet18", ring: int | None = 1000, **rpg: Any) -> dict[str, Any]:
    """A validated ExperimentSpec dump (tiny width, digits)."""
    data: dict[str, Any] = {
        "name": name,
        "model": {"arch": arch, "width": 0.125},
        "data": {"dataset": "digits"},
        "train": {"epochs": 2, "batch_size": 32},
    }
    if ring is not None:
        data["rpg"] = {"ring_size": ring, **rpg}
    return parse_spec(data).model_dump(mode="json")


@dataclass
class LiveServer:
    url: str
    app: FastAPI
    settings: Settings
    server: uvicorn.Server
    thread: threading.Thread
    extra: dict[str, Any] = field(default_factory=dict)

    def session(self) -> Session:
        maker: Any = self.app.state.sessionmaker
        s: Session = maker()
        return s


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def start_server(tmp: Path, seed: Callable[[LiveServer], None]) -> LiveServer:
    """Migrate a fresh SQLite DB, build the composed app (studio.app), seed it, serve it."""
    url = f"sqlite:///{tmp / 'rpg.db'}"
    upgrade(url)
    settings = Settings(
        database_url=url,
        broker_url=None,
        artifact_dir=tmp / "artifacts",
        auto_migrate=False,
        sse_poll_s=0.1,
        sse_max_s=120,
    )
    app = create_app(settings)
    port = _free_port()
    config = uvicorn.Config(
        app, host="127.0.0.1", port=port, log_level="warning", timeout_graceful_shutdown=1
    )
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, daemon=True)
    live = LiveServer(f"http://127.0.0.1:{port}", app, settings, server, thread)
    seed(live)
    thread.start()
    deadline = time.monotonic() + 30
    while not server.started:
        if time.monotonic() > deadline or not thread.is_alive():
            raise RuntimeError("the test server did not start")
        time.sleep(0.05)
    return live


def stop_server(live: LiveServer) -> None:
    live.server.should_exit = True
    live.thread.join(timeout=10)


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    from playwright.sync_api import sync_playwright

    if not Path(CHROMIUM).exists():
        pytest.skip(f"{CHROMIUM} is needed for the browser tests (apt install chromium)")
    with sync_playwright() as p:
        b = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS, headless=True)
        yield b
        b.close()


class ConsoleLog:
    """Console errors and uncaught page errors of a page."""

    def __init__(self, page: Any) -> None:
        self.errors: list[str] = []
        page.on("console", self._console)
        page.on("pageerror", lambda e: self.errors.append(f"pageerror: {e}"))

    def _console(self, message: Any) -> None:
        if message.type == "error":
            self.errors.append(message.text)


def page_in_context(browser: Any, width: int, height: int, wait_ms: int) -> Iterator[Any]:
    """A fresh context and page (console errors in ``page.console``), closed after use."""
    ctx = browser.new_context(viewport={"width": width, "height": height})
    ctx.set_default_timeout(wait_ms)
    p = ctx.new_page()
    p.console = ConsoleLog(p)
    yield p
    ctx.close()


def screenshot(page: Any, name: str) -> Path:
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    path = ARTIFACTS / f"{name}.png"
    page.screenshot(path=str(path), full_page=True)
    return path
