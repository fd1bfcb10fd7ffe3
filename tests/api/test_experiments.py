"""Experiments: submit, validation, show, list/filter/paginate, cancel, retry, delete."""

from __future__ import annotations

from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import func, select, update
from sqlalchemy.orm import Session

from api import crud
from api.models import Experiment, Result
from api.storage import open_store
from rpg_core.training.result import ExperimentResult, TrainResult

from .conftest import BACKENDS, SPEC, run_to_end, store_file, submit


def _count(session: Session) -> int:
    session.expire_all()
    return int(session.scalar(select(func.count()).select_from(Experiment)) or 0)


def test_submit_queues_and_show_returns_spec(client: TestClient, auth: dict[str, str]) -> None:
    r = client.post("/api/experiments", json=SPEC, headers=auth)
    assert r.status_code == 201
    body = r.json()
    assert body["status"] == "queued" and body["dispatched"] is False  # no broker configured
    got = client.get(f"/api/experiments/{body['id']}").json()
    assert got["spec"]["rpg"]["ring_size"] == 1000
    assert (got["arch"], got["dataset"], got["scope"], got["tags"]) == (
        "resnet18",
        "digits",
        "global",
        ["t1"],
    )
    assert got["attempts"] == 0 and got["result"] is None and got["has_model"] is False


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({**SPEC, "rpg": {"ring_size": -5}}, "rpg.ring_size"),
        ({**SPEC, "rpg": {"ring_size": 5_000_000}}, "rpg.ring_size"),  # over max_ring_size
        ({**SPEC, "train": {"epochs": 501}}, "train.epochs"),  # over max_epochs
        ({**SPEC, "train": {"batch_size": 2048}}, "train.batch_size"),
        ({**SPEC, "surprise": 1}, "surprise"),
        ({**SPEC, "model": {"arch": "nope"}}, "model.arch"),
        ({**SPEC, "data": {"dataset": "../../etc"}}, "data.dataset"),
        ({**SPEC, "name": "a/b"}, "name"),
        ({**SPEC, "tags": ["ok", "a\x00"]}, "tags[1]"),
        (
            {**SPEC, "model": {"arch": "resnet18", "recurrence": {"mode": "rpg"}}},
            "model.recurrence",
        ),
        (
            {
                **SPEC,
                "model": {"arch": "mdeq", "recurrence": {"mode": "equilibrium", "repeats": 3}},
            },
            "model.recurrence",
        ),
        (
            {
                **SPEC,
                "model": {"arch": "mdeq", "recurrence": {"mode": "rpg", "repeats": 2}},
                "rpg": {"ring_size": 1000, "scope": "stage"},
            },
            "rpg",
        ),
    ],
)
def test_bad_spec_names_the_field_and_changes_nothing(
    client: TestClient, auth: dict[str, str], session: Session, body: dict[str, Any], field: str
) -> None:
    before = _count(session)
    r = client.post("/api/experiments", json=body, headers=auth)
    assert r.status_code == 422
    fields = [d["field"] for d in r.json()["detail"]]
    assert field in fields, r.json()
    assert all(d["message"] for d in r.json()["detail"])
    assert _count(session) == before


def test_invalid_json_is_422(client: TestClient, auth: dict[str, str]) -> None:
    r = client.post(
        "/api/experiments",
        content=b"{not json",
        headers={**auth, "content-type": "application/json"},
    )
    assert r.status_code == 422


def test_writes_need_a_valid_token(client: TestClient, session: Session) -> None:
    assert client.post("/api/experiments", json=SPEC).status_code == 401
    bad = {"Authorization": "Bearer rpg_not-a-token"}
    assert client.post("/api/experiments", json=SPEC, headers=bad).status_code == 401
    assert client.post("/api/experiments/1/cancel", headers=bad).status_code == 401
    assert client.delete("/api/experiments/1").status_code == 401
    assert _count(session) == 0


def test_show_unknown_is_404(client: TestClient) -> None:
    assert client.get("/api/experiments/999999").status_code == 404


def test_filters(client: TestClient, auth: dict[str, str], session: Session) -> None:
    a = submit(client, auth, name="a", tags=["x"])
    b = submit(client, auth, name="b", model={"arch": "resnet34"}, tags=["y"])
    c = submit(client, auth, name="c", rpg=None, data={"dataset": "synthetic"})
    run_to_end(session, c, {"best_val_acc": 0.5})

    def ids(**params: Any) -> list[int]:
        r = client.get("/api/experiments", params=params)
        assert r.status_code == 200, r.text
        return [e["id"] for e in r.json()["items"]]

    assert ids() == [c, b, a]
    assert ids(arch="resnet34") == [b]
    assert ids(tag="x") == [a]
    assert ids(status="succeeded") == [c]
    assert ids(dataset="synthetic") == [c]
    assert ids(scope="plain") == [c]
    assert client.get("/api/experiments", params={"status": "bogus"}).status_code == 422


