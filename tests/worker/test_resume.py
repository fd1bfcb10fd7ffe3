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
        started = time.monotonic()
        srv = Serve(env, port, log)
        # resumed at once (well before the 60 s lease of the dead worker expires) ...
        _wait(
            "the run resumed",
            lambda: (
                (e := srv.experiment(exp_id))["status"] == "running"
                and "resumed from its checkpoint" in (e.get("error") or "")
            ),
            55,
        )
        assert time.monotonic() - started < 55
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
        assert "resumed from its checkpoint" in (exp.get("error") or "")
        cancel = httpx.post(
            f"{srv.url}/api/experiments/{exp_id}/cancel",
            headers={"Authorization": f"Bearer {token}"},
        )
        assert cancel.status_code == 200
    finally:
        srv.stop()
