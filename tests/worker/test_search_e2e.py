"""End to end (issue 25): a search sweep through REST -> a real Celery worker on PostgreSQL.
Trials are experiments; the pruner stops trials early (``pruned``, curve kept, the worker takes
the next trial at once); the study resumes after the worker is killed and the API restarted,
with no trial lost or run twice."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import optuna
import pytest
import torch
from fastapi.testclient import TestClient
from sqlalchemy import func, select

from api.models import Experiment, MetricPoint, Study
from api.optuna_tables import storage
from rpg_core import load_compact
from studio.app import create_app

from .conftest import Stack

pytestmark = [pytest.mark.slow]

EPOCHS = 2
N_TRIALS = 4
SWEEP: dict[str, Any] = {
    "name": "e2e-search",
    "base": {
        "model": {"arch": "resnet18", "width": 0.125},
        "rpg": {"ring_size": 2000},
        "data": {"dataset": "synthetic", "image_size": 8, "num_train": 192, "num_val": 48},
        "train": {"epochs": EPOCHS, "batch_size": 16},
    },
    "search": {
        "sampler": "random",
        "n_trials": N_TRIALS,
        "parallel": 1,
        # a learning rate that learns (val acc ~0.65 after one epoch) or one that does not (~0.35)
        "space": {"train.lr": {"choices": [0.05, 0.00001]}},
        # a trial below the median of the trials before it at an evaluation stops there
        "pruner": {"name": "median", "n_startup_trials": 1, "n_warmup_steps": 0},
        "seed": 0,  # the sampler draws lr 1e-5, 0.05, 1e-5, 0.05 (reproducible): trial 2 prunes
    },
}


def _trials(stack: Stack, study_id: int) -> list[Experiment]:
    with stack.session() as s:
        q = select(Experiment).where(Experiment.study_id == study_id)
        return list(s.scalars(q.order_by(Experiment.trial_number)))


def _wait(stack: Stack, study_id: int, until: Any, timeout: float, what: str) -> list[Experiment]:
    deadline = time.monotonic() + timeout
    while True:
        trials = _trials(stack, study_id)
        if until(trials):
            return trials
        if time.monotonic() > deadline:
            tail = "".join(p.read_text()[-3000:] for p in stack.logs if p.exists())
            pytest.fail(f"{what}: {[(t.trial_number, t.status) for t in trials]}\n{tail}")
        time.sleep(0.2)


def test_a_search_prunes_and_resumes_after_restarts(stack: Stack, tmp_path: Path) -> None:
    worker = stack.start_worker()
    r = stack.client.post("/api/sweeps", json=SWEEP, headers=stack.auth)
    assert r.status_code == 201, r.text
    (study_id,) = r.json()["study_ids"]
    assert len(r.json()["experiment_ids"]) == 1  # parallel 1: one trial at a time

    # two trials finished: kill the worker (mid-trial or between) and restart the API
    _wait(stack, study_id, lambda ts: sum(t.finished_at is not None for t in ts) >= 2, 90, "2")
    stack.kill_worker(worker)
    app = create_app(stack.settings)
    with TestClient(app) as client:
        stack.start_worker()
        stack.start_reconciler()
        done = _wait(
            stack,
            study_id,
            lambda ts: len(ts) == N_TRIALS and all(t.finished_at is not None for t in ts),
            120,
            "the study did not resume to its end",
        )
        detail = client.get(f"/api/studies/{study_id}", headers=stack.auth).json()
        # a pruned trial downloads like any run: its model as of the evaluation that pruned it
        pruned_ids = [t.id for t in done if t.status == "pruned"]
        downloads = {
            i: client.get(f"/api/experiments/{i}/model", headers=stack.auth) for i in pruned_ids
        }

    # no trial lost or run twice: one experiment per trial number, each told to Optuna once
    numbers = [t.trial_number for t in done]
    assert len(set(numbers)) == N_TRIALS
    statuses = [t.status for t in done]
    assert set(statuses) <= {"succeeded", "pruned"}, [(t.trial_number, t.error) for t in done]
    with stack.session() as s:
        row = s.get(Study, study_id)
        assert row is not None
        study = optuna.load_study(
            study_name=row.optuna_name, storage=storage(stack.settings.database_url)
        )
        states = {t.number: t.state.name for t in study.get_trials()}
        for t in done:
            want = "COMPLETE" if t.status == "succeeded" else "PRUNED"
            assert states[t.trial_number] == want, (t.trial_number, states)
        # asked trials without an experiment (a crash between ask and commit) were failed
        assert all(states[n] == "FAIL" for n in set(states) - set(numbers))

        # the pruner stopped at least one trial early; it keeps its curve and its last metrics
        pruned = [t for t in done if t.status == "pruned"]
        assert pruned, statuses
        first = pruned[0]
        assert first.epoch is not None and first.epoch < EPOCHS
        curve = s.scalars(
            select(MetricPoint.epoch).where(
                MetricPoint.experiment_id == first.id, MetricPoint.name == "val_acc"
            )
        ).all()
        assert sorted(curve) == list(range(1, first.epoch + 1))
        assert first.primary_metric == "acc" and first.primary_value is not None
        for exp_id, r in downloads.items():
            assert r.status_code == 200, (exp_id, r.text)
            path = tmp_path / f"{exp_id}.rpg"
            path.write_bytes(r.content)
            model = load_compact(path)
            assert model(torch.zeros(1, 3, 8, 8)).shape == (1, 10)
        # it stopped at the evaluation that pruned it: it ended right after writing that
        # evaluation's point (no further epoch), so its worker was free at once
        last_point = s.scalar(
            select(func.max(MetricPoint.created_at)).where(MetricPoint.experiment_id == first.id)
        )
        assert first.finished_at is not None and last_point is not None
        assert (first.finished_at - last_point).total_seconds() < 10
        # and the study went on at once: the driver asked the next trial, a worker took it
        following = [t for t in done if t.trial_number > first.trial_number]
        if following:
            nxt = min(following, key=lambda t: t.trial_number)
            assert nxt.started_at is not None
            assert (nxt.started_at - first.finished_at).total_seconds() < 60

    assert detail["state"] == "finished"
    assert len(detail["trials"]) == N_TRIALS
    assert any(t["status"] == "pruned" and t["intermediate"] for t in detail["trials"])
    assert detail["best"] is not None
