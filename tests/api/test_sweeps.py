"""Sweeps: one transaction for all experiments, progress counts, listing, limits."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from api.main import create_app
from api.models import Experiment, Sweep
from api.settings import Settings
from rpg_core.spec.sweep import load_sweep

from .conftest import run_to_end

pytestmark = pytest.mark.isolated  # throwaway databases, no Redis or server process

SWEEP: dict[str, Any] = {
    "name": "fig4",
    "base": {
        "model": {"arch": "resnet18", "width": 0.25},
        "data": {"dataset": "digits"},
        "train": {"epochs": 2},
    },
    "grid": {"rpg.ring_size": [100, 200, 400]},
    "extra": [{"name": "plain", "rpg": None}],
    "tags": ["fig4"],
}


def _rows(session: Session) -> tuple[int, int]:
    session.expire_all()
    return (
        int(session.scalar(select(func.count()).select_from(Experiment)) or 0),
        int(session.scalar(select(func.count()).select_from(Sweep)) or 0),
    )


def test_sweep_creates_its_experiments(
    client: TestClient, auth: dict[str, str], session: Session
) -> None:
    r = client.post("/api/sweeps", json=SWEEP, headers=auth)
    assert r.status_code == 201, r.text
    body = r.json()
    assert len(body["experiment_ids"]) == 4
    run_to_end(session, body["experiment_ids"][0], {"val_acc": 0.5})
    got = client.get(f"/api/sweeps/{body['id']}").json()
    assert got["total"] == 4 and got["counts"] == {"queued": 3, "succeeded": 1}
    assert got["spec"]["grid"] == SWEEP["grid"]
    items = client.get("/api/experiments", params={"sweep": body["id"], "tag": "fig4"}).json()
    assert {e["scope"] for e in items["items"]} == {"global", "plain"}
    listed = client.get("/api/sweeps").json()["items"]
    assert listed[0]["id"] == body["id"] and listed[0]["counts"]["queued"] == 3


def test_sweep_pages(client: TestClient, auth: dict[str, str]) -> None:
    ids = [
        client.post("/api/sweeps", json={**SWEEP, "name": f"s{i}"}, headers=auth).json()["id"]
        for i in range(3)
    ]
    first = client.get("/api/sweeps", params={"limit": 2}).json()
    second = client.get("/api/sweeps", params={"limit": 2, "cursor": first["next_cursor"]}).json()
    assert [s["id"] for s in first["items"] + second["items"]] == ids[::-1]
    assert second["next_cursor"] is None


def test_too_many_experiments_rejected_and_nothing_written(
    client: TestClient, auth: dict[str, str], session: Session
) -> None:
    big = {**SWEEP, "grid": {"rpg.ring_size": list(range(1, 41)), "train.seed": list(range(26))}}
    r = client.post("/api/sweeps", json=big, headers=auth)
    assert r.status_code == 422 and "1000" in r.json()["detail"][0]["message"]
    assert _rows(session) == (0, 0)


def test_one_bad_experiment_rejects_the_sweep(
    client: TestClient, auth: dict[str, str], session: Session
) -> None:
    bad = {**SWEEP, "grid": {"rpg.ring_size": [100, 5_000_000]}}  # over max_ring_size
    r = client.post("/api/sweeps", json=bad, headers=auth)
    assert r.status_code == 422
    assert r.json()["detail"][0]["field"] == "experiments[1].rpg.ring_size"
    bad = {**SWEEP, "grid": {"model.arch": ["resnet18", "nope"]}}
    r = client.post("/api/sweeps", json=bad, headers=auth)
    assert r.status_code == 422 and "nope" in r.json()["detail"][0]["message"]
    assert client.post("/api/sweeps", json={**SWEEP, "what": 1}, headers=auth).status_code == 422
    assert _rows(session) == (0, 0)


def test_sweep_seeds_run_replicates_that_redraw_the_rings(
    client: TestClient, auth: dict[str, str], session: Session
) -> None:
    body = {**SWEEP, "base": {**SWEEP["base"], "rpg": {"ring_size": 100}}, "seeds": [0, 1]}
    r = client.post("/api/sweeps", json=body, headers=auth)
    assert r.status_code == 201, r.text
    ids = r.json()["experiment_ids"]
    assert len(ids) == 8  # 3 ring sizes and the plain baseline, two seeds each
    specs = [client.get(f"/api/experiments/{i}").json()["spec"] for i in ids]
    assert [s["name"] for s in specs[:2]] == [
        "fig4-ring_size_100-seed_0",
        "fig4-ring_size_100-seed_1",
    ]
    assert [s["train"]["seed"] for s in specs] == [0, 1] * 4
    assert [s["rpg"]["seed"] for s in specs if s["rpg"]] == [0, 1] * 3
    assert specs[-1]["rpg"] is None and specs[-1]["name"] == "fig4-plain-seed_1"
    assert client.get(f"/api/sweeps/{r.json()['id']}").json()["spec"]["seeds"] == [0, 1]


def test_sweep_seeds_varied_twice_are_refused(
    client: TestClient, auth: dict[str, str], session: Session
) -> None:
    both = {**SWEEP, "grid": {**SWEEP["grid"], "train.seed": [0, 1]}, "seeds": [0, 1]}
    r = client.post("/api/sweeps", json=both, headers=auth)
    assert r.status_code == 422
    (err,) = r.json()["detail"]
    assert err["field"] == "sweep" and "grid.train.seed: seeds sets" in err["message"]
    r = client.post("/api/sweeps", json={**SWEEP, "seeds": [3, 3]}, headers=auth)
    assert r.status_code == 422 and "repeated: 3" in r.text
    assert _rows(session) == (0, 0)


def test_unknown_sweep_is_404(client: TestClient) -> None:
    assert client.get("/api/sweeps/12345").status_code == 404


PAPER = sorted((Path(__file__).resolve().parents[2] / "experiments" / "paper").rglob("*.y*ml"))


@pytest.mark.skipif(not PAPER, reason="no experiments/paper/ templates yet")
@pytest.mark.parametrize("db_url", ["sqlite"], indirect=True)
def test_paper_templates_submit_as_they_are(settings: Settings, token: str) -> None:
    defaults = Settings(
        database_url=settings.database_url,
        broker_url=None,
        auto_migrate=False,
        artifact_dir=settings.artifact_dir,
        check_data_on_submit=False,  # CIFAR/ImageNet are not installed here (checked below)
        # the ImageNet templates are GPU-server runs (ResNet34 at batch 256 and 224 px: about
        # 18 GiB by the memory estimate); the budget is the deployment's (tests/api/test_sec_cost)
        max_job_memory_bytes=64 * 1024**3,
    )
    with TestClient(create_app(defaults)) as c:
        for path in PAPER:
            sweep = load_sweep(path).model_dump(mode="json")
            r = c.post("/api/sweeps", json=sweep, headers={"Authorization": f"Bearer {token}"})
            assert r.status_code == 201, (path.name, r.text[:500])
    missing = defaults.model_copy(
        update={"check_data_on_submit": True, "data_root": settings.artifact_dir / "no-data"}
    )
    with TestClient(create_app(missing)) as c:
        paper = Path(__file__).resolve().parents[2] / "experiments" / "paper"
        sweep = load_sweep(paper / "fig4_table3.yaml").model_dump(mode="json")
        r = c.post("/api/sweeps", json=sweep, headers={"Authorization": f"Bearer {token}"})
        assert r.status_code == 422  # CIFAR-100 is not under this data root: refused up front
        assert {e["field"].split(".", 1)[1] for e in r.json()["detail"]} == {"data.dataset"}
