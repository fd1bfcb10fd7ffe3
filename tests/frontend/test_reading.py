"""The dashboard as a user reads it (real browser): one duration for a run on both pages, a
negative train-val gap explained, a plain run's file size without a "1.0× smaller", one
"Training curves" heading."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from api import crud
from rpg_core.format import save_compact
from rpg_core.models import create_model

from .conftest import ConsoleLog, LiveServer, spec, start_server, stop_server


def _seed(live: LiveServer) -> None:
    with live.session() as s:
        exp_id = crud.create_experiment(s, spec("plain-run", ring=None))
        s.commit()
        lease = crud.claim_experiment(s, exp_id, worker="worker-a:1")
        assert lease is not None
        for epoch in (1, 2):
            crud.record_metrics(
                s, exp_id, lease.token, epoch,
                {"train_loss": 3.0 / epoch, "val_loss": 1158.0 / epoch,
                 "train_acc": 0.5, "val_acc": 0.6},
            )  # fmt: skip
        rel = crud.artifact_relpath(exp_id)
        path = live.settings.artifact_dir / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        save_compact(create_model({"model": {"arch": "resnet18", "width": 0.125}}), path)
        result = {"best_val_acc": 0.6, "val_acc": 0.6, "train_acc": 0.5, "train_time_s": 4242.0,
                  "backbone_params": 1000, "total_params": 2000}  # fmt: skip
        record = crud.file_record(live.settings.artifact_dir, rel)
        assert crud.finish_experiment(s, exp_id, lease.token, result, [record])
        live.extra["run"] = exp_id


@pytest.fixture(scope="module")
def live(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveServer]:
    srv = start_server(tmp_path_factory.mktemp("reading"), _seed)
    yield srv
    stop_server(srv)


def test_a_run_reads_the_same_on_both_pages(live: LiveServer, browser: Any) -> None:
    page = browser.new_page()
    console = ConsoleLog(page)
    exp_id = live.extra["run"]
    page.goto(f"{live.url}/")
    page.wait_for_selector("#runs-body[data-loaded='1']")
    row = page.locator(f"tr[data-id='{exp_id}']")
    listed = row.locator("td.num").nth(5).inner_text()  # the duration column
    gap_cell = row.locator("td.num").nth(4)
    assert gap_cell.inner_text() == "-10.0%"
    assert "validation accuracy above training accuracy" in (gap_cell.get_attribute("title") or "")
    page.goto(f"{live.url}/runs/{exp_id}")
    page.wait_for_selector("#run-head:not([hidden])")
    facts = page.inner_text("#run-facts")
    duration = facts.split("duration", 1)[1].strip().splitlines()[0]
    assert duration.startswith(listed + " "), (listed, duration)
    assert "(training 1 h 11 min)" in duration
    assert "validation accuracy above training accuracy" in facts
    page.wait_for_selector("#size-bars:not([hidden])")
    size = page.inner_text("#size-bars")
    assert "smaller" not in size and "a plain network" in size
    page.wait_for_selector("#curves-graph[data-ready='1']")
    assert page.inner_text("main").count("Training curves") == 1
    assert page.evaluate("document.querySelector('#curves-graph').layout.yaxis.type") == "log"
    assert console.errors == []
    page.close()
