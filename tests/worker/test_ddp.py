"""Data-parallel jobs through the service (issue 26): a real Celery worker holding 2 CPU slots
(``RPG_DEVICES=cpu0,cpu1``) on PostgreSQL + Redis runs a ``train.devices: 2`` job as 2 gloo
ranks under torchrun; the API refuses more devices than any worker has; cancel and ``kill -9``
of one rank end every rank, and the killed job resumes from its checkpoint.

Tolerances: tests/rpg_core/training/test_distributed.py (why 2e-6 on every epoch's losses)."""

from __future__ import annotations

import math
import os
import signal
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from api import crud
from api.crud.workers import largest_host
from rpg_core.training.engine import train
from worker.artifacts import checkpoint_dir

from .conftest import Stack, make_stack, tiny_spec

pytestmark = [pytest.mark.e2e, pytest.mark.slow]

RTOL = 2e-6  # relative: see tests/rpg_core/training/test_distributed.py


def ddp_job(name: str, devices: int = 2, epochs: int = 2) -> dict[str, Any]:
    spec = tiny_spec(name, epochs=epochs, lr=0.005, precise_bn="off", devices=devices)
    spec["data"] = {**spec["data"], "num_train": 128, "num_val": 32}
    return spec


def one_device(spec: dict[str, Any]) -> Any:
    return train({**spec, "train": {**spec["train"], "devices": 1}})


def same_curve(history: list[dict[str, Any]], baseline: list[dict[str, Any]]) -> None:
    assert [h["epoch"] for h in history] == [h["epoch"] for h in baseline]
    for a, b in zip(history, baseline, strict=True):
        for key in ("train_loss", "val_loss"):
            assert math.isclose(a[key], b[key], rel_tol=RTOL), (a["epoch"], key, a[key], b[key])


@pytest.fixture(scope="module")
def ddp_stack(pg_url: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    """One worker process whose host has two CPU slots."""
    tmp = tmp_path_factory.mktemp("ddp")
    for st in make_stack(pg_url, tmp):
        st.start_worker(RPG_DEVICES="cpu0,cpu1", RPG_DEVICE_LOCK_DIR=str(tmp / "locks"))
        deadline = time.monotonic() + 60
        while True:  # the worker records its host's devices when it starts
            with st.session() as s:
                if largest_host(s, st.queue) is not None:
                    break
            assert time.monotonic() < deadline, "the worker never recorded its devices"
            time.sleep(0.2)
        yield st


def rank_pids(st: Stack, exp_id: int, timeout: float = 60) -> list[int]:
    ranks = checkpoint_dir(Path(st.settings.artifact_dir), exp_id) / "ranks"
    deadline = time.monotonic() + timeout
    while len(list(ranks.glob("rank*.pid"))) < 2:
        assert time.monotonic() < deadline, "the ranks never started"
        time.sleep(0.1)
    return [int(p.read_text()) for p in sorted(ranks.glob("rank*.pid"))]


def alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    with open(f"/proc/{pid}/stat") as f:  # a zombie is gone too
        return f.read().split(")")[-1].split()[0] != "Z"


def test_more_devices_than_any_worker_has_is_refused_naming_the_field(ddp_stack: Stack) -> None:
    st = ddp_stack
    r = st.client.post("/api/experiments", json=ddp_job("too-many", devices=3), headers=st.auth)
    assert r.status_code == 422, r.text
    text = r.text
    assert "train.devices" in text and "largest worker seen has 2" in text
    base = ddp_job("sweep-too-many", devices=3)
    sweep = {"name": "too-many", "base": base, "grid": {"train.seed": [0, 1]}}
    r = st.client.post("/api/sweeps", json=sweep, headers=st.auth)
    assert r.status_code == 422 and "train.devices" in r.text, r.text


def test_a_cancel_stops_every_rank(ddp_stack: Stack) -> None:
    st = ddp_stack
    exp_id = st.submit(ddp_job("ddp-cancel", epochs=200))
    st.wait(exp_id, lambda e: e.status == "running" and (e.epoch or 0) >= 1, timeout=120)
    pids = rank_pids(st, exp_id)
    r = st.client.post(f"/api/experiments/{exp_id}/cancel", headers=st.auth)
    assert r.status_code in (200, 202), r.text
    exp = st.wait_status(exp_id, "cancelled", "succeeded", "failed", timeout=60)
    assert exp.status == "cancelled", exp.error
    deadline = time.monotonic() + 10
    while any(alive(p) for p in pids):
        assert time.monotonic() < deadline, f"ranks still alive: {[p for p in pids if alive(p)]}"
        time.sleep(0.1)


def test_kill_9_of_one_rank_ends_the_job_and_it_resumes_from_its_checkpoint(
    ddp_stack: Stack,
) -> None:
    """Also the 2-slot worker's run against the 1-device run: epoch by epoch, both attempts."""
    st = ddp_stack
    spec = ddp_job("ddp-crash", epochs=3)
    exp_id = st.submit(spec)
    # in epoch 2 (progress names the epoch being trained): epoch 1's checkpoint is written
    st.wait(exp_id, lambda e: e.status == "running" and (e.epoch or 0) >= 2, timeout=180)
    pids = rank_pids(st, exp_id)
    os.kill(pids[1], signal.SIGKILL)  # rank 1, mid-run
    done = st.wait_status(exp_id, "succeeded", "failed", timeout=240)
    assert done.status == "succeeded", done.error
    assert done.attempts == 2
    assert not any(alive(p) for p in pids)  # the first attempt's ranks are all gone
    with st.session() as s:
        result = crud.get_result(s, exp_id)
        model = crud.get_file(s, exp_id, "model")
    assert result is not None and result["attempt"] == 2
    assert model is not None  # rank 0's trained weights, saved by the worker
    assert result["spec"]["train"]["devices"] == 2
    log = "".join(p.read_text() for p in st.logs)
    assert "a rank of the 2-device run" in log, log[-3000:]  # why attempt 1 ended
    ranks = checkpoint_dir(Path(st.settings.artifact_dir), exp_id) / "ranks"
    assert "resumed ddp-crash" in (ranks / "torchrun.log").read_text()  # the second attempt's
    same_curve(result["history"], one_device(spec).history)


def test_a_data_parallel_job_with_no_worker_yet_says_what_it_waits_for(stack: Stack) -> None:
    exp_id = stack.submit(ddp_job("no-worker-yet"))
    exp = stack.experiment(exp_id)
    assert exp.status == "queued"
    assert "waiting for a worker with 2 devices" in (exp.error or "")