@pytest.mark.parametrize("sort", ["-id", "id", "name", "-name", "-best_val_acc", "updated"])
def test_cursor_pagination_visits_every_row_once(
    client: TestClient, auth: dict[str, str], session: Session, sort: str
) -> None:
    ids = [submit(client, auth, name=f"e{i % 3}") for i in range(7)]
    for i, exp_id in enumerate(ids[:4]):
        run_to_end(session, exp_id, {"best_val_acc": 0.1 * (i % 2)})  # ties on purpose
    seen: list[int] = []
    cursor = None
    for _ in range(10):
        params: dict[str, Any] = {"limit": 3, "sort": sort}
        if cursor:
            params["cursor"] = cursor
        page = client.get("/api/experiments", params=params).json()
        seen += [e["id"] for e in page["items"]]
        cursor = page["next_cursor"]
        if cursor is None:
            break
    assert sorted(seen) == sorted(ids) and len(seen) == len(ids)
    if sort in ("-id", "id"):
        assert seen == sorted(ids, reverse=sort == "-id")


def test_bad_cursor_and_limit_are_422(client: TestClient) -> None:
    r = client.get("/api/experiments", params={"cursor": "garbage!!"})
    assert r.status_code == 422 and r.json()["detail"][0]["field"] == "cursor"
    assert client.get("/api/experiments", params={"limit": 201}).status_code == 422
    assert client.get("/api/experiments", params={"limit": 0}).status_code == 422


def test_cancel_queued_then_retry(client: TestClient, auth: dict[str, str]) -> None:
    exp_id = submit(client, auth)
    r = client.post(f"/api/experiments/{exp_id}/cancel", headers=auth)
    assert r.json()["status"] == "cancelled"
    assert client.post(f"/api/experiments/{exp_id}/cancel", headers=auth).status_code == 409
    r = client.post(f"/api/experiments/{exp_id}/retry", headers=auth)
    assert r.status_code == 200 and r.json()["status"] == "queued"
    got = client.get(f"/api/experiments/{exp_id}").json()
    assert got["status"] == "queued" and got["cancel_requested"] is False
    assert client.post(f"/api/experiments/{exp_id}/retry", headers=auth).status_code == 409


def test_cancel_running_sets_cancelling(
    client: TestClient, auth: dict[str, str], session: Session
) -> None:
    exp_id = submit(client, auth)
    lease = crud.claim_experiment(session, exp_id, "w1")
    assert lease is not None
    assert client.post(f"/api/experiments/{exp_id}/cancel", headers=auth).json()["status"] == (
        "cancelling"
    )
    assert crud.heartbeat(session, exp_id, lease.token).cancel_requested
    assert crud.mark_cancelled(session, exp_id, lease.token)
    assert client.get(f"/api/experiments/{exp_id}").json()["status"] == "cancelled"


def test_retry_failed_keeps_attempts(
    client: TestClient, auth: dict[str, str], session: Session
) -> None:
    exp_id = submit(client, auth)
    run_to_end(session, exp_id, fail="loss became NaN")
    got = client.get(f"/api/experiments/{exp_id}").json()
    assert got["status"] == "failed" and got["error"] == "loss became NaN"
    assert client.post(f"/api/experiments/{exp_id}/retry", headers=auth).status_code == 200
    got = client.get(f"/api/experiments/{exp_id}").json()
    assert got["status"] == "queued" and got["error"] is None and got["attempts"] == 1


@BACKENDS
def test_delete_only_finished_and_removes_files(
    client: TestClient, auth: dict[str, str], session: Session, settings: Any
) -> None:
    exp_id = submit(client, auth)
    assert client.delete(f"/api/experiments/{exp_id}", headers=auth).status_code == 409
    rel = crud.artifact_relpath(exp_id)
    ckpt = f"experiments/{exp_id}/checkpoints/last.safetensors"
    record = store_file(settings, rel, b"model bytes")
    store_file(settings, ckpt, b"checkpoint bytes")  # kept for a resume, never recorded
    run_to_end(session, exp_id, {"val_acc": 0.9}, [record])
    store = open_store(settings)
    assert store.exists(rel) and store.exists(ckpt)
    assert client.delete(f"/api/experiments/{exp_id}", headers=auth).status_code == 204
    assert not store.exists(rel) and not store.exists(ckpt)
    assert store.list(f"experiments/{exp_id}/") == []
    if not store.remote:  # the directory's now-empty folders go too
        assert not (settings.artifact_dir / f"experiments/{exp_id}").exists()
    assert client.get(f"/api/experiments/{exp_id}").status_code == 404
    assert client.delete(f"/api/experiments/{exp_id}", headers=auth).status_code == 404


