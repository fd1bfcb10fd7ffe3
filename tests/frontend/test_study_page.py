"""The study page of a search sweep (issue 25), in a real browser: the trials over time with the
pruned one marked and the best so far, the trials' table, and the sweeps page's link to it."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from api import crud, search
from rpg_core.spec.sweep import expand_search, parse_sweep

from .conftest import LiveServer, page_in_context, screenshot, start_server, stop_server

WAIT_MS = 15_000
SWEEP = {
    "name": "ui-search",
    "base": {
        "model": {"arch": "resnet18", "width": 0.125},
        "data": {"dataset": "synthetic", "image_size": 8, "num_train": 64, "num_val": 32},
        "train": {"epochs": 3},
    },
    "search": {
        "sampler": "random",
        "n_trials": 3,
        "space": {"train.lr": {"log": [0.003, 0.3]}},
        "pruner": "median",
    },
}


def _seed(live: LiveServer) -> None:
    sweep = parse_sweep(SWEEP)
    assert sweep.search is not None
    plans = expand_search(sweep)
    url = live.settings.database_url
    with live.session() as s:
        names = search.new_optuna_studies(sweep.search, plans, url)
        sweep_id, _ = crud.create_sweep(s, sweep.name, sweep.model_dump(mode="json"), [])
        (study_id,) = search.create_studies(s, sweep_id, sweep.search, plans, names)
        s.commit()
        live.extra["study"] = study_id
        for value, prune in ((0.6, False), (0.4, True), (0.7, False)):
            (exp_id,) = search.drive(s, live.settings, study_id)
            lease = crud.claim_experiment(s, exp_id, worker="w:1")
            assert lease is not None
            result = {"primary_metric": "acc", "primary_value": value, "val_acc": value}
            if prune:
                reporter = search.trial_reporter(s, live.settings, exp_id)
                assert reporter is not None
                reporter.on_epoch_end(1, {"val_acc": value})
                assert crud.prune_experiment(s, exp_id, lease.token, result)
            else:
                assert crud.finish_experiment(s, exp_id, lease.token, result)
        search.drive(s, live.settings, study_id)


@pytest.fixture(scope="module")
def live(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveServer]:
    server = start_server(tmp_path_factory.mktemp("ui-study"), _seed)
    yield server
    stop_server(server)


@pytest.fixture
def page(browser: Any, live: LiveServer) -> Iterator[Any]:
    yield from page_in_context(browser, 1280, 1400, WAIT_MS)


def test_the_study_page_shows_trials_pruned_and_best(page: Any, live: LiveServer) -> None:
    study_id = live.extra["study"]
    page.goto(f"{live.url}/sweeps")
    link = page.locator(f"a[href='/ui/studies/{study_id}']")
    link.wait_for()
    link.click()
    page.wait_for_selector("#study-graph[data-ready='1']")
    assert page.inner_text("#study-title") == f"Study #{study_id} ui-search"
    facts = page.inner_text("#study-facts")
    assert "finished" in facts and "trial 2: 0.7000" in facts and "median" in facts
    rows = page.locator("#trials tbody tr")
    assert rows.count() == 3
    assert page.locator("#trials tbody tr.pruned").count() == 1
    assert "pruned" in page.locator("#trials tbody tr[data-trial='1']").inner_text()
    names = page.eval_on_selector_all(
        "#study-graph .legendtext", "els => els.map(e => e.textContent)"
    )
    assert names == ["complete", "pruned (last evaluation)", "best so far"]
    assert page.locator("#importance-panel").is_visible()  # two complete trials: fANOVA answers
    screenshot(page, "study")
    # long reasons and parameter lists wrap inside their cells instead of widening the table
    styles = page.eval_on_selector_all(
        "#trials tbody td.why, #trials tbody td.params",
        "tds => tds.map(td => getComputedStyle(td).whiteSpace)",
    )
    assert styles and set(styles) == {"normal"}
    assert page.console.errors == []
