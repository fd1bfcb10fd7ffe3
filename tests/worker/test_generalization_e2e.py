"""End to end: a sweep with eval.ood over REST -> a real Celery worker -> the API -> the
dashboard's in-distribution vs out-of-distribution plot and a run's per-shift breakdown, in a
real browser (Debian chromium)."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pytest
import uvicorn
from PIL import Image

from studio.app import create_app

from ..frontend.conftest import CHROMIUM, ConsoleLog, browser, screenshot  # noqa: F401
from .conftest import Stack, free_port, make_stack, tiny_spec

WAIT_MS = 20_000


def _data_root(root: Path) -> Path:
    """An OOD folder of 8x8 images in two classes and its class map onto synthetic's 0..3."""
    rng = np.random.default_rng(0)
    for cls in ("ball", "cup"):
        (root / "odd-mini" / cls).mkdir(parents=True)
        for i in range(3):
            img = rng.integers(0, 255, (8, 8, 3), np.uint8)
            Image.fromarray(img).save(root / "odd-mini" / cls / f"{i}.png")
    (root / "class-maps").mkdir()
    (root / "class-maps" / "odd.json").write_text(json.dumps({"ball": 0, "cup": [1, 2]}))
    (root / "class-maps" / "bad.json").write_text(json.dumps({"ball": 9}))  # 4 classes
    return root


@pytest.fixture
def served(pg_url: str, tmp_path: Path) -> Iterator[tuple[Stack, str]]:
    """A worker stack (PostgreSQL, Redis, a Celery worker) and its app served over HTTP."""
    for st in make_stack(pg_url, tmp_path):
        root = _data_root(tmp_path / "data")
        st.settings = st.settings.model_copy(update={"data_root": root})
        st.start_worker(RPG_DATA_ROOT=str(root))
        port = free_port()
        config = uvicorn.Config(
            create_app(st.settings), host="127.0.0.1", port=port, log_level="warning"
        )
        server = uvicorn.Server(config)
        thread = threading.Thread(target=server.run, daemon=True)
        thread.start()
        deadline = time.monotonic() + 30
        while not server.started:
            assert time.monotonic() < deadline and thread.is_alive(), "server did not start"
            time.sleep(0.05)
        try:
            yield st, f"http://127.0.0.1:{port}"
        finally:
            server.should_exit = True
            thread.join(timeout=10)


def _traces(page: Any, selector: str) -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = page.evaluate(
        f"""() => document.querySelector('{selector}').data.map(t => ({{
            name: t.name, n: t.x.length, meta: t.meta || null, x: t.x, y: t.y,
            customdata: t.customdata || null}}))"""
    )
    return out