@pytest.mark.parametrize(
    ("train", "says"),
    [
        ({"epochs": 1, "milestones": [1]}, "milestones"),
        ({"epochs": 2, "warmup_epochs": 5.0}, "warmup_epochs"),
        ({"schedule": "cosine", "milestones": [2], "epochs": 4}, "schedule step"),
    ],
)
def test_impossible_schedule_is_a_422_naming_train(
    client: TestClient, auth: dict[str, str], session: Session, train: dict[str, Any], says: str
) -> None:
    before = _count(session)
    r = client.post("/api/experiments", json={**SPEC, "train": train}, headers=auth)
    assert r.status_code == 422, r.text
    (detail,) = r.json()["detail"]
    assert detail["field"] == "train" and says in detail["message"]
    assert _count(session) == before


def test_a_misspelled_field_gets_the_closest_name(
    client: TestClient, auth: dict[str, str], session: Session
) -> None:
    body = {**SPEC, "train": {"epoch": 3}}
    r = client.post("/api/experiments", json=body, headers=auth)
    assert r.status_code == 422, r.text
    (detail,) = [d for d in r.json()["detail"] if d["field"] == "train.epoch"]
    assert "did you mean 'epochs'?" in detail["message"]
    assert "valid fields:" in detail["message"] and "warmup_epochs" in detail["message"]
    sweep = {"name": "s", "base": {**SPEC, "modle": {}}, "grid": {}}
    r = client.post("/api/sweeps", json=sweep, headers=auth)
    assert r.status_code == 422, r.text
    assert any("did you mean 'model'?" in d["message"] for d in r.json()["detail"]), r.text


def test_a_result_goes_from_train_result_to_the_response_unchanged(
    client: TestClient, auth: dict[str, str], session: Session
) -> None:
    train = TrainResult(
        name="contract",
        status="completed",
        epochs_run=1,
        epochs=1,
        final_val_acc=0.5,
        best_val_acc=0.5,
        train_acc=0.75,
        params={"backbone": 900, "total": 1000},
        flops=123,
        history=[{"epoch": 1, "val_acc": 0.5, "train_loss": float("nan"), "seconds": 2.5}],
        checkpoint="/srv/worker/checkpoints",
        health=[{"code": "near-chance", "message": "m"}],
        ood={"rotation@1": 0.25},
        ood_acc=0.25,
    )
    sim = {"layer": "layer3", "bin_edges": [0.0, 0.5, 1.0], "fractions": [0.25, 0.75]}
    stored = ExperimentResult.of(train, similarity=sim, attempt=2)
    exp_id = submit(client, auth)
    run_to_end(session, exp_id, stored)
    got = client.get(f"/api/experiments/{exp_id}").json()
    assert ExperimentResult.model_validate(got["result"]) == stored
    assert got["result"]["checkpoint"] is None  # the worker's path is not stored
    assert got["result"]["history"][0]["train_loss"] is None  # NaN
    assert (got["val_acc"], got["best_val_acc"], got["train_acc"]) == (0.5, 0.5, 0.75)
    assert (got["backbone_params"], got["total_params"], got["train_time_s"]) == (900, 1000, 2.5)
    assert got["flags"] == ["near-chance"]
    sim_out = client.get(f"/api/experiments/{exp_id}/similarity").json()["similarity"]
    assert sim_out["fractions"] == [0.25, 0.75]


def test_an_old_result_without_the_newer_fields_is_still_served(
    client: TestClient, auth: dict[str, str], session: Session
) -> None:
    exp_id = submit(client, auth)
    run_to_end(session, exp_id, {"val_acc": 0.4})
    old = {  # what a worker wrote before health, eval.ood, attempt and the contract existed
        "name": "old",
        "status": "completed",
        "final_val_acc": 0.4,
        "params": {"backbone": 10, "total": 12},
        "history": [{"epoch": 1, "val_acc": 0.4, "seconds": 1.0}],
        "val_acc": 0.4,
        "similarity": {"bin_edges": [0.0, 1.0], "fractions": [1.0], "layer": "layer3"},
        "an_old_key": "kept",
    }
    session.execute(update(Result).where(Result.experiment_id == exp_id).values(data=old))
    session.commit()
    r = client.get(f"/api/experiments/{exp_id}")
    assert r.status_code == 200, r.text
    result = r.json()["result"]
    assert result["final_val_acc"] == 0.4 and result["an_old_key"] == "kept"
    assert result["ood"] is None and result["health"] == [] and result["attempt"] is None
    assert result["similarity"]["fractions"] == [1.0] and result["similarity"]["mean"] is None
