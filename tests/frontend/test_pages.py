"""The dashboard in a real browser (Debian chromium via Playwright) against a live server.

The worker package is not used here: the tests play the worker's part through api.crud's
worker protocol (claim, report_progress, record_metrics, finish), as a worker would.
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from unittest.mock import ANY

import pytest
from sqlalchemy.orm import Session

from api import crud
from api.models import StoredFile
from api.status import page_data
from rpg_core.format import load_compact, save_compact
from rpg_core.models import create_model, model_spec_of

from .conftest import ConsoleLog, LiveServer, screenshot, spec, start_server, stop_server

WAIT_MS = 15_000


def _hist(peak: float) -> dict[str, Any]:
    edges = [i / 20 for i in range(21)]
    weights = [
        math.exp(-(((a + b) / 2 - peak) ** 2) / 0.02)
        for a, b in zip(edges[:-1], edges[1:], strict=True)
    ]
    total = sum(weights)
    return {"bin_edges": edges, "fractions": [w / total for w in weights], "layer": "layer3"}


def _finish(s: Session, exp_id: int, acc: float, params: int, **extra: Any) -> None:
    lease = crud.claim_experiment(s, exp_id, worker="worker-a:101")
    assert lease is not None
    for epoch in (1, 2):
        crud.record_metrics(
            s, exp_id, lease.token, epoch,
            {"train_loss": 1.5 / epoch, "val_loss": 1.7 / epoch,
             "train_acc": acc - 0.1 / epoch + 0.03, "val_acc": acc - 0.1 / epoch},
        )  # fmt: skip
        crud.report_progress(s, exp_id, lease.token, epoch / 2, epoch)
    files = extra.pop("files", [])
    result = {"best_val_acc": acc, "val_acc": acc, "train_acc": acc + 0.03,
              "backbone_params": params, "total_params": params + 5000, "train_time_s": 42.0,
              **extra}  # fmt: skip
    assert crud.finish_experiment(s, exp_id, lease.token, result, files)


def _acc(params: int, a: float = 0.9, b: float = 0.25) -> float:
    return 1.0 - a * params ** (-b)


def _seed(live: LiveServer) -> None:
    series: dict[str, int] = {}
    with live.session() as s:
        laws = {"resnet18": (1000, 2000, 4000, 8000), "resnet34": (1000, 4000, 16000)}
        for arch, rings in laws.items():
            for ring in rings:
                exp_id = crud.create_experiment(s, spec(f"{arch}-g{ring}", arch, ring))
                s.commit()
                acc = _acc(ring) if arch == "resnet18" else _acc(ring, 0.6, 0.15)
                _finish(s, exp_id, acc, ring, similarity=_hist(0.3))
                series[f"{arch} · global · digits"] = series.get(f"{arch} · global · digits", 0) + 1
                live.extra.setdefault("ids", {})[f"{arch}-{ring}"] = exp_id
        plain = crud.create_experiment(s, spec("resnet18-plain", ring=None))
        s.commit()
        _finish(s, plain, 0.97, 11_000, similarity=_hist(0.6))
        series["resnet18 · plain · digits"] = 1
        live.extra["series"] = series
        live.extra["plain"] = plain
        _seed_model(live, s)
        _seed_states(live, s)
        _seed_sweep(live, s)


def _seed_model(live: LiveServer, s: Session) -> None:
    exp_id = live.extra["ids"]["resnet18-1000"]
    exp = crud.get_experiment(s, exp_id)
    assert exp is not None
    rel = crud.artifact_relpath(exp_id)
    path = live.settings.artifact_dir / rel
    path.parent.mkdir(parents=True, exist_ok=True)
    save_compact(create_model(exp.spec, num_classes=10, in_channels=1), path)
    record = crud.file_record(live.settings.artifact_dir, rel)
    lease = crud.claim_experiment(s, exp_id, worker="w")  # not claimable: already finished
    assert lease is None
    s.add(StoredFile(experiment_id=exp_id, kind="model", path=rel, sha256=record.sha256,
                     size=record.size))  # fmt: skip
    s.commit()
    live.extra["model_run"] = exp_id


def _seed_states(live: LiveServer, s: Session) -> None:
    failed = crud.create_experiment(s, spec("broken-run", ring=500))
    running = crud.create_experiment(s, spec("running-run", ring=3000))
    queued = crud.create_experiment(s, spec("queued-run", ring=700))
    s.commit()
    lease = crud.claim_experiment(s, failed, worker="worker-b:7")
    assert lease is not None
    crud.fail_experiment(s, failed, lease.token, "RPGTrainingError: loss became NaN at epoch 1")
    lease = crud.claim_experiment(s, running, worker="worker-a:101")
    assert lease is not None
    crud.record_metrics(s, running, lease.token, 1, {"train_loss": 2.0, "val_acc": 0.3})
    crud.report_progress(s, running, lease.token, 0.4, 1)
    live.extra.update(failed=failed, running=running, queued=queued)


def _seed_sweep(live: LiveServer, s: Session) -> None:
    grid = [(p, r) for p in (True, False) for r in (True, False)]
    specs = [
        {**spec(f"abl-p{int(p)}-r{int(r)}", ring=2000, permute=p, reflect=r),
         "data": {"dataset": "synthetic"}}
        for p, r in grid
    ]  # fmt: skip
    sweep_id, ids = crud.create_sweep(
        s, "ablation", {"grid": {"rpg.permute": [True, False]}}, specs
    )
    s.commit()
    accs = {(True, True): 0.76, (True, False): 0.75, (False, True): 0.71, (False, False): 0.70}
    for i, ((p, r), exp_id) in enumerate(zip(grid, ids, strict=True)):
        _finish(s, exp_id, accs[(p, r)], 2000, inference_ms_per_image=0.1 * (i + 1))
    live.extra.update(sweep=sweep_id)
    # permutation and reflection are conditions: each setting is a series of its own
    for p, r in grid:
        name = f"permutation {'on' if p else 'off'}, reflection {'on' if r else 'off'}"
        live.extra["series"][f"resnet18 · global · synthetic · {name}"] = 1


@pytest.fixture(scope="module")
def live(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveServer]:
    server = start_server(tmp_path_factory.mktemp("ui"), _seed)
    yield server
    stop_server(server)


@pytest.fixture(scope="module")
def context(browser: Any, live: LiveServer) -> Iterator[Any]:
    ctx = browser.new_context(viewport={"width": 1440, "height": 900}, accept_downloads=True)
    ctx.set_default_timeout(WAIT_MS)
    yield ctx
    ctx.close()


@pytest.fixture
def page(context: Any) -> Iterator[Any]:
    p = context.new_page()
    p.console = ConsoleLog(p)
    yield p
    p.close()


@pytest.fixture(scope="module")
def token(live: LiveServer) -> str:
    with live.session() as s:
        return crud.create_token(s, "browser")


def _save_token(page: Any, token: str) -> None:
    page.fill("#token-input", token)
    page.click("#token-form button[type=submit]")
    page.wait_for_selector("#token-state:has-text('saved')")


# ----------------------------------------------------------------------------- runs page


def test_runs_page_lists_seeded_runs_with_states(page: Any, live: LiveServer) -> None:
    page.goto(live.url + "/")
    page.wait_for_selector("#runs-body[data-loaded='1']")
    rows = page.locator("#runs-body tr[data-id]")
    assert rows.count() == 15  # 7 RPG power-law runs, 1 plain, 3 states, 4 ablation runs
    failed = page.locator(f"tr[data-id='{live.extra['failed']}']")
    assert "failed" in failed.locator(".c-status").inner_text()
    assert "loss became NaN" in (failed.get_attribute("title") or "")
    assert failed.locator("button[data-action=retry]").count() == 1
    running = page.locator(f"tr[data-id='{live.extra['running']}']")
    assert running.locator("progress").get_attribute("value") == "0.4"
    assert "worker-a:101" in running.inner_text()
    model_row = page.locator(f"tr[data-id='{live.extra['model_run']}']")
    assert model_row.locator("a[data-action=download]").count() == 1
    assert "15" in page.inner_text("#counts")
    screenshot(page, "runs")
    page.set_viewport_size({"width": 3840, "height": 2160})
    screenshot(page, "runs-4k")
    assert page.console.errors == []


def test_the_page_reads_the_served_statuses(page: Any, live: LiveServer) -> None:
    """common.js takes the job statuses from the page (api.status), not from a copy."""
    page.goto(live.url + "/")
    page.wait_for_selector("#runs-body[data-loaded='1']")
    seen = page.evaluate(
        """async () => { const m = await import('/static/js/common.js');
        return {statuses: m.STATUSES, active: [...m.ACTIVE], finished: [...m.FINISHED],
                cancellable: [...m.CANCELLABLE]}; }"""
    )
    assert seen == page_data()
    options = page.locator("#filters select[name=status] option").all_inner_texts()
    assert options == ["any", *page_data()["statuses"]]
    for key, cancels in (("queued", 1), ("running", 1), ("failed", 0)):
        row = page.locator(f"tr[data-id='{live.extra[key]}']")
        assert row.locator("button[data-action=cancel]").count() == cancels, key
    assert page.console.errors == []


def test_runs_filter_sort_and_pages(page: Any, live: LiveServer) -> None:
    page.goto(live.url + "/?limit=25&status=succeeded&sort=-best_val_acc")
    page.wait_for_selector("#runs-body[data-loaded='1']")
    accs = page.locator("#runs-body tr[data-id] .c-acc").all_inner_texts()
    assert len(accs) == 12
    values = [float(a.rstrip("%")) for a in accs]
    assert values == sorted(values, reverse=True)
    page.select_option("#filters select[name=limit]", "25")
    page.fill("#filters input[name=sweep]", str(live.extra["sweep"]))
    page.click("#filters button[type=submit]")
    page.wait_for_function("document.querySelectorAll('#runs-body tr[data-id]').length === 4")
    page.fill("#filters input[name=sweep]", "")
    page.select_option("#filters select[name=status]", "")
    page.select_option("#filters select[name=sort]", "-id")
    page.evaluate("document.querySelector('#filters select[name=limit]').add(new Option('5', '5'))")
    page.select_option("#filters select[name=limit]", "5")
    page.click("#filters button[type=submit]")
    page.wait_for_function("document.querySelectorAll('#runs-body tr[data-id]').length === 5")
    first = page.locator("#runs-body tr[data-id]").first.get_attribute("data-id")
    page.click("#next")
    page.wait_for_function(
        f"document.querySelector('#runs-body tr[data-id]').dataset.id !== '{first}'"
    )
    second = [int(x) for x in page.locator("#runs-body tr[data-id]").evaluate_all(
        "rows => rows.map(r => r.dataset.id)")]  # fmt: skip
    assert max(second) < int(first or 0)
    page.click("#prev")
    page.wait_for_function(
        f"document.querySelector('#runs-body tr[data-id]').dataset.id === '{first}'"
    )
    assert page.console.errors == []


def test_submit_shows_field_errors_and_needs_token(page: Any, live: LiveServer, token: str) -> None:
    page.goto(live.url + "/")
    page.wait_for_selector("#runs-body[data-loaded='1']")
    page.evaluate("localStorage.clear()")
    page.click("#form-simple button[type=submit]")
    page.wait_for_selector("#form-simple .result:has-text('token')")
    _save_token(page, token)
    page.fill("#form-simple input[name=ring_size]", "-5")
    page.click("#form-simple button[type=submit]")
    err = page.wait_for_selector(".field-error[data-for='rpg.ring_size']")
    assert err.inner_text()
    assert page.get_attribute("#form-simple input[name=ring_size]", "aria-invalid") == "true"
    page.click("#tab-text")
    page.fill("#spec-text", "name: [unclosed")
    page.click("#form-text button[type=submit]")
    page.wait_for_selector("#form-text .field-error[data-for='spec']")
    screenshot(page, "runs-form-errors")
    # chromium logs the 401 and the 422 answers as failed requests; nothing else may appear
    assert all("401" in e or "422" in e for e in page.console.errors), page.console.errors


def test_submitted_run_appears_and_progress_moves(page: Any, live: LiveServer, token: str) -> None:
    page.goto(live.url + "/")
    page.wait_for_selector("#runs-body[data-loaded='1']")
    _save_token(page, token)
    page.fill("#form-simple input[name=name]", "from-the-page")
    page.fill("#form-simple input[name=ring_size]", "1500")
    page.click("#form-simple button[type=submit]")
    page.wait_for_selector("#form-simple .result:has-text('Queued run')")
    row = page.wait_for_selector("#runs-body tr:has-text('from-the-page')")
    exp_id = int(row.get_attribute("data-id") or 0)
    bar = f"tr[data-id='{exp_id}'] progress"
    assert page.get_attribute(bar, "value") == "0"
    with live.session() as s:  # the worker's part
        lease = crud.claim_experiment(s, exp_id, worker="worker-c:9")
        assert lease is not None
        crud.report_progress(s, exp_id, lease.token, 0.25, 1)
        page.wait_for_function(f'document.querySelector("{bar}").value === 0.25')
        crud.report_progress(s, exp_id, lease.token, 0.75, 2)
        page.wait_for_function(f'document.querySelector("{bar}").value === 0.75')
        assert "running" in page.inner_text(f"tr[data-id='{exp_id}'] .c-status")
        crud.fail_experiment(s, exp_id, lease.token, "stopped by the test")
    page.wait_for_selector(f"tr[data-id='{exp_id}'] button[data-action=retry]")
    page.click(f"tr[data-id='{exp_id}'] button[data-action=retry]")
    page.wait_for_selector(f"tr[data-id='{exp_id}'] .c-status:has-text('queued')")
    page.click(f"tr[data-id='{exp_id}'] button[data-action=cancel]")
    page.wait_for_selector(f"tr[data-id='{exp_id}'] .c-status:has-text('cancelled')")
    assert page.console.errors == []


def test_download_gives_a_loadable_rpg(page: Any, live: LiveServer, tmp_path: Path) -> None:
    exp_id = live.extra["model_run"]
    page.goto(f"{live.url}/runs/{exp_id}")
    page.wait_for_selector("#run-download:not([hidden])")
    with page.expect_download() as info:
        page.click("#run-download")
    target = tmp_path / "downloaded.rpg"
    info.value.save_as(target)
    model = load_compact(target)
    assert sum(p.numel() for p in model.parameters()) > 0
    assert model_spec_of(model) == {"model": ANY, "rpg": ANY}
    assert (model_spec_of(model) or {})["rpg"]["ring_size"] == 1000


def test_api_down_shows_an_error_state(page: Any, live: LiveServer) -> None:
    page.route("**/ui/api/runs*", lambda route: route.abort())
    page.goto(live.url + "/")
    page.wait_for_selector("#banner:has-text('unreachable')")
    page.wait_for_selector("#runs-body td.state.error")
    screenshot(page, "runs-api-down")
    page.unroute("**/ui/api/runs*")
    page.click("#banner button")
    page.wait_for_selector("#runs-body tr[data-id]")


# ----------------------------------------------------------------------------- other pages


def _graph_data(page: Any, selector: str) -> list[dict[str, Any]]:
    data: list[dict[str, Any]] = page.evaluate(
        f"""() => document.querySelector('{selector}').data.map(t => ({{
            name: t.name, mode: t.mode, n: t.x.length, meta: t.meta || null,
            customdata: t.customdata || null}}))"""
    )
    return data


def test_power_law_chart_points_fits_and_click(page: Any, live: LiveServer) -> None:
    page.goto(live.url + "/power-law?target=0.9")
    page.wait_for_selector("#pl-graph[data-ready='1']")
    traces = _graph_data(page, "#pl-graph")
    points = {
        t["name"].split(" (")[0].split(":")[0]: t for t in traces if t["meta"]["role"] == "points"
    }
    assert {k: t["n"] for k, t in points.items()} == live.extra["series"]
    fits = [t for t in traces if t["meta"]["role"] == "fit"]
    assert len(fits) == 2  # the two RPG series with >= 3 sizes; no line through the baseline
    assert all(t["mode"] == "lines" and t["n"] > 10 for t in fits)
    legend = points["resnet18 · global · digits"]["name"]
    assert "b=0.2" in legend and "R²=" in legend and "[" in legend
    xaxis = page.evaluate("document.querySelector('#pl-graph').layout.xaxis.type")
    assert xaxis == "log"
    rows = page.locator("#pl-table tbody tr")
    assert rows.count() == 7
    assert "k" in rows.filter(has_text="resnet18 · global · digits").inner_text()
    screenshot(page, "power-law")
    plain_id = live.extra["plain"]
    page.evaluate(
        f"document.querySelector('#pl-graph').emit('plotly_click', {{points: [{{customdata: {plain_id}}}]}})"
    )
    page.wait_for_url(f"**/runs/{plain_id}")
    assert page.console.errors == []


def test_run_page_curves_params_similarity(page: Any, live: LiveServer) -> None:
    exp_id = live.extra["model_run"]
    page.goto(f"{live.url}/runs/{exp_id}")
    page.wait_for_selector("#curves-graph[data-ready='1']")
    curves = _graph_data(page, "#curves-graph")
    assert sorted(t["name"] for t in curves) == ["train_acc", "train_loss", "val_acc", "val_loss"]
    assert all(t["n"] == 2 for t in curves)
    page.wait_for_selector("#params-table:not([hidden])")
    assert "ring" in page.inner_text("#params-table")
    assert "smaller" in page.inner_text("#size-bars")
    page.wait_for_selector("#sim-graph .main-svg")
    assert '"ring_size": 1000' in page.inner_text("#run-spec")
    assert page.is_visible("#run-download")
    assert not page.is_visible("#run-cancel") and not page.is_visible("#run-retry")
    screenshot(page, "run")
    assert page.console.errors == []


def test_run_page_follows_a_live_run_and_shows_failures(page: Any, live: LiveServer) -> None:
    with live.session() as s:
        exp_id = crud.create_experiment(s, spec("live-run", ring=900))
        s.commit()
        lease = crud.claim_experiment(s, exp_id, worker="worker-d:1")
        assert lease is not None
    page.goto(f"{live.url}/runs/{exp_id}")
    page.wait_for_selector("#run-head:not([hidden])")
    with live.session() as s:
        crud.record_metrics(s, exp_id, lease.token, 1, {"train_loss": 2.0, "val_loss": 2.2})
        crud.report_progress(s, exp_id, lease.token, 0.5, 1)
    page.wait_for_function("document.querySelector('#run-progress').value === 0.5")
    page.wait_for_selector("#curves-graph[data-ready='1']")
    with live.session() as s:
        crud.fail_experiment(s, exp_id, lease.token, "RPGDataError: dataset went away")
    page.wait_for_selector("#run-error:has-text('dataset went away')")
    assert page.is_visible("#run-retry") and not page.is_visible("#run-cancel")
    assert not page.is_visible("#run-download")
    screenshot(page, "run-failed")
    assert page.console.errors == []


def test_run_page_shows_a_resume_note_as_information_not_an_error(
    page: Any, live: LiveServer
) -> None:
    from api.crud import lifecycle

    note_text = (
        "the service stopped while it was training; it resumes from its checkpoint after epoch 2"
    )
    with live.session() as s:
        exp_id = crud.create_experiment(s, spec("stopped-run", ring=800))
        s.commit()
        assert crud.claim_experiment(s, exp_id, worker="gone-host:4") is not None
        interrupted = lifecycle.requeue_interrupted(
            s, lambda owner: owner == "gone-host:4", error=lambda _id: note_text
        )
        assert exp_id in interrupted
    page.goto(f"{live.url}/runs/{exp_id}")
    note = page.wait_for_selector("#run-note:has-text('resumes from its checkpoint after epoch 2')")
    assert note.inner_text().startswith("Note: the service stopped while it was training")
    assert note.get_attribute("class") == "note-box" and note.get_attribute("role") == "status"
    assert not page.is_visible("#run-error")
    assert "Error" not in page.inner_text("#run-head")
    assert page.console.errors == []


def test_similarity_page_overlays_selected_runs(page: Any, live: LiveServer) -> None:
    page.goto(live.url + "/")
    page.wait_for_selector("#runs-body[data-loaded='1']")
    ids = [live.extra["model_run"], live.extra["plain"], live.extra["queued"]]
    for i in ids:
        page.check(f"input[data-select='{i}']")
    page.click("#compare")
    page.wait_for_selector("#sim-graph[data-ready='1']")
    traces = _graph_data(page, "#sim-graph")
    assert len(traces) == 2 and all(t["n"] == 20 for t in traces)
    assert str(live.extra["queued"]) in page.inner_text("#sim-state")  # no histogram: listed
    screenshot(page, "similarity")
    assert page.console.errors == []


def test_sweeps_page_progress_and_ablation_bars(page: Any, live: LiveServer) -> None:
    page.goto(live.url + "/sweeps")
    row = page.wait_for_selector(f"#sweeps tr[data-id='{live.extra['sweep']}']")
    assert "4/4" in row.inner_text()
    page.click(f"button[data-ablation='{live.extra['sweep']}']")
    page.wait_for_selector("#ablation-graph[data-ready='1']")
    bars = page.evaluate("document.querySelector('#ablation-graph').data[0]")
    assert bars["x"] == [
        "permutation + reflection",
        "permutation only",
        "reflection only",
        "neither",
    ]
    assert bars["y"] == sorted(bars["y"], reverse=True)
    page.click(f"button[data-speed='{live.extra['sweep']}']")
    page.wait_for_selector("#speed-graph[data-ready='1']")
    speed = page.evaluate("document.querySelector('#speed-graph').data")
    assert [t["meta"]["group"] for t in speed] == ["rpg"]  # ring runs, no recurrence
    assert sorted(speed[0]["x"]) == pytest.approx([0.1, 0.2, 0.3, 0.4])
    screenshot(page, "sweeps")
    assert page.console.errors == []


def test_unknown_run_shows_not_found(page: Any, live: LiveServer) -> None:
    page.goto(f"{live.url}/runs/999999")
    page.wait_for_selector("#run-state.error:has-text('does not exist')")


def test_flagged_run_has_a_badge_and_stays_out_of_the_fit(page: Any, live: LiveServer) -> None:
    """Runs the guard rails flagged: a badge in the runs table and on the run's page, a hollow
    marker outside the fit on the power-law page, back in the fit when asked. (Last in the
    module: it adds a run the earlier tests do not count.)"""
    message = "validation accuracy 10.0% is at chance (10.0% for the most frequent class)"
    with live.session() as s:
        exp_id = crud.create_experiment(s, spec("chance-run", ring=16000))
        s.commit()
        _finish(s, exp_id, 0.1, 16000, flags="near-chance",
                health=[{"code": "near-chance", "message": message}])  # fmt: skip
    page.goto(live.url + "/")
    page.wait_for_selector("#runs-body[data-loaded='1']")
    badge = page.locator(f"tr[data-id='{exp_id}'] .c-status .flag")
    assert badge.inner_text().strip() == "⚠ near-chance"
    others = page.locator(f"tr[data-id='{live.extra['plain']}'] .c-status .flag")
    assert others.count() == 0
    page.goto(f"{live.url}/runs/{exp_id}")
    page.wait_for_selector("#run-flags:not([hidden])")
    assert message in page.inner_text("#run-flags")
    assert page.locator("#run-facts .flag").count() == 1
    screenshot(page, "run-flagged")
    page.goto(live.url + "/power-law?target=0.9")
    page.wait_for_selector("#pl-graph[data-ready='1']")
    excluded = [t for t in _graph_data(page, "#pl-graph") if t["meta"]["role"] == "excluded"]
    assert len(excluded) == 1 and excluded[0]["customdata"] == [exp_id]
    assert "1 flagged run" in page.inner_text("#pl-state")
    page.check("input[name=include_flagged]")
    page.click("#pl-controls button[type=submit]")
    page.wait_for_function(
        "() => !document.querySelector('#pl-graph').data.some(t => (t.meta || {}).role === 'excluded')"
    )
    assert "include_flagged=true" in page.url
    assert page.console.errors == []
