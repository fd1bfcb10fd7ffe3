"""Paint times in headless chromium: the runs page over 10,000 experiments (< 1.5 s) and the
power-law page over 1,000 results (< 1 s). Seeded with bulk inserts (executemany).

Both pages are visited once before the measured visit, so plotly.js (4.8 MB, cached
immutable) is measured as a returning user gets it: from the HTTP and V8 code caches.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from typing import Any

import pytest
from sqlalchemy import insert

from api.models import Experiment, utcnow

from .conftest import ARTIFACTS, LiveServer, screenshot, spec, start_server, stop_server

RUNS = 10_000
RESULTS = 1_000
RUNS_BUDGET_S = 1.5
POWER_LAW_BUDGET_S = 1.0
SERIES = [("resnet18", "global"), ("resnet18", "stage"), ("resnet34", "global"),
          ("resnet34", "stage"), ("resnet18", "plain")]  # fmt: skip


def _row(i: int, base: dict[str, Any]) -> dict[str, Any]:
    now = utcnow()
    arch, scope = SERIES[i % len(SERIES)]
    done = i < RESULTS
    params = 1000 * 2 ** (i % 9) + i
    return {
        "name": f"bulk-{i}", "spec": base, "status": "succeeded" if done else "queued",
        "arch": arch, "dataset": "digits", "scope": scope,
        "ring_size": None if scope == "plain" else float(params), "progress": 1.0 if done else 0.0,
        "attempts": 1 if done else 0, "lease_token": 0, "cancel_requested": False,
        "created_at": now, "updated_at": now,
        "best_val_acc": 1 - 0.9 * params ** -0.25 if done else None,
        "val_acc": 1 - 0.9 * params ** -0.25 if done else None,
        "train_acc": 0.99 if done else None, "backbone_params": params if done else None,
    }  # fmt: skip


def _seed(live: LiveServer) -> None:
    base = spec("bulk")
    rows = [_row(i, base) for i in range(RUNS)]
    with live.session() as s:
        s.execute(insert(Experiment), rows)  # executemany
        s.commit()


@pytest.fixture(scope="module")
def live(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveServer]:
    server = start_server(tmp_path_factory.mktemp("perf"), _seed)
    yield server
    stop_server(server)


@pytest.fixture(scope="module")
def page(browser: Any, live: LiveServer) -> Iterator[Any]:
    ctx = browser.new_context(viewport={"width": 1920, "height": 1080})
    ctx.set_default_timeout(30_000)
    p = ctx.new_page()
    yield p
    ctx.close()


def _timed(page: Any, url: str, ready: str) -> dict[str, float]:
    start = time.perf_counter()
    page.goto(url)
    page.wait_for_selector(ready, state="attached")
    wall = time.perf_counter() - start
    paint = page.evaluate(
        "() => (performance.getEntriesByName('first-contentful-paint')[0] || {}).startTime || 0"
    )
    return {"wall_s": wall, "first_contentful_paint_ms": paint}


def _best_of(n: int, page: Any, url: str, ready: str) -> dict[str, float]:
    """The fastest of ``n`` loads: what the page costs, less what a busy machine adds (a
    neighbour's burst can double one load; it cannot make all of them fast)."""
    return min((_timed(page, url, ready) for _ in range(n)), key=lambda t: t["wall_s"])


def _record(name: str, timing: dict[str, float]) -> None:
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    (ARTIFACTS / f"{name}-timing.json").write_text(json.dumps(timing, indent=2))


def test_runs_page_over_10k_runs_paints_fast(page: Any, live: LiveServer) -> None:
    page.goto(live.url + "/")  # warm-up: server routes, browser cache
    page.wait_for_selector("#runs-body tr[data-id]")
    timing = _best_of(3, page, live.url + "/?limit=50", "#runs-body tr[data-id]")
    _record("perf-runs", timing)
    assert page.locator("#runs-body tr[data-id]").count() == 50
    assert f"{RUNS}" in page.inner_text("#counts")
    screenshot(page, "perf-runs-10k")
    assert timing["wall_s"] < RUNS_BUDGET_S, timing


def test_power_law_page_over_1k_results_paints_fast(page: Any, live: LiveServer) -> None:
    for _ in range(2):  # warm-up: plotly.js into the HTTP and V8 code caches
        page.goto(live.url + "/power-law")
        page.wait_for_selector("#pl-graph[data-ready='1']")
    timing = _best_of(3, page, live.url + "/power-law", "#pl-graph[data-ready='1'] .main-svg")
    _record("perf-power-law", timing)
    n = page.evaluate(
        "document.querySelector('#pl-graph').data"
        ".filter(t => t.meta.role === 'points').reduce((a, t) => a + t.x.length, 0)"
    )
    assert n == RESULTS
    screenshot(page, "perf-power-law-1k")
    assert timing["wall_s"] < POWER_LAW_BUDGET_S, timing
