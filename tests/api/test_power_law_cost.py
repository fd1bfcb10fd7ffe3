"""The power law's cost: a bounded number of statements whatever the number of runs, and its
answer cached until the succeeded runs change (a run that succeeds is in the next answer)."""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from contextlib import contextmanager

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import Engine, event
from sqlalchemy.orm import Session

from api import analysis
from api.crud import ListFilter
from api.deps import PowerLawQuery

from .conftest import run_to_end, submit

pytestmark = pytest.mark.isolated  # throwaway databases, no Redis or server process


@contextmanager
def statements(engine: Engine) -> Iterator[list[str]]:
    seen: list[str] = []

    def count(_conn: object, _cursor: object, statement: str, *_: object) -> None:
        seen.append(statement)

    event.listen(engine, "before_cursor_execute", count)
    try:
        yield seen
    finally:
        event.remove(engine, "before_cursor_execute", count)


def _succeed(client: TestClient, auth: dict[str, str], session: Session, n: int) -> list[int]:
    ids = []
    for k in range(n):
        ring = 1000 * 2 ** (k % 5)
        exp_id = submit(client, auth, name=f"pl-{k}", rpg={"ring_size": ring, "scope": "global"})
        acc = 0.5 + 0.05 * (k % 5)
        run_to_end(session, exp_id, {"best_val_acc": acc, "val_acc": acc, "backbone_params": ring})
        ids.append(exp_id)
    return ids


def _points(body: dict[str, object]) -> int:
    series = body["series"]
    assert isinstance(series, list)
    return sum(len(s["points"]) + len(s["excluded"]) for s in series)


def test_statements_bounded_and_answer_cached_until_a_run_succeeds(
    client: TestClient, auth: dict[str, str], session: Session, engine: Engine
) -> None:
    analysis.ANSWERS.clear()
    _succeed(client, auth, session, 3)
    with statements(engine) as few:
        small = client.get("/api/analysis/power-law").json()
    _succeed(client, auth, session, 12)
    with statements(engine) as many:
        big = client.get("/api/analysis/power-law").json()
    assert (_points(small), _points(big)) == (3, 15)
    # one query per kind of fact (points, conditions, budgets, version...), never one per run
    assert len(many) == len(few) <= 10, many

    with statements(engine) as again:
        cached = client.get("/api/analysis/power-law")
    assert cached.json() == big
    # the cached answer costs the version lookup only (and the token-free read's session)
    assert 1 <= len(again) <= 3 and all("conditions" not in s for s in again), again
    hits = analysis.ANSWERS.hits

    (new,) = _succeed(client, auth, session, 1)  # the data changed: the answer has the new run
    assert _points(client.get("/api/analysis/power-law").json()) == 16
    assert analysis.ANSWERS.hits == hits
    # the dashboard's figure of the same data reuses the API's analysis (one computation: a
    # hit), its own JSON is cached apart (the second fetch: a hit), and it agrees
    figure = client.get("/ui/figures/power-law").json()
    assert figure["points"] == 16 and analysis.ANSWERS.hits == hits + 1
    assert client.get("/ui/figures/power-law").json() == figure
    assert analysis.ANSWERS.hits == hits + 2
    assert client.delete(f"/api/experiments/{new}", headers=auth).status_code == 204
    assert _points(client.get("/api/analysis/power-law").json()) == 15  # and one deleted


def test_prediction_targets_share_the_analysis(
    client: TestClient, auth: dict[str, str], session: Session
) -> None:
    """Another target is not another analysis: the fits are reused (a cache hit) and the
    answer is what a computation from scratch gives."""
    analysis.ANSWERS.clear()
    _succeed(client, auth, session, 5)
    first = client.get("/api/analysis/power-law", params={"target": 0.6}).json()
    hits = analysis.ANSWERS.hits
    other = client.get("/api/analysis/power-law", params={"target": [0.7, 0.8]})
    assert other.status_code == 200 and analysis.ANSWERS.hits == hits + 1
    query = PowerLawQuery(ListFilter(task="classification"), targets=(0.7, 0.8))
    assert other.json() == analysis.power_law(session, query).out.model_dump(mode="json")
    (fitted,) = [s for s in other.json()["series"] if s["fit"]]
    assert set(fitted["fit"]["params_for"]) == {"0.7", "0.8"}
    assert set(next(s for s in first["series"] if s["fit"])["fit"]["params_for"]) == {"0.6"}


@contextmanager
def executed(engine: Engine) -> Iterator[list[tuple[str, list[object]]]]:
    """Each statement with the values bound to it."""
    seen: list[tuple[str, list[object]]] = []

    def count(
        _conn: object, _cursor: object, statement: str, parameters: object, *_: object
    ) -> None:
        values = parameters.values() if isinstance(parameters, dict) else parameters
        seen.append((statement, list(values) if isinstance(values, Iterable) else []))

    event.listen(engine, "before_cursor_execute", count)
    try:
        yield seen
    finally:
        event.remove(engine, "before_cursor_execute", count)


def test_the_points_are_one_select_of_columns_and_no_statement_grows_with_them(
    client: TestClient, auth: dict[str, str], session: Session, engine: Engine
) -> None:
    """The points and their search trials come in one SELECT of columns (no ORM object per
    run), and no statement carries a value per point (no list of the 10,000 points' ids)."""
    from api.models import Experiment

    loaded: list[object] = []

    def on_load(target: object, _context: object) -> None:
        loaded.append(target)

    event.listen(Experiment, "load", on_load)
    try:
        sizes = []
        for n in (3, 12):
            _succeed(client, auth, session, n)
            analysis.ANSWERS.clear()
            with executed(engine) as seen:
                body = client.get("/api/analysis/power-law").json()
            sizes.append((_points(body), seen))
    finally:
        event.remove(Experiment, "load", on_load)
    (few, small), (many, big) = sizes
    assert (few, many) == (3, 15)
    # the same number of values bound to each statement for 5x the runs
    assert [len(v) for _, v in small] == [len(v) for _, v in big], big
    points = [s for s, _ in big if "best_val_acc" in s and "study_id" in s]
    assert len(points) == 1, big  # the points with their trial columns: one SELECT
    assert not any("trial_number" in s for s, _ in big if s not in points)
    assert loaded == []  # no Experiment built by the ORM for the power law


def test_no_budget_is_read_for_runs_without_a_method_section(
    client: TestClient, auth: dict[str, str], session: Session, engine: Engine
) -> None:
    """Runs without a method section (``"method": None``, shared by every run of their key)
    store no ``method.budget``: the budget table reads none, and pools them as before."""
    analysis.ANSWERS.clear()
    _succeed(client, auth, session, 5)
    with executed(engine) as seen:
        body = client.get("/api/analysis/power-law").json()
    assert seen and not any("method.budget" in s + repr(values) for s, values in seen), seen
    table = body["budget_table"]
    assert table is not None and table["methods"] == ["rpg"] and table["runs"] == 5
    assert sorted(r["budget"] for r in table["rows"]) == sorted(
        {p["params"] for s in body["series"] for p in s["points"]}
    )
