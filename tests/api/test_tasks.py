"""Pose and multitask runs (issue 13): the task column, the runs filter, GET /api/tasks, the
task-aware power law (metric, fit direction) and the comparison table (paper Tables 4, 5)."""

from __future__ import annotations

from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy.orm import Session

from api import crud
from rpg_core.training.result import ExperimentResult

from .conftest import run_to_end, submit

pytestmark = pytest.mark.isolated  # throwaway databases, no Redis or server process

POSE: dict[str, Any] = {
    "task": "pose",
    "data": {"dataset": "synthetic-pose", "num_train": 64, "num_val": 32, "image_size": 32},
    "model": {"stacks": 2, "sharing": "rpg", "width": 0.25},
    "train": {"epochs": 1, "batch_size": 16},
}
SCENES: dict[str, Any] = {
    "task": "multitask",
    "data": {"dataset": "synthetic-scenes", "num_train": 64, "num_val": 32, "image_size": 32},
    "model": {"stacks": 2, "sharing": "rpg", "width": 0.25},
    "train": {"epochs": 1, "batch_size": 16},
}


def post(client: TestClient, auth: dict[str, str], spec: dict[str, Any], **model: Any) -> int:
    body = {**spec, "model": {**spec["model"], **model}}
    r = client.post("/api/experiments", json=body, headers=auth)
    assert r.status_code == 201, r.text
    exp_id: int = r.json()["id"]
    return exp_id


def pose_run(
    client: TestClient, auth: dict[str, str], session: Session, params: int, pckh: float, **m: Any
) -> int:
    exp_id = post(client, auth, POSE, **m)
    run_to_end(
        session,
        exp_id,
        {
            "task": "pose",
            "metrics": {"pckh": pckh},
            "primary_metric": "pckh",
            "primary_value": pckh,
            "backbone_params": params,
            "total_params": params + 10,
        },
    )
    return exp_id


def scenes_run(
    client: TestClient,
    auth: dict[str, str],
    session: Session,
    params: int,
    depth: float,
    normal: float,
    **m: Any,
) -> int:
    exp_id = post(client, auth, SCENES, **m)
    run_to_end(
        session,
        exp_id,
        {
            "task": "multitask",
            "metrics": {"depth_rmse": depth, "normal_rmse": normal},
            "primary_metric": "depth_rmse",
            "primary_value": depth,
            "backbone_params": params,
            "total_params": params,
        },
    )
    return exp_id


def test_task_is_set_at_submission_and_filters_the_list(
    client: TestClient, auth: dict[str, str], session: Session
) -> None:
    cls = submit(client, auth)
    pose = post(client, auth, POSE)
    assert crud.get_experiment(session, pose).task == "pose"  # type: ignore[union-attr]
    assert crud.get_experiment(session, cls).task == "classification"  # type: ignore[union-attr]

    def ids(q: dict[str, str]) -> list[int]:
        items = client.get("/api/experiments", params=q, headers=auth).json()["items"]
        return [e["id"] for e in items]

    assert ids({"task": "pose"}) == [pose]
    assert ids({"task": "classification"}) == [cls]
    assert ids({"task": "multitask"}) == []
    r = client.get("/api/experiments", params={"task": "segmentation"}, headers=auth)
    assert r.status_code == 422 and r.json()["detail"][0]["field"] == "task"
    assert "pose" in r.json()["detail"][0]["message"]
    assert client.get("/ui/api/runs", params={"task": "pose"}).json()["items"][0]["id"] == pose


def test_a_stacked_runs_scope_says_where_its_rings_are(
    client: TestClient, auth: dict[str, str], session: Session
) -> None:
    """sharing rpg (the default) has rings without an rpg section: one global ring for the
    hourglass, a ring per block for encdec; the other sharings are plain."""

    def scope(spec: dict[str, Any], **model: Any) -> str | None:
        exp = crud.get_experiment(session, post(client, auth, spec, **model))
        return exp.scope if exp is not None else None

    assert scope(POSE) == "global" and scope(POSE, sharing="full") == "plain"
    assert scope(SCENES) == "block" and scope(SCENES, sharing="reuse") == "plain"