def test_ood_sweep_through_worker_api_and_dashboard(
    served: tuple[Stack, str],
    browser: Any,  # noqa: F811
) -> None:
    st, url = served
    api = httpx.Client(base_url=url, headers=st.auth, timeout=30)  # the app with the data root
    base = tiny_spec("ood", epochs=1)
    base["eval"] = {
        "ood": [
            {"shift": "rotation", "severities": [0, 2]},
            {"shift": "occlusion", "severities": [3]},
            {"folder": "odd-mini", "class_map": "odd"},
        ]
    }
    sweep = {"name": "t6", "base": base, "grid": {"rpg": [None, {"ring_size": 2000}]}}
    r = api.post("/api/sweeps", json=sweep)
    assert r.status_code == 201, r.text
    sweep_id, ids = r.json()["id"], r.json()["experiment_ids"]
    missing = {**sweep, "base": {**base, "eval": {"ood": [{"folder": "gone", "class_map": "odd"}]}}}
    r = api.post("/api/sweeps", json=missing)
    assert r.status_code == 422 and "'gone'" in r.text, r.text  # checked on submit, by name
    for exp_id in ids:
        exp = st.wait_status(exp_id, "succeeded", "failed", timeout=180)
        assert exp.status == "succeeded", exp.error
    bad = {**base, "name": "bad-map", "eval": {"ood": [{"folder": "odd-mini", "class_map": "bad"}]}}
    r = api.post("/api/experiments", json=bad)
    assert r.status_code == 201, r.text  # the file exists: its contents are the worker's to read
    failed = st.wait_status(r.json()["id"], "succeeded", "failed", timeout=120)
    assert failed.status == "failed" and failed.attempts == 1  # not retried: it cannot pass
    assert "class_map 'bad'" in (failed.error or "") and "9 is not a training class" in (
        failed.error or ""
    )
    assert failed.epoch is None  # refused before the first epoch

    # the API: per-set accuracies, severity 0 = the run's own validation accuracy
    out = api.get("/api/analysis/ood", params={"sweep": sweep_id}).json()
    points = {p["scope"]: p for p in out["points"]}
    assert set(points) == {"plain", "global"}
    for p in points.values():
        assert set(p["ood"]) == {"rotation@0", "rotation@2", "occlusion@3", "folder:odd-mini"}
        assert p["ood"]["rotation@0"] == p["val_acc"]
        rest = [v for k, v in p["ood"].items() if k != "rotation@0"]
        assert p["ood_acc"] == pytest.approx(sum(rest) / 3)
    detail = api.get(f"/api/experiments/{ids[0]}").json()
    assert detail["result"]["ood"] == points[detail["scope"]]["ood"]
    gap = api.get("/api/analysis/power-law", params={"sweep": sweep_id, "quantity": "gap"}).json()
    assert {s["scope"] for s in gap["series"]} == {"plain", "global"}

    # the dashboard, in a browser: the scatter (RPG and plain apart) and a run's breakdown
    ctx = browser.new_context(viewport={"width": 1280, "height": 900})
    ctx.set_default_timeout(WAIT_MS)
    page = ctx.new_page()
    console = ConsoleLog(page)
    try:
        page.goto(f"{url}/generalization?sweep={sweep_id}")
        page.wait_for_selector("#ood-graph[data-ready='1']")
        traces = {t["meta"]["kind"]: t for t in _traces(page, "#ood-graph") if t["meta"]}
        assert set(traces) == {"RPG", "plain"}
        for kind, scope in (("RPG", "global"), ("plain", "plain")):
            t = traces[kind]
            assert t["customdata"] == [points[scope]["experiment_id"]]
            assert t["x"] == [pytest.approx(points[scope]["val_acc"])]
            assert t["y"] == [pytest.approx(points[scope]["ood_acc"])]
        assert page.locator("#ood-table tbody tr").count() == 2
        screenshot(page, "generalization")
        rpg_id = points["global"]["experiment_id"]
        page.evaluate(
            "document.querySelector('#ood-graph').emit('plotly_click', "
            f"{{points: [{{customdata: {rpg_id}}}]}})"
        )
        page.wait_for_url(f"**/runs/{rpg_id}")
        page.wait_for_selector("#ood-graph[data-ready='1']")
        rows = page.locator("#ood-shifts tbody tr")
        assert rows.count() == 3  # rotation, occlusion, the folder
        assert "folder odd-mini" in page.locator("#ood-shifts").inner_text()
        lines = {t["name"]: t for t in _traces(page, "#ood-graph")}
        assert lines["rotation"]["x"] == ["0", "2"]
        assert lines["rotation"]["y"][0] == pytest.approx(points["global"]["val_acc"])
        screenshot(page, "run-ood")
        page.goto(f"{url}/power-law?y=gap&sweep={sweep_id}")
        page.wait_for_selector("#pl-graph[data-ready='1']")
        gap_traces = [t for t in _traces(page, "#pl-graph") if t["meta"]]
        assert sorted(t["n"] for t in gap_traces if t["meta"]["role"] == "points") == [1, 1]
        assert console.errors == []
    finally:
        ctx.close()
