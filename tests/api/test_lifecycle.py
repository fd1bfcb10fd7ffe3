"""The job lifecycle's rules that the worker, the reconciler and rpg serve now share (one owner:
api.crud.lifecycle): requeue, dispatch marks, interrupted runs, settled runs."""

from __future__ import annotations

from datetime import timedelta

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import update
from sqlalchemy.orm import Session

from api.crud import ConflictError, lifecycle
from api.models import Experiment, utcnow
from api.status import IllegalTransition, JobStatus

from .conftest import run_to_end, submit

pytestmark = pytest.mark.isolated  # throwaway databases, no Redis or server process


def _row(session: Session, exp_id: int) -> Experiment:
    session.expire_all()
    exp = session.get(Experiment, exp_id)
    assert exp is not None
    return exp


def test_requeue_gives_the_lease_back_and_fences_the_old_holder(
    client: TestClient, auth: dict[str, str], session: Session
) -> None:
    exp_id = submit(client, auth)
    lease = lifecycle.claim_experiment(session, exp_id, "w1")
    assert lease is not None
    lifecycle.mark_dispatched(session, [exp_id])
    session.commit()
    assert lifecycle.requeue(session, exp_id, lease.token, "OSError: flaky disk")
    exp = _row(session, exp_id)
    assert (exp.status, exp.error, exp.lease_owner) == ("queued", "OSError: flaky disk", None)
    assert exp.dispatched_at is None and exp.lease_expires_at is None
    assert not lifecycle.report_progress(session, exp_id, lease.token, 0.5)  # fenced
    again = lifecycle.claim_experiment(session, exp_id, "w2")
    assert again is not None and again.attempt == 2


def test_a_run_cancelled_meanwhile_is_never_requeued(
    client: TestClient, auth: dict[str, str], session: Session
) -> None:
    """Before, the worker's own requeue refused it (status == running) while the fenced writes
    accepted it; now the lifecycle says it once: it ends cancelled, not queued with a cancel."""
    exp_id = submit(client, auth)
    lease = lifecycle.claim_experiment(session, exp_id, "w1")
    assert lease is not None
    assert client.post(f"/api/experiments/{exp_id}/cancel", headers=auth).json()["status"] == (
        "cancelling"
    )
    assert not lifecycle.requeue(session, exp_id, lease.token, "boom")
    assert _row(session, exp_id).status == "cancelling"
    assert lifecycle.mark_cancelled(session, exp_id, lease.token)
    assert _row(session, exp_id).status == "cancelled"


def test_dispatch_marks_queued_and_running_runs_only(
    client: TestClient, auth: dict[str, str], session: Session
) -> None:
    queued, running, done = (submit(client, auth) for _ in range(3))
    assert lifecycle.claim_experiment(session, running, "w1") is not None
    run_to_end(session, done, {"best_val_acc": 0.5})
    lifecycle.mark_dispatched(session, [queued, running, done])
    session.commit()
    marked = {i: _row(session, i).dispatched_at is not None for i in (queued, running, done)}
    assert marked == {queued: True, running: True, done: False}


def test_interrupted_runs_of_dead_owners_are_requeued(
    client: TestClient, auth: dict[str, str], session: Session
) -> None:
    dead, alive = submit(client, auth), submit(client, auth)
    assert lifecycle.claim_experiment(session, dead, "host:1") is not None
    assert lifecycle.claim_experiment(session, alive, "host:2") is not None
    ids = lifecycle.requeue_interrupted(session, lambda owner: owner == "host:1", error="stopped")
    assert ids == [dead]
    assert (_row(session, dead).status, _row(session, dead).error) == ("queued", "stopped")
    assert _row(session, alive).status == "running"


def test_settled_runs_are_finished_deleted_or_of_dead_workers(
    client: TestClient, auth: dict[str, str], session: Session
) -> None:
    done, dead, live, waiting = (submit(client, auth) for _ in range(4))
    run_to_end(session, done, {"best_val_acc": 0.5})
    for exp_id in (dead, live):
        assert lifecycle.claim_experiment(session, exp_id, "w") is not None
    session.execute(
        update(Experiment)
        .where(Experiment.id == dead)
        .values(lease_expires_at=utcnow() - timedelta(seconds=5))
    )
    session.commit()
    gone = 10**6
    assert lifecycle.settled_among(session, [done, dead, live, waiting, gone]) == {
        done,
        dead,
        gone,
    }


def test_a_run_cancelled_as_it_finishes_never_ends_succeeded(
    client: TestClient, auth: dict[str, str], session: Session
) -> None:
    """The cancel came after the worker's last check: finishing is refused, the run ends
    cancelled, and no result is stored under it."""
    exp_id = submit(client, auth)
    lease = lifecycle.claim_experiment(session, exp_id, "w1")
    assert lease is not None
    assert client.post(f"/api/experiments/{exp_id}/cancel", headers=auth).status_code == 200
    assert not lifecycle.finish_experiment(session, exp_id, lease.token, {"val_acc": 0.5})
    exp = _row(session, exp_id)
    assert exp.status == "cancelling" and exp.val_acc is None
    assert lifecycle.mark_cancelled(session, exp_id, lease.token)
    assert _row(session, exp_id).status == "cancelled"
    with pytest.raises(IllegalTransition):
        lifecycle.check_transition(JobStatus.cancelling, JobStatus.succeeded)