def test_result_sets_the_task_columns(
    client: TestClient, auth: dict[str, str], session: Session
) -> None:
    pose = pose_run(client, auth, session, 1000, 0.6)
    exp = crud.get_experiment(session, pose)
    assert exp is not None
    session.refresh(exp)
    assert (exp.task, exp.primary_metric, exp.primary_value) == ("pose", "pckh", 0.6)
    detail = client.get(f"/api/experiments/{pose}", headers=auth).json()
    assert detail["result"]["metrics"] == {"pckh": 0.6}
    # a classification result from a worker older than tasks: primary acc = final val acc
    old = submit(client, auth)
    run_to_end(session, old, {"val_acc": 0.8, "best_val_acc": 0.85})
    row = crud.get_experiment(session, old)
    assert row is not None
    session.refresh(row)
    assert (row.task, row.primary_metric, row.primary_value) == ("classification", "acc", 0.8)
    # a result that does not name its task leaves the row's alone
    other = post(client, auth, POSE)
    run_to_end(session, other, ExperimentResult.model_validate({"primary_value": 0.3}))
    row = crud.get_experiment(session, other)
    assert row is not None
    session.refresh(row)
    assert row.task == "pose"


def test_tasks_endpoint(client: TestClient) -> None:
    r = client.get("/api/tasks")
    assert r.status_code == 200
    by_name = {t["name"]: t for t in r.json()}
    assert list(by_name) == ["classification", "pose", "multitask"]
    assert by_name["pose"]["sharing"] == ["none", "full", "rpg"]
    assert by_name["multitask"]["primary"] == ["depth_rmse", "normal_rmse"]
    depth = by_name["multitask"]["metrics"][0]
    assert depth["key"] == "depth_rmse" and depth["higher_is_better"] is False
    assert depth["direction"] == "lower"


def test_methods_endpoint(client: TestClient) -> None:
    """GET /api/methods (issue 24): the methods registry, in order, with references."""
    r = client.get("/api/methods")
    assert r.status_code == 200, r.text
    by_name = {m["name"]: m for m in r.json()}
    assert list(by_name) == ["rpg", "width", "hashed", "prune-global", "prune-filters"]
    assert "Chen et al." in by_name["hashed"]["reference"]
    assert by_name["prune-global"]["trains_dense_first"] is True
    assert by_name["width"]["min_budget"] == 1 and "bisection" in by_name["width"]["budget"]


def test_a_method_spec_is_accepted_and_a_bad_one_names_the_field(
    client: TestClient, auth: dict[str, str]
) -> None:
    body = {
        "model": {"arch": "resnet18", "width": 0.125},
        "data": {"dataset": "synthetic", "num_train": 64, "num_val": 32, "image_size": 16},
        "train": {"epochs": 1, "batch_size": 16},
        "method": {"name": "hashed", "budget": 2000},
    }
    r = client.post("/api/experiments", json=body, headers=auth)
    assert r.status_code == 201, r.text
    exp = client.get(f"/api/experiments/{r.json()['id']}").json()
    assert exp["spec"]["method"]["name"] == "hashed" and exp["spec"]["rpg"]["generator"] == 3
    bad = {**body, "method": {"name": "hashed", "budget": -1}}
    r = client.post("/api/experiments", json=bad, headers=auth)
    assert r.status_code == 422 and "method.budget" in r.text, r.text
    # a budget beyond the dense network is refused at submission, with the most it may ask
    huge = {**body, "method": {"name": "width", "budget": 10**9}}
    r = client.post("/api/experiments", json=huge, headers=auth)
    assert r.status_code == 422, r.text
    [err] = r.json()["detail"]
    assert err["field"] == "method.budget" and "at most" in err["message"], err
    # prune-filters: below every block's conv1 at one filter is refused, with the least
    low = {**body, "method": {"name": "prune-filters", "budget": 100}}
    r = client.post("/api/experiments", json=low, headers=auth)
    assert r.status_code == 422, r.text
    [err] = r.json()["detail"]
    assert err["field"] == "method.budget" and "at least" in err["message"], err
    ok = {**body, "method": {"name": "prune-filters", "budget": 0.2, "rounds": 2}}
    assert client.post("/api/experiments", json=ok, headers=auth).status_code == 201


