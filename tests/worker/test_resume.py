"""A run that was training when ``rpg serve`` stopped resumes, from its checkpoint, as soon as
the service starts again (real processes: the server, its worker, SIGTERM)."""

from __future__ import annotations

import os
import sqlite3
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import httpx
import pytest

from .conftest import Serve, free_port, tiny_spec

pytestmark = pytest.mark.e2e  # starts real server / worker processes

ROOT = Path(__file__).resolve().parents[2]


def _wait(what: str, check: Any, timeout: float) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = check()
        if value:
            return value
        time.sleep(0.3)
    raise AssertionError(f"timed out waiting for {what}")


def test_a_run_training_when_the_service_stopped_resumes_on_the_next_start(
    tmp_path: Path,
) -> None:
    home = tmp_path / "home"
    env = {k: v for k, v in os.environ.items() if not k.startswith("RPG_")}
    env.update(PYTHONPATH=str(ROOT), OMP_NUM_THREADS="1", RPG_HOME=str(home), RPG_LEASE_S="60")
    port, log = free_port(), tmp_path / "serve.log"
    srv = Serve(env, port, log)
    try:
        token = subprocess.run(
            [sys.executable, "-m", "rpg_core.cli", "token", "create", "t"],
            env=env,
            capture_output=True,
            text=True,
            check=True,
        ).stdout.strip()
        r = httpx.post(
            f"{srv.url}/api/experiments",
            json=tiny_spec("long", epochs=200),
            headers={"Authorization": f"Bearer {token}"},
        )
        exp_id = r.json()["id"]
        _wait("epoch 2", lambda: (srv.experiment(exp_id).get("epoch") or 0) >= 2, 120)
        srv.stop()
        with sqlite3.connect(home / "rpg-studio.db") as db:
            status, stopped_at = db.execute(
                "SELECT status, epoch FROM experiments WHERE id = ?", (exp_id,)
            ).fetchone()
        assert status == "running"  # what the service left behind
        srv = Serve(env, port, log)
        # resumed at start-up (the log line below), not when the dead worker's 60 s lease
        # expires; a loaded machine can take most of a minute to start the service and torch
        _wait(
            "the run resumed",
            lambda: (
                (e := srv.experiment(exp_id))["status"] == "running"
                and "it resumes from its checkpoint after epoch" in (e.get("error") or "")
            ),
            90,
        )
        # ... and training on (a loaded machine takes a while to start torch and the epoch)
        exp = _wait(
            "the resumed run's next epoch",
            lambda: (
                (e := srv.experiment(exp_id))["status"] == "running"
                and (e.get("epoch") or 0) > stopped_at
                and e
            ),
            120,
        )
        # ... from its checkpoint (not from epoch 0), and visibly
        assert exp["epoch"] >= stopped_at
        text = log.read_text()
        assert "resuming 1 run(s) that were training when the service stopped" in text
        assert f"database sqlite:///{home.resolve() / 'rpg-studio.db'}" in text  # said at start
        assert "it resumes from its checkpoint after epoch" in (exp.get("error") or "")
        cancel = httpx.post(
            f"{srv.url}/api/experiments/{exp_id}/cancel",
            headers={"Authorization": f"Bearer {token}"},
        )
        assert cancel.status_code == 200
    finally:
        srv.stop()


def _experiment_of(message: Path) -> int | None:
    from worker.broker import experiment_of

    return experiment_of(message.read_bytes())


def _queue_order(broker: Path) -> list[int | None]:
    """The experiments of the pending messages, in the order a worker takes them."""
    return [_experiment_of(p) for p in sorted((broker / "queue").glob("*.msg"))]


def test_interrupted_runs_go_before_the_queued_ones_and_their_notes_say_from_where(
    tmp_path: Path,
) -> None:
    """rpg serve at start (embedded): the runs a stop interrupted are sent ahead of the runs that
    were already waiting in the queue, each with a note naming its checkpoint's epoch, or saying
    that it restarts from the beginning when it stopped before its first checkpoint."""
    import json
    import socket

    import numpy as np
    from safetensors.numpy import save_file

    from api import crud
    from api.crud import lifecycle
    from api.migrate import upgrade
    from api.settings import Settings
    from worker.artifacts import checkpoint_dir
    from worker.runner import sessions_for
    from worker.serve import INTERRUPTED, resume_interrupted

    db = f"sqlite:///{tmp_path / 'rpg.db'}"
    upgrade(db)
    broker = tmp_path / "broker"
    settings = Settings(
        database_url=db, broker_url=f"filesystem://{broker}", artifact_dir=tmp_path / "a"
    )
    with sessions_for(db)() as s:
        ids = [crud.create_experiment(s, tiny_spec(f"r{i}", epochs=5)) for i in range(5)]
        s.commit()
        assert lifecycle.dispatch_jobs(s, settings, ids) == ids
        assert _queue_order(broker) == ids  # in the order sent, not by their random file ids
        # the worker took runs 0 and 3 (their messages are gone) and died with the service
        dead = f"{socket.gethostname()}:{2**22 + 17}"
        for i in (ids[0], ids[3]):
            (msg,) = [p for p in (broker / "queue").glob("*.msg") if _experiment_of(p) == i]
            msg.unlink()
            assert lifecycle.claim_experiment(s, i, dead) is not None
    # run 3 wrote the checkpoint of its second epoch; run 0 had none yet
    ckpt = checkpoint_dir(tmp_path / "a", ids[3])
    ckpt.mkdir(parents=True)
    meta = {"rpg_checkpoint": json.dumps({"format": "rpg-checkpoint", "epoch": 2})}
    save_file({"model/w": np.zeros(2, dtype=np.float32)}, str(ckpt / "last.safetensors"), meta)

    resumed = resume_interrupted(settings)
    assert list(resumed) == [ids[0], ids[3]]

    assert _queue_order(broker) == [ids[0], ids[3], ids[1], ids[2], ids[4]]
    with sessions_for(db)() as s:
        rows = [crud.get_experiment(s, i) for i in (ids[0], ids[3])]
        assert all(r is not None and r.status == "queued" for r in rows)
        first, second = (r.error or "" if r is not None else "" for r in rows)
    assert first.startswith(INTERRUPTED) and first.endswith("it restarts from the beginning")
    assert "resume" not in first
    assert second == f"{INTERRUPTED}; it resumes from its checkpoint after epoch 2"
    assert resumed == {ids[0]: first, ids[3]: second}  # what the server file records