def test_only_failed_or_cancelled_runs_retry(
    client: TestClient, auth: dict[str, str], session: Session
) -> None:
    done = submit(client, auth)
    run_to_end(session, done, {"best_val_acc": 0.5})
    with pytest.raises(ConflictError, match="only failed or cancelled runs can retry"):
        lifecycle.retry_experiment(session, done)
    assert lifecycle.TRANSITIONS["succeeded"] == frozenset()


def _expire(session: Session, exp_id: int) -> None:
    session.execute(
        update(Experiment)
        .where(Experiment.id == exp_id)
        .values(lease_expires_at=utcnow() - timedelta(seconds=5))
    )
    session.commit()


def test_every_transition_function_refuses_an_illegal_transition(
    client: TestClient, auth: dict[str, str], session: Session
) -> None:
    """From a status TRANSITIONS gives no way out of (succeeded) each status change is refused
    (False, None, [] or 409) and the row is left as it was."""
    done = submit(client, auth)
    lease = lifecycle.claim_experiment(session, done, "w1")
    assert lease is not None
    assert lifecycle.finish_experiment(session, done, lease.token, {"best_val_acc": 0.5})
    token = lease.token
    assert lifecycle.claim_experiment(session, done, "w2") is None
    assert not lifecycle.finish_experiment(session, done, token, {"best_val_acc": 0.1})
    assert not lifecycle.fail_experiment(session, done, token, "late")
    assert not lifecycle.requeue(session, done, token, "late")
    assert not lifecycle.mark_cancelled(session, done, token)
    with pytest.raises(ConflictError, match="already succeeded"):
        lifecycle.request_cancel(session, done)
    session.rollback()
    with pytest.raises(ConflictError, match="only failed or cancelled runs can retry"):
        lifecycle.retry_experiment(session, done)
    session.rollback()
    _expire(session, done)
    assert lifecycle.requeue_interrupted(session, lambda _owner: True, "gone") == []
    assert lifecycle.finalize_abandoned_cancels(session) == []
    exp = _row(session, done)
    assert (exp.status, exp.best_val_acc, exp.error) == ("succeeded", 0.5, None)


def test_a_running_run_is_cancelled_only_through_cancelling(
    client: TestClient, auth: dict[str, str], session: Session
) -> None:
    """running -> cancelled is not an edge: mark_cancelled and the reconciler refuse it."""
    exp_id = submit(client, auth)
    lease = lifecycle.claim_experiment(session, exp_id, "w1")
    assert lease is not None
    assert not lifecycle.mark_cancelled(session, exp_id, lease.token)
    _expire(session, exp_id)
    assert lifecycle.finalize_abandoned_cancels(session) == []
    assert _row(session, exp_id).status == "running"
    with pytest.raises(ConflictError, match="running; only failed or cancelled runs can retry"):
        lifecycle.retry_experiment(session, exp_id)
    session.rollback()


# Each status change, the edge of TRANSITIONS it takes, and how to drive a run up to it.
_EDGES = {
    "claim": ("queued", "running"),
    "reclaim": ("running", "running"),
    "cancel_queued": ("queued", "cancelled"),
    "cancel_running": ("running", "cancelling"),
    "finish": ("running", "succeeded"),
    "fail": ("running", "failed"),
    "requeue": ("running", "queued"),
    "mark_cancelled": ("cancelling", "cancelled"),
    "finalize": ("cancelling", "cancelled"),
    "interrupted": ("running", "queued"),
    "retry": ("failed", "queued"),
}


@pytest.mark.parametrize("change", sorted(_EDGES))
def test_every_status_change_goes_through_transitions(
    change: str,
    client: TestClient,
    auth: dict[str, str],
    session: Session,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Remove the edge a change takes from TRANSITIONS: the change raises IllegalTransition
    instead of writing (so none of them is a plain assignment)."""
    exp_id = submit(client, auth)
    token = 0
    if change != "claim" and change != "cancel_queued":
        lease = lifecycle.claim_experiment(session, exp_id, "w1")
        assert lease is not None
        token = lease.token
    if change == "reclaim":
        _expire(session, exp_id)
    if change in ("mark_cancelled", "finalize"):
        lifecycle.request_cancel(session, exp_id)
        session.commit()
        _expire(session, exp_id)
    if change == "retry":
        assert lifecycle.fail_experiment(session, exp_id, token, "boom")
    before = _row(session, exp_id).status
    current, new = _EDGES[change]
    assert before == current
    monkeypatch.setitem(lifecycle.TRANSITIONS, JobStatus(current),
                        lifecycle.TRANSITIONS[JobStatus(current)] - {JobStatus(new)})  # fmt: skip
    calls = {
        "claim": lambda: lifecycle.claim_experiment(session, exp_id, "w2"),
        "reclaim": lambda: lifecycle.claim_experiment(session, exp_id, "w2"),
        "cancel_queued": lambda: lifecycle.request_cancel(session, exp_id),
        "cancel_running": lambda: lifecycle.request_cancel(session, exp_id),
        "finish": lambda: lifecycle.finish_experiment(session, exp_id, token, {}),
        "fail": lambda: lifecycle.fail_experiment(session, exp_id, token, "boom"),
        "requeue": lambda: lifecycle.requeue(session, exp_id, token, "flaky"),
        "mark_cancelled": lambda: lifecycle.mark_cancelled(session, exp_id, token),
        "finalize": lambda: lifecycle.finalize_abandoned_cancels(session),
        "interrupted": lambda: lifecycle.requeue_interrupted(session, lambda _o: True, "gone"),
        "retry": lambda: lifecycle.retry_experiment(session, exp_id),
    }
    with pytest.raises((IllegalTransition, ConflictError)):
        calls[change]()
    session.rollback()
    assert _row(session, exp_id).status == before