def test_power_law_of_pckh_fits_one_minus_pckh(
    client: TestClient, auth: dict[str, str], session: Session
) -> None:
    sizes = [1000, 4000, 16000, 64000]
    ids = [pose_run(client, auth, session, p, 1 - 0.9 * p**-0.25) for p in sizes]
    other = pose_run(client, auth, session, 2000, 0.5, sharing="none")
    submit(client, auth)  # a classification run: not a pose point
    r = client.get("/api/analysis/power-law", params={"task": "pose", "target": [0.9]})
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["metric"] == "pckh" and body["task"] == "pose"
    assert body["fitted"] == "1 - pckh" and body["higher_is_better"] is True
    assert body["label"] == "PCKh@0.5"
    by = {(s["sharing"], s["stacks"]): s for s in body["series"]}
    assert set(by) == {("rpg", 2), ("none", 2)}
    assert [p["experiment_id"] for p in by[("rpg", 2)]["points"]] == ids
    assert [p["experiment_id"] for p in by[("none", 2)]["points"]] == [other]
    fit = by[("rpg", 2)]["fit"]
    assert fit["a"] == pytest.approx(0.9, rel=1e-6) and fit["b"] == pytest.approx(0.25, rel=1e-6)
    assert fit["params_for"]["0.9"] == pytest.approx(9**4, rel=1e-4)  # 0.1 = 0.9 * P^-0.25
    # the classification power law is unchanged by pose runs
    assert client.get("/api/analysis/power-law").json()["series"] == []


def test_power_law_of_a_lower_is_better_metric_fits_it_itself(
    client: TestClient, auth: dict[str, str], session: Session
) -> None:
    sizes = [1000, 4000, 16000]
    for p in sizes:  # depth = 3 * P^-0.5 (values above 1: no 1 - metric would fit)
        scenes_run(client, auth, session, p, 30 * p**-0.5, 0.5 * p**-0.1, stacks=3)
    body = client.get("/api/analysis/power-law", params={"task": "multitask"}).json()
    assert body["metric"] == "depth_rmse" and body["fitted"] == "depth_rmse"
    assert body["higher_is_better"] is False and body["label"] == "depth RMSE"
    (series,) = body["series"]
    assert (series["sharing"], series["stacks"]) == ("rpg", 3)
    assert series["points"][0]["value"] == pytest.approx(30 * 1000**-0.5)
    assert series["fit"]["a"] == pytest.approx(30, rel=1e-6)
    assert series["fit"]["b"] == pytest.approx(0.5, rel=1e-6)
    normal = client.get(
        "/api/analysis/power-law", params={"task": "multitask", "metric": "normal_rmse"}
    ).json()
    assert normal["series"][0]["fit"]["b"] == pytest.approx(0.1, rel=1e-6)
    assert normal["series"][0]["fit"]["a"] == pytest.approx(0.5, rel=1e-6)
    # the dashboard's figure says what is fitted and which way is better
    fig = client.get("/ui/figures/power-law", params={"task": "multitask", "y": "error"}).json()
    assert "depth RMSE" in fig["figure"]["layout"]["yaxis"]["title"]["text"]
    assert "lower is better" in fig["figure"]["layout"]["yaxis"]["title"]["text"]
    assert len([t for t in fig["figure"]["data"] if t["meta"]["role"] == "fit"]) == 1


@pytest.mark.parametrize(
    ("query", "field"),
    [
        ({"task": "pose", "metric": "acc"}, "metric"),
        ({"task": "multitask", "metric": "pckh"}, "metric"),
        ({"metric": "depth_rmse"}, "metric"),
        ({"task": "nope"}, "task"),
    ],
)
def test_power_law_422s_name_the_field(
    client: TestClient, query: dict[str, str], field: str
) -> None:
    for url in ("/api/analysis/power-law", "/ui/figures/power-law"):
        r = client.get(url, params=query)
        assert r.status_code == 422, (url, r.text)
        assert r.json()["detail"][0]["field"] == field
    r = client.get("/api/analysis/power-law", params={"task": "multitask", "metric": "x"})
    assert "depth_rmse, normal_rmse" in r.json()["detail"][0]["message"]


