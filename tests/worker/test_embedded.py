"""Embedded mode end to end: ``rpg serve`` with no broker server (filesystem transport, SQLite)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

from .conftest import tiny_spec

pytestmark = pytest.mark.e2e  # starts real server / worker processes

PORT = 8765


def test_rpg_serve_embedded_runs_a_submitted_job_to_done(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("RPG_")}
    env.update(OMP_NUM_THREADS="1", RPG_DATABASE_URL=f"sqlite:///{tmp_path / 'rpg.db'}")
    cmd = [
        sys.executable,
        "-m",
        "rpg_core.cli",
        "serve",
        "--port",
        str(PORT),
        "--workdir",
        str(tmp_path / "w"),
    ]
    srv = subprocess.Popen(cmd, env=env, start_new_session=True)
    url = f"http://127.0.0.1:{PORT}"
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                if httpx.get(f"{url}/healthz", timeout=2).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            assert time.monotonic() < deadline and srv.poll() is None, "rpg serve did not start"
            time.sleep(0.5)
        token = subprocess.run(
            [sys.executable, "-m", "rpg_core.cli", "token", "create", "emb"],
            env=env,
            capture_output=True,
            text=True,
            check=True,
        ).stdout.strip()
        auth = {"Authorization": f"Bearer {token}"}
        # generous timeouts: the first request imports the training stack, slow on a loaded machine
        r = httpx.post(
            f"{url}/api/experiments", json=tiny_spec("emb", epochs=2), headers=auth, timeout=60
        )
        assert r.status_code == 201 and r.json()["dispatched"] is True
        exp_id = r.json()["id"]
        deadline = time.monotonic() + 120
        while True:
            exp = httpx.get(f"{url}/api/experiments/{exp_id}", headers=auth, timeout=30).json()
            if exp["status"] in ("succeeded", "failed", "cancelled") or time.monotonic() > deadline:
                break
            time.sleep(0.5)
        assert exp["status"] == "succeeded", exp
        model = httpx.get(f"{url}/api/experiments/{exp_id}/model", headers=auth, timeout=30)
        assert model.status_code == 200
        assert list((tmp_path / "w" / "broker").iterdir())  # the filesystem broker was used
    finally:
        os.killpg(srv.pid, signal.SIGTERM)
        srv.wait(timeout=30)
