"""The train-validation gap on the power-law analysis, the OOD points, and eval.ood validation."""

from __future__ import annotations

from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy.orm import Session

from .conftest import SPEC, run_to_end, submit

pytestmark = pytest.mark.isolated  # throwaway databases, no Redis or server process


def _run(
    client: TestClient,
    auth: dict[str, str],
    session: Session,
    result: dict[str, Any],
    **over: Any,
) -> int:
    exp_id = submit(client, auth, **over)
    run_to_end(session, exp_id, result)
    return exp_id


def test_gap_is_a_power_law_quantity(
    client: TestClient, auth: dict[str, str], session: Session
) -> None:
    rpg = _run(
        client,
        auth,
        session,
        {"val_acc": 0.80, "best_val_acc": 0.82, "train_acc": 0.85, "backbone_params": 1000},
    )
    plain = _run(
        client,
        auth,
        session,
        {"val_acc": 0.70, "best_val_acc": 0.75, "train_acc": 0.90, "backbone_params": 1000},
        rpg=None,
    )
    _run(client, auth, session, {"val_acc": 0.6, "backbone_params": 1000})  # no train acc
    r = client.get("/api/analysis/power-law", params={"quantity": "gap"})
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["quantity"] == "gap" and body["fit_available"] is False
    by_scope = {s["scope"]: s for s in body["series"]}
    assert set(by_scope) == {"global", "plain"}  # RPG and plain side by side
    (p_rpg,) = by_scope["global"]["points"]
    (p_plain,) = by_scope["plain"]["points"]
    assert (p_rpg["experiment_id"], p_plain["experiment_id"]) == (rpg, plain)
    assert p_rpg["gap"] == pytest.approx(0.05) and p_plain["gap"] == pytest.approx(0.20)
    assert p_rpg["value"] == pytest.approx(0.80)  # the final val acc the gap is taken from
    assert all(s["fit"] is None for s in body["series"])
    default = client.get("/api/analysis/power-law").json()
    assert default["quantity"] == "accuracy"
    assert all(p["gap"] is None for s in default["series"] for p in s["points"])


def test_bad_quantity_is_422_naming_it(client: TestClient) -> None:
    r = client.get("/api/analysis/power-law", params={"quantity": "loss"})
    assert r.status_code == 422
    detail = r.json()["detail"]
    assert any(d["field"].endswith("quantity") and "gap" in d["message"] for d in detail), detail


def test_ood_points_come_from_results(
    client: TestClient, auth: dict[str, str], session: Session
) -> None:
    ood = {"rotation@0": 0.8, "rotation@3": 0.5, "folder:mini": 0.3}
    with_ood = _run(
        client,
        auth,
        session,
        {"val_acc": 0.8, "train_acc": 0.9, "backbone_params": 900, "ood": ood, "ood_acc": 0.4},
        name="with-ood",
    )
    _run(client, auth, session, {"val_acc": 0.7, "backbone_params": 900}, name="no-ood")
    r = client.get("/api/analysis/ood")
    assert r.status_code == 200, r.text
    (point,) = r.json()["points"]
    assert point["experiment_id"] == with_ood and point["name"] == "with-ood"
    assert point["ood"] == ood and point["ood_acc"] == pytest.approx(0.4)
    assert (point["val_acc"], point["train_acc"], point["scope"]) == (0.8, 0.9, "global")
    assert client.get("/api/analysis/ood", params={"scope": "plain"}).json()["points"] == []
    detail = client.get(f"/api/experiments/{with_ood}").json()
    assert detail["result"]["ood"] == ood
    assert client.get("/api/analysis/ood", params={"sweep": "x"}).status_code == 422


@pytest.mark.parametrize(
    ("ood", "field", "words"),
    [
        ([{"shift": "rotation", "folder": "x", "class_map": "m"}], "eval.ood.0", "exactly one"),
        ([{"folder": "../up", "class_map": "m"}], "eval.ood.0.folder", "pattern"),
        ([{"folder": "mini"}], "eval.ood.0", "class_map"),
        ([{"shift": "rotation", "severities": [9]}], "eval.ood.0.severities.0", "5"),
        ([{"shift": "swirl"}], "eval.ood.0.shift", "rotation"),
        ([{"shift": "rotation", "sevrities": [1]}], "eval.ood.0.sevrities", "severities"),
    ],
)
def test_bad_eval_ood_is_422_naming_the_field(
    client: TestClient, auth: dict[str, str], ood: list[Any], field: str, words: str
) -> None:
    r = client.post("/api/experiments", json={**SPEC, "eval": {"ood": ood}}, headers=auth)
    assert r.status_code == 422, r.text
    detail = r.json()["detail"]
    hits = [d for d in detail if d["field"] == field]
    assert hits and words in hits[0]["message"], detail


def test_good_eval_ood_is_accepted_and_stored(
    client: TestClient, auth: dict[str, str], session: Session
) -> None:
    ood = [{"shift": "rotation", "severities": [0, 3]}, {"shift": "inversion", "seed": 4}]
    exp_id = submit(client, auth, eval={"ood": ood, "ood_each_epoch": True})
    spec = client.get(f"/api/experiments/{exp_id}").json()["spec"]
    assert spec["eval"]["ood"][0]["severities"] == [0, 3]
    assert spec["eval"]["ood"][1]["seed"] == 4 and spec["eval"]["ood_each_epoch"] is True


@pytest.mark.parametrize("db_url", ["sqlite"], indirect=True)
def test_missing_ood_folder_or_map_is_422_on_submit(
    settings: Any, token: str, tmp_path: Any
) -> None:
    from fastapi.testclient import TestClient as Client

    from api.main import create_app

    root = tmp_path / "data"
    (root / "mini" / "cat").mkdir(parents=True)
    (root / "class-maps").mkdir()
    (root / "class-maps" / "m.json").write_text('{"cat": 0}')
    checked = settings.model_copy(update={"check_data_on_submit": True, "data_root": root})
    auth = {"Authorization": f"Bearer {token}"}
    with Client(create_app(checked)) as c:
        ok = {"ood": [{"folder": "mini", "class_map": "m"}]}
        assert (
            c.post("/api/experiments", json={**SPEC, "eval": ok}, headers=auth).status_code == 201
        )
        bad = {"ood": [{"shift": "contrast"}, {"folder": "nope", "class_map": "absent"}]}
        r = c.post("/api/experiments", json={**SPEC, "eval": bad}, headers=auth)
        assert r.status_code == 422, r.text
        fields = {d["field"]: d["message"] for d in r.json()["detail"]}
        assert "'nope'" in fields["eval.ood.1.folder"]
        assert "class-maps/absent.json" in fields["eval.ood.1.class_map"]