def test_comparison_table_marks_the_best_cells(
    client: TestClient, auth: dict[str, str], session: Session
) -> None:
    r = client.post(
        "/api/sweeps",
        json={
            "name": "t5",
            "base": SCENES,
            "grid": {"model.sharing": ["reuse", "rpg"], "train.seed": [0, 1]},
        },
        headers=auth,
    )
    assert r.status_code == 201, r.text
    sweep = r.json()["id"]
    runs = client.get("/api/experiments", params={"sweep": sweep}, headers=auth).json()["items"]
    values = {  # (sharing, seed): (depth, normal)
        ("reuse", 0): (0.50, 0.30),
        ("reuse", 1): (0.40, 0.34),
        ("rpg", 0): (0.30, 0.40),
        ("rpg", 1): (0.36, 0.42),
    }
    for e in runs:
        spec = client.get(f"/api/experiments/{e['id']}", headers=auth).json()["spec"]
        depth, normal = values[(spec["model"]["sharing"], spec["train"]["seed"])]
        run_to_end(
            session,
            e["id"],
            {
                "task": "multitask",
                "metrics": {"depth_rmse": depth, "normal_rmse": normal},
                "primary_metric": "depth_rmse",
                "primary_value": depth,
                "total_params": 1000 if spec["model"]["sharing"] == "reuse" else 2000,
            },
        )
    r = client.get("/api/analysis/comparison", params={"sweep": sweep})
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["task"] == "multitask" and body["runs"] == 4
    assert body["sharing"] == ["reuse", "rpg"] and body["stacks"] == [2]
    cells = {c["sharing"]: c for c in body["cells"]}
    reuse, rpg = cells["reuse"], cells["rpg"]
    assert reuse["n"] == 2 and sorted(reuse["seeds"]) == [0, 1]
    assert reuse["metrics"]["depth_rmse"]["mean"] == pytest.approx(0.45)
    assert (reuse["metrics"]["depth_rmse"]["min"], reuse["metrics"]["depth_rmse"]["max"]) == (
        pytest.approx(0.40),
        pytest.approx(0.50),
    )
    assert reuse["metrics"]["depth_rmse"]["std"] == pytest.approx(0.05)
    assert reuse["total_params"] == 1000 and rpg["total_params"] == 2000
    # lower is better: the minimum mean is the best, per metric
    assert rpg["best"] == ["depth_rmse"] and reuse["best"] == ["normal_rmse"]
    assert body["best"]["depth_rmse"] == [{"sharing": "rpg", "stacks": 2}]
    # the same table by task and filters
    again = client.get("/api/analysis/comparison", params={"task": "multitask"}).json()
    assert again["cells"] == body["cells"]


def test_comparison_of_pose_and_its_422s(
    client: TestClient, auth: dict[str, str], session: Session
) -> None:
    for sharing, stacks, pckh in [
        ("none", 2, 0.5),
        ("rpg", 2, 0.6),
        ("rpg", 4, 0.7),
        ("rpg", 4, 0.8),
    ]:
        pose_run(client, auth, session, 1000 * stacks, pckh, sharing=sharing, stacks=stacks)
    body = client.get("/api/analysis/comparison", params={"task": "pose"}).json()
    assert body["sharing"] == ["none", "rpg"] and body["stacks"] == [2, 4]
    best = [c for c in body["cells"] if c["best"]]
    assert [(c["sharing"], c["stacks"], c["best"]) for c in best] == [("rpg", 4, ["pckh"])]
    assert best[0]["metrics"]["pckh"]["mean"] == pytest.approx(0.75)
    r = client.get("/api/analysis/comparison")
    assert r.status_code == 422 and r.json()["detail"][0]["field"] == "task"
    r = client.get("/api/analysis/comparison", params={"task": "segmentation"})
    assert r.status_code == 422 and r.json()["detail"][0]["field"] == "task"
    assert client.get("/api/analysis/comparison", params={"sweep": "x"}).status_code == 422
