"""Pose and multitask in the dashboard (issue 13): the Tables page (paper Tables 4 and 5) for a
pose and a multitask sweep, a run's pictures (keypoints over the image; depth and normal maps)
and the task-aware power law, against a live server with stored results (no worker)."""

from __future__ import annotations

import base64
import struct
import zlib
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from api import crud
from rpg_core.spec import parse_spec

from .conftest import LiveServer, page_in_context, screenshot, start_server, stop_server

WAIT_MS = 15_000


def tiny_png(w: int = 8, h: int = 8, shade: int = 128) -> str:
    """A real w x h greyscale PNG, base64."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        body = kind + data
        return struct.pack(">I", len(data)) + body + struct.pack(">I", zlib.crc32(body))

    raw = b"".join(b"\x00" + bytes((shade + x * 8) % 256 for x in range(w)) for _ in range(h))
    png = (
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", struct.pack(">IIBBBBB", w, h, 8, 0, 0, 0, 0))
        + chunk(b"IDAT", zlib.compress(raw))
        + chunk(b"IEND", b"")
    )
    return base64.b64encode(png).decode()


def task_spec(task: str, sharing: str, stacks: int, seed: int) -> dict[str, Any]:
    data = {
        "task": task,
        "data": {
            "dataset": "synthetic-pose" if task == "pose" else "synthetic-scenes",
            "num_train": 64,
            "num_val": 32,
            "image_size": 32,
        },
        "model": {"stacks": stacks, "sharing": sharing, "width": 0.25},
        "train": {"epochs": 1, "batch_size": 16, "seed": seed},
    }
    return parse_spec(data).model_dump(mode="json")


POSE_SAMPLE = {
    "image": tiny_png(),
    "pred": [[1.0 + i % 6, 1.0 + i // 6] for i in range(16)],
    "true": [[1.5 + i % 6, 1.5 + i // 6, int(i % 4 != 0)] for i in range(16)],
    "head": 2.0,
}
SCENE_SAMPLE = {
    k: tiny_png(shade=s)
    for k, s in [
        ("image", 10), ("depth_pred", 60), ("depth_true", 90), ("normal_pred", 120), ("normal_true", 150)
    ]
}  # fmt: skip


def _finish(s: Any, exp_id: int, result: dict[str, Any]) -> None:
    lease = crud.claim_experiment(s, exp_id, worker="worker-a:101")
    assert lease is not None
    assert crud.finish_experiment(s, exp_id, lease.token, result, [])


def _seed(live: LiveServer) -> None:
    with live.session() as s:
        grid = [(sh, st, seed) for sh in ("none", "rpg") for st in (2, 4) for seed in (0, 1)]
        sweep, ids = crud.create_sweep(
            s, "table4", {"base": {"task": "pose"}}, [task_spec("pose", *g) for g in grid]
        )
        s.commit()
        for (sh, st, seed), exp_id in zip(grid, ids, strict=True):
            pckh = {"none": 0.5, "rpg": 0.6}[sh] + 0.05 * st + 0.01 * seed
            _finish(s, exp_id, {
                "task": "pose", "metrics": {"pckh": pckh}, "primary_metric": "pckh",
                "primary_value": pckh, "total_params": 1000 * st, "backbone_params": 1000 * st,
                "samples": [POSE_SAMPLE, POSE_SAMPLE], "inference_ms_per_image": 0.5 * st,
            })  # fmt: skip
        live.extra.update(pose_sweep=sweep, pose_run=ids[-1])
        grid5 = [(sh, 2, seed) for sh in ("reuse", "rpg") for seed in (0, 1)]
        sweep5, ids5 = crud.create_sweep(
            s,
            "table5",
            {"base": {"task": "multitask"}},
            [task_spec("multitask", *g) for g in grid5],
        )
        s.commit()
        for (sh, _, seed), exp_id in zip(grid5, ids5, strict=True):
            depth = {"reuse": 0.5, "rpg": 0.4}[sh] + 0.02 * seed
            _finish(s, exp_id, {
                "task": "multitask", "metrics": {"depth_rmse": depth, "normal_rmse": 0.3},
                "primary_metric": "depth_rmse", "primary_value": depth, "total_params": 5000,
                "samples": [SCENE_SAMPLE],
            })  # fmt: skip
        live.extra.update(scenes_sweep=sweep5, scenes_run=ids5[0])


@pytest.fixture(scope="module")
def live(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveServer]:
    server = start_server(tmp_path_factory.mktemp("ui-tasks"), _seed)
    yield server
    stop_server(server)


@pytest.fixture
def page(browser: Any, live: LiveServer) -> Iterator[Any]:
    yield from page_in_context(browser, 1280, 900, WAIT_MS)


def test_samples_markup(live: LiveServer) -> None:
    pose = httpx.get(f"{live.url}/ui/runs/{live.extra['pose_run']}/samples")
    assert pose.status_code == 200
    html = pose.text
    assert html.count('class="sample pose-sample"') == 2
    assert html.count('class="kp-pred"') == 32 and html.count("kp-true") == 32
    assert html.count("kp-hidden") == 8  # every fourth joint is marked invisible
    assert 'viewBox="0 0 8 8"' in html and "data:image/png;base64," in html
    scenes = httpx.get(f"{live.url}/ui/runs/{live.extra['scenes_run']}/samples").text
    for label in ("input", "depth (predicted)", "depth (true)", "normals (true)"):
        assert f"<figcaption>{label}</figcaption>" in scenes
    assert scenes.count("<img") == 5
    assert httpx.get(f"{live.url}/ui/runs/999999/samples").status_code == 404
    tables = httpx.get(f"{live.url}/tables")
    assert tables.status_code == 200 and 'href="/tables"' in tables.text


def test_tables_page_for_pose_and_multitask(page: Any, live: LiveServer) -> None:
    page.goto(f"{live.url}/tables?sweep={live.extra['pose_sweep']}")
    page.wait_for_selector("#tb-table[data-ready='1']")
    assert page.locator("#tb-table tbody tr").count() == 2  # none, rpg
    assert page.locator("#tb-table thead th").count() == 3  # label, 2 and 4 stacks
    best = page.locator("td.best-cell")
    assert best.count() == 1
    assert "PCKh@0.5" in best.inner_text() and "★" in best.inner_text()
    row = best.locator("xpath=..").locator("th").inner_text()
    assert row == "rpg"
    assert "higher is better" in page.locator("#tb-caption").inner_text()
    screenshot(page, "tables-pose")

    page.goto(f"{live.url}/tables?sweep={live.extra['scenes_sweep']}")
    page.wait_for_selector("#tb-table[data-ready='1']")
    assert "lower is better" in page.locator("#tb-caption").inner_text()
    depth_best = page.locator(".metric.best[data-metric='depth_rmse']")
    assert depth_best.count() == 1
    cell_row = depth_best.locator("xpath=ancestor::tr/th").inner_text()
    assert cell_row == "rpg"  # the lower depth RMSE
    assert page.console.errors == []


def test_run_page_draws_keypoints_and_maps(page: Any, live: LiveServer) -> None:
    page.goto(f"{live.url}/runs/{live.extra['pose_run']}")
    page.wait_for_selector("#samples-panel:not([hidden]) svg.kp-overlay circle.kp-pred")
    box = page.locator(".kp-wrap").first.bounding_box()
    assert box is not None and box["width"] >= 100  # scaled up from 8 px
    assert page.locator(".pose-sample").count() == 2
    # the facts name the task, the sharing and the task's metric, not accuracy and ring size
    facts = page.locator("#run-facts").inner_text()
    assert "multitask" not in facts and "pose" in facts and "pckh (primary)" in facts
    assert "rpg · 4 sub-networks" in facts and "best val acc" not in facts
    screenshot(page, "run-pose-samples")
    page.goto(f"{live.url}/runs/{live.extra['scenes_run']}")
    page.wait_for_selector("#samples-panel:not([hidden]) .map-row img")
    assert page.locator(".map-row figcaption").all_inner_texts()[:3] == [
        "input", "depth (predicted)", "depth (true)"
    ]  # fmt: skip
    assert page.console.errors == []


def test_speed_figure_of_a_pose_sweep_plots_pckh_by_sharing(live: LiveServer) -> None:
    r = httpx.get(f"{live.url}/ui/figures/sweeps/{live.extra['pose_sweep']}/speed")
    assert r.status_code == 200 and r.json()["points"] == 8
    fig = r.json()["figure"]
    assert fig["layout"]["yaxis"]["title"]["text"] == "PCKh@0.5 (higher is better)"
    assert fig["layout"]["title"]["text"].startswith("PCKh@0.5 against inference time")
    groups = {t["meta"]["group"] for t in fig["data"] if t.get("meta", {}).get("role") == "points"}
    assert groups == {"none x2", "none x4", "rpg x2", "rpg x4"}


def test_power_law_page_task_selector(page: Any, live: LiveServer) -> None:
    page.goto(f"{live.url}/power-law?task=multitask&y=error")
    page.wait_for_selector("#pl-graph[data-ready='1']")
    assert page.locator("select[name=task]").input_value() == "multitask"
    assert page.locator("select[name=metric]").input_value() == "depth_rmse"
    assert "lower is better" in page.locator("#pl-fitted").inner_text()
    title = page.evaluate("document.querySelector('#pl-graph').layout.yaxis.title.text")
    assert "depth RMSE" in title
    page.select_option("select[name=task]", "pose")
    assert page.locator("select[name=metric] option").all_inner_texts() == [
        "PCKh@0.5 (higher is better)"
    ]
    page.click("#pl-controls button[type=submit]")
    page.wait_for_function("document.querySelector('#pl-fitted').textContent.includes('PCKh')")
    assert "error (1 − PCKh@0.5)" in page.locator("#pl-fitted").inner_text()
    assert page.console.errors == []
