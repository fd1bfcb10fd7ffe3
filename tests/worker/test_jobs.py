"""End to end with real Celery workers, Redis and PostgreSQL: submit over REST -> done,
cancel, a job that fails every time, a lost broker queue, and two workers at once."""

from __future__ import annotations

import io
from pathlib import Path
from typing import Any

import redis
from sqlalchemy import func, select, update

from api import crud
from api.dispatch import dispatch
from api.models import Experiment, MetricPoint
from rpg_core.format import load_compact
from rpg_core.rpg.params import count_params
from worker.artifacts import checkpoint_dir

from .conftest import REDIS_URL, Stack, tiny_spec


def test_submit_over_rest_runs_to_done_with_a_loadable_model(
    shared_stack: Stack, tmp_path: Path
) -> None:
    st = shared_stack
    exp_id = st.submit(tiny_spec("e2e", epochs=2))
    exp = st.wait_status(exp_id, "succeeded", "failed")
    assert exp.status == "succeeded", exp.error
    assert exp.attempts == 1 and exp.progress == 1.0 and exp.epoch == 2
    assert exp.best_val_acc is not None and exp.backbone_params is not None
    series = st.client.get(f"/api/experiments/{exp_id}/metrics", headers=st.auth)
    assert series.status_code == 200
    r = st.client.get(f"/api/experiments/{exp_id}/model", headers=st.auth)
    assert r.status_code == 200 and r.content[:1]
    path = tmp_path / "m.rpg"
    path.write_bytes(r.content)
    model = load_compact(path)
    assert count_params(model).backbone == exp.backbone_params
    sim = st.client.get(f"/api/experiments/{exp_id}/similarity", headers=st.auth)
    assert sim.status_code == 200 and abs(sum(sim.json()["similarity"]["fractions"]) - 1) < 1e-6
    assert (Path(st.settings.artifact_dir) / crud.artifact_relpath(exp_id)).is_file()
    assert (
        io.BytesIO(r.content).getbuffer().nbytes
        == (Path(st.settings.artifact_dir) / crud.artifact_relpath(exp_id)).stat().st_size
    )


def test_a_pruning_job_prunes_a_finished_run(shared_stack: Stack) -> None:
    st = shared_stack
    source = tiny_spec("prune-source", epochs=1)
    source_id = st.submit(source)
    assert st.wait_status(source_id, "succeeded", "failed").status == "succeeded"
    job = {
        "name": "pruned",
        "prune": {"source": source_id, "fraction": 0.3},
        "data": source["data"],
        "train": {"epochs": 1, "batch_size": 32, "lr": 0.01},
    }
    exp = st.wait_status(st.submit(job), "succeeded", "failed")
    assert exp.status == "succeeded", exp.error
    with st.session() as s:
        result = crud.get_result(s, exp.id)
    assert result is not None and result["prune"]["report"]["fraction_removed"] > 0.2
    assert exp.total_params == result["prune"]["report"]["total_after"]
    assert st.client.get(f"/api/experiments/{exp.id}/model", headers=st.auth).status_code == 404
    missing = st.wait_status(st.submit({**job, "prune": {"source": 99999}}), "succeeded", "failed")
    assert missing.status == "failed" and "prune.source: experiment 99999" in (missing.error or "")


def test_cancel_a_running_job_within_5_seconds(shared_stack: Stack) -> None:
    st = shared_stack
    exp_id = st.submit(tiny_spec("cancel-me", epochs=50))
    ckpt = checkpoint_dir(Path(st.settings.artifact_dir), exp_id) / "last.safetensors"
    st.wait(exp_id, lambda e: e.status == "running" and ckpt.is_file())
    r = st.client.post(f"/api/experiments/{exp_id}/cancel", headers=st.auth)
    assert r.status_code in (200, 202), r.text
    exp = st.wait_status(exp_id, "cancelled", "succeeded", "failed", timeout=5.0)
    assert exp.status == "cancelled"
    assert ckpt.is_file()


def test_a_job_that_always_raises_fails_after_the_attempt_cap_and_the_next_runs(
    shared_stack: Stack,
) -> None:
    st = shared_stack
    bad = st.submit(tiny_spec("boom", epochs=1))
    # A file where the job's checkpoint folder must go: every attempt raises (an OSError).
    ckpt = checkpoint_dir(Path(st.settings.artifact_dir), bad)
    ckpt.parent.mkdir(parents=True, exist_ok=True)
    ckpt.write_text("in the way")
    good = st.submit(tiny_spec("after-boom", epochs=1))
    exp = st.wait_status(bad, "failed", "succeeded", timeout=90)
    assert exp.status == "failed"
    assert exp.attempts == 3
    assert "FileExistsError" in (exp.error or "") and "attempt 3 of 3" in (exp.error or "")
    assert st.wait_status(good, "succeeded", "failed", timeout=90).status == "succeeded"


