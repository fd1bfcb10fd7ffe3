"""The power-law page with runs of three methods (issue 24), in a real browser: one series per
method in the figure's legend, the budget table under the fits with the best of each budget
marked, and the model file's bytes as a second x axis."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from api import crud
from rpg_core.spec import parse_spec

from .conftest import LiveServer, page_in_context, screenshot, start_server, stop_server

WAIT_MS = 15_000
# method -> budget -> the seeds' best_val_acc (2000: rpg best; 8000: width best)
ACC = {
    "rpg": {2000: [0.60, 0.62], 8000: [0.70, 0.72]},
    "hashed": {2000: [0.55, 0.58], 8000: [0.69, 0.73]},
    "width": {2000: [0.50, 0.52], 8000: [0.74, 0.76]},
}


def _spec(method: str, budget: int, seed: int) -> dict[str, Any]:
    data = {
        "name": f"{method}-{budget}-s{seed}",
        "model": {"arch": "resnet18", "width": 0.125},
        "method": {"name": method, "budget": budget},
        "data": {"dataset": "digits"},
        "train": {"epochs": 2, "batch_size": 32, "seed": seed},
    }
    return parse_spec(data).model_dump(mode="json")


def _seed(live: LiveServer) -> None:
    with live.session() as s:
        for method, budgets in ACC.items():
            for budget, accs in budgets.items():
                for seed, acc in enumerate(accs):
                    exp_id = crud.create_experiment(s, _spec(method, budget, seed))
                    s.commit()
                    lease = crud.claim_experiment(s, exp_id, worker="w:1")
                    assert lease is not None
                    files = [crud.FileRecord("model", f"{exp_id}/model.rpg", "0" * 64, 40 * budget)]
                    result = {"best_val_acc": acc, "val_acc": acc, "backbone_params": budget}
                    assert crud.finish_experiment(s, exp_id, lease.token, result, files)


@pytest.fixture(scope="module")
def live(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveServer]:
    server = start_server(tmp_path_factory.mktemp("ui-methods"), _seed)
    yield server
    stop_server(server)


@pytest.fixture
def page(browser: Any, live: LiveServer) -> Iterator[Any]:
    yield from page_in_context(browser, 1280, 1400, WAIT_MS)


def test_one_series_per_method_and_the_budget_table(page: Any, live: LiveServer) -> None:
    page.goto(f"{live.url}/power-law")
    page.wait_for_selector("#pl-graph[data-ready='1']")
    legend = page.eval_on_selector_all(
        "#pl-graph .legendtext", "els => els.map((e) => e.textContent)"
    )
    starts = sorted(t.split(" · ")[0] for t in legend)
    assert starts == ["hashed", "rpg", "width"], legend
    assert not any("plain baseline" in t for t in legend)  # width is a method, not a baseline
    # the fits table names the method
    methods = page.locator("#pl-table td[data-method]").all_inner_texts()
    assert sorted(methods) == ["hashed", "rpg", "width"]
    # the budget table: rows by budget, columns by method, the best of each row marked
    page.wait_for_selector("#pl-budget:not([hidden])")
    heads = page.locator("#pl-budget thead th").all_inner_texts()
    assert heads == ["Budget", "rpg", "width", "hashed"]
    best = {
        row.get_attribute("data-budget"): row.locator("td[data-best='1']").get_attribute(
            "data-method"
        )
        for row in page.locator("#pl-budget tbody tr").all()
    }
    assert best == {"2000": "rpg", "8000": "width"}
    cell = page.locator("#pl-budget tr[data-budget='8000'] td[data-method='width']").inner_text()
    assert "★" in cell and "75.0%" in cell and "+4.0 pts" in cell and "apart" in cell
    assert "12 runs of 3 methods" in page.inner_text("#pl-budget-summary")
    screenshot(page, "power-law-methods")
    assert page.console.errors == []


def test_the_bytes_axis(page: Any, live: LiveServer) -> None:
    page.goto(f"{live.url}/power-law?x=bytes")
    page.wait_for_selector("#pl-graph[data-ready='1']")
    assert page.locator("select[name='x']").input_value() == "bytes"
    title = page.eval_on_selector("#pl-graph .g-xtitle", "e => e.textContent")
    assert "model file bytes" in title
    assert page.console.errors == []


def test_methods_never_share_a_colour_and_width_is_no_baseline() -> None:
    from frontend.figures import _series_slot, is_plain

    def series(method: str, key: str) -> dict[str, Any]:
        scope = "plain" if method == "width" else "global"
        return {"method": method, "conditions": {"method.name": method}, "conditions_key": key,
                "scope": scope, "arch": "resnet18", "dataset": "digits"}  # fmt: skip

    for key in ("a", "b", "c", "d"):
        slots = {
            _series_slot(series(m, key + m)) for m in ("rpg", "width", "hashed", "prune-global")
        }
        assert len({s % 4 for s in slots}) == 4
    assert not is_plain(series("width", "k"))
    assert is_plain({"scope": "plain", "conditions": {"rpg": None}})  # a plain baseline
