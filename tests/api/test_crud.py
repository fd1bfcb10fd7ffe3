"""The worker's service-layer protocol: claim, lease fencing, heartbeat, metrics, finish."""

from __future__ import annotations

from datetime import timedelta

from fastapi.testclient import TestClient
from sqlalchemy import func, select, update
from sqlalchemy.orm import Session

from api import crud
from api.models import Experiment, MetricPoint, utcnow

from .conftest import submit


def test_claim_is_exclusive_and_counts_attempts(
    client: TestClient, auth: dict[str, str], session: Session
) -> None:
    exp_id = submit(client, auth)
    lease = crud.claim_experiment(session, exp_id, "w1", lease_s=60)
    assert lease is not None and lease.attempt == 1 and lease.spec["name"] == "r18-ring"
    assert crud.claim_experiment(session, exp_id, "w2") is None  # lease still live
    got = client.get(f"/api/experiments/{exp_id}").json()
    assert (got["status"], got["worker"], got["attempts"]) == ("running", "w1", 1)
    assert got["started_at"] is not None


def test_expired_lease_is_reclaimed_and_old_holder_fenced(
    client: TestClient, auth: dict[str, str], session: Session
) -> None:
    exp_id = submit(client, auth)
    old = crud.claim_experiment(session, exp_id, "w1", lease_s=60)
    assert old is not None
    session.execute(
        update(Experiment)
        .where(Experiment.id == exp_id)
        .values(lease_expires_at=utcnow() - timedelta(seconds=1))
    )
    session.commit()
    new = crud.claim_experiment(session, exp_id, "w2")
    assert new is not None and new.token > old.token and new.attempt == 2
    assert not crud.heartbeat(session, exp_id, old.token).alive
    assert not crud.report_progress(session, exp_id, old.token, 0.5)
    assert not crud.record_metrics(session, exp_id, old.token, 1, {"val_acc": 0.1})
    assert not crud.finish_experiment(session, exp_id, old.token, {"val_acc": 0.1})
    assert not crud.fail_experiment(session, exp_id, old.token, "x")
    assert crud.heartbeat(session, exp_id, new.token).alive


def test_progress_metrics_upsert_and_finish(
    client: TestClient, auth: dict[str, str], session: Session
) -> None:
    exp_id = submit(client, auth)
    lease = crud.claim_experiment(session, exp_id, "w1")
    assert lease is not None
    assert crud.report_progress(session, exp_id, lease.token, 0.5, epoch=1)
    assert crud.record_metrics(session, exp_id, lease.token, 1, {"loss": 2.0, "val_acc": 0.3})
    assert crud.record_metrics(session, exp_id, lease.token, 1, {"loss": 1.5})  # redelivered
    n = session.scalar(
        select(func.count()).select_from(MetricPoint).where(MetricPoint.experiment_id == exp_id)
    )
    assert n == 2
    series = client.get(f"/api/experiments/{exp_id}/metrics").json()["series"]
    assert series["loss"] == {"epoch": [1], "value": [1.5]}
    result = {"val_acc": 0.8, "best_val_acc": 0.85, "backbone_params": 1000, "extra": [1, 2]}
    assert crud.finish_experiment(session, exp_id, lease.token, result)
    got = client.get(f"/api/experiments/{exp_id}").json()
    assert got["status"] == "succeeded" and got["progress"] == 1.0
    assert got["best_val_acc"] == 0.85 and got["result"]["extra"] == [1, 2]
    assert not crud.report_progress(session, exp_id, lease.token, 0.9)  # finished: fenced


def test_cancelled_queued_run_cannot_be_claimed(
    client: TestClient, auth: dict[str, str], session: Session
) -> None:
    exp_id = submit(client, auth)
    client.post(f"/api/experiments/{exp_id}/cancel", headers=auth)
    assert crud.claim_experiment(session, exp_id, "w1") is None
    assert crud.is_cancel_requested(session, exp_id)
    assert crud.is_cancel_requested(session, 10**6)  # a deleted run counts as cancelled


def test_reconciler_helpers(client: TestClient, auth: dict[str, str], session: Session) -> None:
    queued = submit(client, auth)  # never dispatched (no broker)
    running = submit(client, auth)
    cancelling = submit(client, auth)
    fresh = submit(client, auth)
    for exp_id in (running, cancelling, fresh):
        assert crud.claim_experiment(session, exp_id, "w1") is not None
    client.post(f"/api/experiments/{cancelling}/cancel", headers=auth)
    session.execute(
        update(Experiment)
        .where(Experiment.id.in_([running, cancelling]))
        .values(lease_expires_at=utcnow() - timedelta(seconds=5))
    )
    session.commit()
    assert crud.redispatch_candidates(session) == [queued, running]
    assert crud.finalize_abandoned_cancels(session) == [cancelling]
    session.expire_all()
    exp = crud.get_experiment(session, cancelling)
    assert exp is not None and exp.status == "cancelled"
    crud.mark_dispatched(session, [queued])
    session.commit()
    assert crud.redispatch_candidates(session, stale_s=60) == [running]


def test_progress_never_goes_backwards_on_resume(
    client: TestClient, auth: dict[str, str], session: Session
) -> None:
    """A resumed attempt restarts at its checkpoint's epoch boundary (0.543 -> 0.5 before)."""
    exp_id = submit(client, auth)
    first = crud.claim_experiment(session, exp_id, "w1", lease_s=60)
    assert first is not None
    assert crud.report_progress(session, exp_id, first.token, 0.543, epoch=1)
    session.execute(
        update(Experiment)
        .where(Experiment.id == exp_id)
        .values(lease_expires_at=utcnow() - timedelta(seconds=1))
    )
    session.commit()
    second = crud.claim_experiment(session, exp_id, "w2")
    assert second is not None
    assert crud.report_progress(session, exp_id, second.token, 0.507, epoch=1)
    assert client.get(f"/api/experiments/{exp_id}").json()["progress"] == 0.543
    assert crud.report_progress(session, exp_id, second.token, 0.75, epoch=2)
    assert client.get(f"/api/experiments/{exp_id}").json()["progress"] == 0.75
