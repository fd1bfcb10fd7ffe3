"""Power-law series with their fits, and the stored similarity histogram."""

from __future__ import annotations

import pytest
import torch
from fastapi.testclient import TestClient
from sqlalchemy.orm import Session

from rpg_core.analysis import feature_similarity

from .conftest import run_to_end, submit

pytestmark = pytest.mark.isolated  # throwaway databases, no Redis or server process


def _run(
    client: TestClient,
    auth: dict[str, str],
    session: Session,
    params: int,
    acc: float,
    **over: object,
) -> int:
    exp_id = submit(client, auth, **over)
    run_to_end(
        session, exp_id, {"best_val_acc": acc, "val_acc": acc - 0.01, "backbone_params": params}
    )
    return exp_id


def test_series_grouped_with_points(
    client: TestClient, auth: dict[str, str], session: Session
) -> None:
    ids = [
        _run(client, auth, session, p, a)
        for p, a in [(1000, 0.5), (4000, 0.7), (16000, 0.8), (64000, 0.85)]
    ]
    plain = [
        _run(client, auth, session, p, a, rpg=None) for p, a in [(10**6, 0.9), (2 * 10**6, 0.91)]
    ]
    submit(client, auth)  # queued: no result, not a point
    r = client.get("/api/analysis/power-law", params={"target": [0.8]})
    assert r.status_code == 200, r.text
    body = r.json()
    by_scope = {s["scope"]: s for s in body["series"]}
    assert set(by_scope) == {"global", "plain"}
    assert [p["experiment_id"] for p in by_scope["global"]["points"]] == ids
    assert [p["experiment_id"] for p in by_scope["plain"]["points"]] == plain
    assert by_scope["plain"]["fit"] is None  # fewer than 3 points
    assert body["fit_available"] is True
    fit = by_scope["global"]["fit"]
    assert fit["b"] > 0 and 0 <= fit["r2"] <= 1
    assert 4000 < fit["params_for"]["0.8"] < 64000
    only = client.get("/api/analysis/power-law", params={"scope": "plain", "metric": "val_acc"})
    assert [s["scope"] for s in only.json()["series"]] == ["plain"]
    assert only.json()["series"][0]["points"][0]["value"] == pytest.approx(0.89)


def test_fit_failure_is_reported_not_raised(
    client: TestClient, auth: dict[str, str], session: Session
) -> None:
    for p in (100, 200, 300):
        _run(client, auth, session, p, 1.0)  # accuracy 1.0: error 0, no log-log fit
    series = client.get("/api/analysis/power-law").json()["series"]
    assert series[0]["fit"] is None and series[0]["fit_error"]


def test_similarity(client: TestClient, auth: dict[str, str], session: Session) -> None:
    exp_id = submit(client, auth)
    assert client.get(f"/api/experiments/{exp_id}/similarity").status_code == 404
    other = submit(client, auth)
    # the payload the worker stores: rpg_core's histogram, as_dict()
    torch.manual_seed(0)
    conv = torch.nn.Sequential(torch.nn.Conv2d(1, 4, 3))
    hist = feature_similarity(conv, torch.randn(8, 1, 8, 8), layer="0", bins=5).as_dict()
    run_to_end(session, other, {"similarity": hist})
    r = client.get(f"/api/experiments/{other}/similarity")
    assert r.status_code == 200 and r.json()["similarity"] == hist
    stored = r.json()["similarity"]
    assert len(stored["bin_edges"]) == len(stored["fractions"]) + 1 == 6
    assert sum(stored["fractions"]) == pytest.approx(1.0)


def test_flagged_runs_are_left_out_of_the_fit_unless_asked(
    client: TestClient, auth: dict[str, str], session: Session
) -> None:
    good = [_run(client, auth, session, p, a) for p, a in [(1000, 0.5), (4000, 0.7), (16000, 0.8)]]
    chance = submit(client, auth)
    run_to_end(
        session,
        chance,
        {"best_val_acc": 0.1, "val_acc": 0.1, "backbone_params": 64000, "flags": "near-chance"},
    )
    detail = client.get(f"/api/experiments/{chance}", headers=auth).json()
    assert detail["flags"] == ["near-chance"]
    listed = client.get("/api/experiments", headers=auth).json()["items"]
    assert {e["id"]: e["flags"] for e in listed}[chance] == ["near-chance"]
    assert {e["id"]: e["flags"] for e in listed}[good[0]] == []

    (series,) = client.get("/api/analysis/power-law").json()["series"]
    assert [p["experiment_id"] for p in series["points"]] == good
    assert [(p["experiment_id"], p["flags"]) for p in series["excluded"]] == [
        (chance, ["near-chance"])
    ]
    (both,) = client.get("/api/analysis/power-law", params={"include_flagged": "true"}).json()[
        "series"
    ]
    assert [p["experiment_id"] for p in both["points"]] == [*good, chance]
    assert both["excluded"] == []
    # the chance-level point drags the law: the fits differ
    assert both["fit"]["b"] != pytest.approx(series["fit"]["b"], rel=1e-3)