def test_a_job_whose_worker_died_three_times_ends_failed_with_the_reason(
    shared_stack: Stack,
) -> None:
    st = shared_stack
    with st.session() as s:
        exp_id = crud.create_experiment(s, tiny_spec("dies", epochs=1))
        s.execute(
            update(Experiment)
            .where(Experiment.id == exp_id)
            .values(status="running", attempts=3, worker="gone:1", lease_expires_at=func.now())
        )
        s.commit()
    st.start_reconciler()
    exp = st.wait_status(exp_id, "failed", "succeeded", timeout=30)  # the reconciler sends it
    assert exp.status == "failed"
    assert "gave up after 3 attempts" in (exp.error or "") and "gone:1" in (exp.error or "")
    assert exp.attempts == 3  # the claim that only records giving up is not a 4th attempt


def _queue_directly(st: Stack, spec: dict[str, Any]) -> int:
    """A spec stored without the API's submission checks (as an older server stored it)."""
    with st.session() as s:
        exp_id = crud.create_experiment(s, spec)
        s.commit()
    assert dispatch(st.settings, [exp_id]) == [exp_id]
    return exp_id


def test_an_error_no_retry_can_fix_fails_at_once(shared_stack: Stack) -> None:
    st = shared_stack
    spec = tiny_spec("two-classes", epochs=1)
    spec["model"]["num_classes"] = 2  # the data has 4: the loss raises IndexError every time
    exp = st.wait_status(_queue_directly(st, spec), "failed", "succeeded", timeout=60)
    assert exp.status == "failed" and exp.attempts == 1
    assert "IndexError" in (exp.error or "") and "not retried" in (exp.error or "")


def test_a_missing_dataset_fails_at_once_without_the_servers_path(shared_stack: Stack) -> None:
    st = shared_stack
    spec = {**tiny_spec("missing-data", epochs=1), "data": {"dataset": "imagefolder:missing"}}
    exp = st.wait_status(_queue_directly(st, spec), "failed", "succeeded", timeout=60)
    assert exp.status == "failed" and exp.attempts == 1, exp.error
    error = exp.error or ""
    assert "RPGDataError" in error and "<data root>" in error
    assert str(Path(st.settings.data_root).resolve()) not in error


def test_a_queued_job_lost_by_the_broker_is_dispatched_again(stack: Stack) -> None:
    st = stack
    exp_id = st.submit(tiny_spec("lost", epochs=1))
    r = redis.Redis.from_url(REDIS_URL)
    assert r.llen(st.queue) == 1
    r.delete(st.queue)  # what FLUSHALL does to our queue
    r.close()
    assert st.experiment(exp_id).status == "queued"
    st.start_worker()
    st.start_reconciler()
    exp = st.wait_status(exp_id, "succeeded", "failed", timeout=60)
    assert exp.status == "succeeded" and exp.attempts == 1


def test_two_workers_run_two_jobs_at_once(stack: Stack) -> None:
    st = stack
    a = st.submit(tiny_spec("a", epochs=30))
    b = st.submit(tiny_spec("b", epochs=30))
    st.start_worker()
    st.start_worker()
    st.wait(a, lambda e: e.status == "running" and (e.epoch or 0) >= 1, timeout=60)
    st.wait(b, lambda e: e.status == "running" and (e.epoch or 0) >= 1, timeout=60)
    ea, eb = st.experiment(a), st.experiment(b)
    assert ea.worker != eb.worker
    for exp_id in (a, b):
        st.client.post(f"/api/experiments/{exp_id}/cancel", headers=st.auth)
    for exp_id in (a, b):  # (cancel latency: test_cancel_a_running_job_within_5_seconds)
        assert st.wait_status(exp_id, "cancelled", timeout=30).status == "cancelled"


def no_duplicate_metrics(st: Stack, exp_id: int) -> int:
    with st.session() as s:
        rows = s.execute(
            select(MetricPoint.epoch, MetricPoint.name).where(MetricPoint.experiment_id == exp_id)
        ).all()
    assert len(rows) == len(set(rows))
    return len(rows)
