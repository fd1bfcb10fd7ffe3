"""Comparable by construction in the browser (issue 22): the power-law page draws one series per
set of conditions and says in words what it pooled and what it left apart; the Tables page
badges flagged runs and never stars them; a sweep of RPG and plain runs has no Table button."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from api import crud
from rpg_core.spec import parse_spec

from .conftest import LiveServer, page_in_context, screenshot, start_server, stop_server

WAIT_MS = 30_000
FASHION: dict[str, Any] = {
    "model": {"arch": "resnet18", "width": 0.25},
    "data": {"dataset": "fashion-mnist", "train_subset": 3000, "image_size": 14},
    "train": {"epochs": 3},
}
CONDITIONS = {  # label -> (spec overrides, a, b, sizes); the short recipe's sizes run twice
    "longer": ({"train": {"epochs": 10}}, 0.6, 0.2, (1000, 4000, 16000)),
    "more-data": ({"data": {"train_subset": 6000}}, 0.8, 0.3, (1000, 4000, 16000)),
    "short": ({}, 0.9, 0.25, (1000, 2000, 4000, 8000)),  # the most recent: the page opens on it
}
POSE: dict[str, Any] = {
    "task": "pose",
    "data": {"dataset": "synthetic-pose", "num_train": 64, "num_val": 32, "image_size": 32},
    "model": {"stacks": 2, "sharing": "rpg", "width": 0.25},
    "train": {"epochs": 1, "batch_size": 16},
}


def _spec(name: str, base: dict[str, Any], **over: Any) -> dict[str, Any]:
    d: dict[str, Any] = {k: dict(v) if isinstance(v, dict) else v for k, v in base.items()}
    for k, v in over.items():
        d[k] = {**(d.get(k) or {}), **v} if isinstance(v, dict) else v
    return parse_spec({**d, "name": name}).model_dump(mode="json")


def _finish(live: LiveServer, exp_id: int, result: dict[str, Any]) -> None:
    with live.session() as s:
        lease = crud.claim_experiment(s, exp_id, worker="w:1")
        assert lease is not None
        assert crud.finish_experiment(s, exp_id, lease.token, result, [])


def _seed(live: LiveServer) -> None:
    with live.session() as s:
        for label, (over, a, b, sizes) in CONDITIONS.items():
            seeds = (0, 1) if label == "short" else (0,)
            for p in sizes:
                for seed in seeds:
                    spec = _spec(f"{label}-{p}-s{seed}", FASHION, rpg={"ring_size": p},
                                 train={**over.get("train", {}), "seed": seed},
                                 **{k: v for k, v in over.items() if k != "train"})  # fmt: skip
                    exp_id = crud.create_experiment(s, spec)
                    s.commit()
                    acc = 1 - a * p**-b + (0.01 * seed if label == "short" else 0.0)
                    _finish(live, exp_id, {"best_val_acc": acc, "val_acc": acc,
                                           "backbone_params": p, "total_params": p + 500})  # fmt: skip
        # the demo's sweep: RPG ring sizes and a plain run (no sharing variants: no Table)
        demo = [_spec(f"demo-{r}", FASHION, rpg={"ring_size": r}) for r in (1000, 4000)]
        demo.append(_spec("demo-plain", FASHION))
        demo_id, _ = crud.create_sweep(
            s, "demo", {"base": {**FASHION, "rpg": {"ring_size": 1000}},
                        "grid": {"rpg.ring_size": [1000, 4000]},
                        "extra": [{"name": "plain", "rpg": None}]}, demo,
        )  # fmt: skip
        # a pose sweep over sharing: the near-chance run is the highest, flagged
        grid = [("none", 0.40), ("rpg", 0.55), ("full", 0.90)]
        pose = [_spec(f"pose-{sh}", POSE, model={"sharing": sh}) for sh, _ in grid]
        pose_id, pose_ids = crud.create_sweep(
            s, "t4", {"base": POSE, "grid": {"model.sharing": [sh for sh, _ in grid]}}, pose
        )
        s.commit()
    for (sharing, pckh), exp_id in zip(grid, pose_ids, strict=True):
        _finish(live, exp_id, {
            "task": "pose", "metrics": {"pckh": pckh}, "primary_metric": "pckh",
            "primary_value": pckh, "backbone_params": 1000, "total_params": 1300,
            **({"flags": "near-chance"} if sharing == "full" else {}),
        })  # fmt: skip
        if sharing == "full":
            live.extra["flagged"] = exp_id
    live.extra.update(demo=demo_id, pose=pose_id)


@pytest.fixture(scope="module")
def live(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveServer]:
    server = start_server(tmp_path_factory.mktemp("conditions"), _seed)
    yield server
    stop_server(server)


@pytest.fixture
def page(browser: Any, live: LiveServer) -> Iterator[Any]:
    yield from page_in_context(browser, 1440, 1000, WAIT_MS)


def test_the_power_law_page_draws_three_series_and_names_them(page: Any, live: LiveServer) -> None:
    page.goto(live.url + "/power-law?target=0.95")
    page.wait_for_selector("#pl-graph[data-ready='1']")
    traces = page.evaluate(
        """() => document.querySelector('#pl-graph').data.map(t => ({name: t.name,
            role: (t.meta || {}).role, n: t.x.length, key: (t.meta || {}).conditions_key,
            bars: t.error_y ? t.error_y.visible : null}))"""
    )
    points = [t for t in traces if t["role"] == "points"]
    fits = [t for t in traces if t["role"] == "fit"]
    assert len(points) == 3 and len(fits) == 3
    assert len({t["key"] for t in points}) == 3
    assert {t["key"] for t in fits} == {t["key"] for t in points}
    # the replicated sizes are one marker each, at their mean, with a spread bar
    short = next(t for t in points if t["n"] == 4)
    assert short["bars"] is True
    summary = page.inner_text("#pl-summary")
    assert summary.startswith("8 runs: fashion-mnist, 3,000 training images at 14 px")
    assert "3 epochs, short recipe" in summary
    assert "; 3 other runs differ in " in summary  # then the second group: "3 runs differ in"
    assert "differ in augmentation (on), epochs (10)" in summary
    assert "differ in training images (6,000)" in summary
    assert "each group is a separate series, never pooled" in summary
    assert "3 series" in page.inner_text("#pl-state")
    rows = page.locator("#pl-table tbody tr")
    assert rows.count() == 3
    cells = rows.all_inner_texts()
    assert all("fashion-mnist" in c for c in cells)
    # no number explodes: an unreachable target is said in words
    need = page.locator("#pl-table tbody tr td:last-child").all_inner_texts()
    assert all(len(t) < 80 and "e+" not in t for t in need)
    screenshot(page, "power-law-conditions")
    assert page.console.errors == []


def test_tables_badge_a_flagged_run_and_never_star_it(page: Any, live: LiveServer) -> None:
    page.goto(f"{live.url}/tables?sweep={live.extra['pose']}")
    page.wait_for_selector("#tb-table[data-ready='1']")
    assert page.console.errors == []
    flagged = page.locator("td.flagged-cell")
    assert flagged.count() == 1
    assert "flagged" in flagged.inner_text() and "★" not in flagged.inner_text()
    assert f"#{live.extra['flagged']}" in flagged.inner_text()
    best = page.locator("td.best-cell")
    assert best.count() == 1 and best.locator("xpath=../th").inner_text() == "rpg"
    assert "backbone params" in best.inner_text() and "total" in best.inner_text()
    summary = page.inner_text("#tb-summary")
    assert summary.startswith("3 runs: pose: synthetic-pose at 32 px")
    assert "ring" not in summary  # the rings belong to the rpg row, not to the table
    screenshot(page, "tables-flagged")
    assert page.console.errors == []


def test_a_sweep_of_rpg_and_plain_runs_has_no_table_button(page: Any, live: LiveServer) -> None:
    page.goto(live.url + "/sweeps")
    demo = page.wait_for_selector(f"#sweeps tr[data-id='{live.extra['demo']}']")
    pose = page.wait_for_selector(f"#sweeps tr[data-id='{live.extra['pose']}']")
    assert demo.query_selector("a[href^='/tables']") is None
    assert demo.query_selector("a[href^='/power-law']") is not None
    assert pose.query_selector(f"a[href='/tables?sweep={live.extra['pose']}']") is not None
    assert page.console.errors == []
