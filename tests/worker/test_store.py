"""Artifacts in an S3 store (a real S3 API server process, moto's, on 127.0.0.1): a run resumes
from the store's checkpoint on a worker with a fresh local directory, and a store outage mid-run
fails the write clearly and queues the run again (never succeeded), after which a retry
succeeds."""

from __future__ import annotations

import hashlib
import logging
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from sqlalchemy.orm import Session

from api import crud
from api.models import Experiment
from api.settings import Settings
from api.storage import open_store
from rpg_core.training.checkpoint_info import CHECKPOINT_NAME, completed_epochs
from studio.app import create_app
from worker.artifacts import checkpoint_dir, checkpoint_key
from worker.config import WorkerSettings
from worker.runner import run_experiment, sessions_for

from ..s3server import ACCESS_KEY, SECRET_KEY, MotoServer, credentials_env
from .conftest import tiny_spec

pytestmark = pytest.mark.e2e  # starts an S3 server and worker processes


ROOT = Path(__file__).resolve().parents[2]
WORKER = """
import sys
from api.settings import Settings
from worker.config import WorkerSettings
from worker.runner import run_experiment
run_experiment(Settings(), WorkerSettings(), int(sys.argv[1]))
"""


def test_a_run_resumes_from_the_store_on_a_worker_with_a_fresh_directory(
    pg_url: str,
    tmp_path: Path,
    s3_server: MotoServer,
    s3_bucket: str,
    caplog: pytest.LogCaptureFixture,
) -> None:
    env = {
        **os.environ,
        **s3_server.env(s3_bucket),
        "PYTHONPATH": str(ROOT),
        "RPG_DATABASE_URL": pg_url,
        "RPG_BROKER_URL": "",
        "RPG_HOME": str(tmp_path / "home"),
        "RPG_ARTIFACT_DIR": str(tmp_path / "host-a"),
        "RPG_LEASE_S": "2",
        "RPG_AUTO_MIGRATE": "false",
    }
    settings = Settings(
        database_url=pg_url,
        broker_url=None,
        home=tmp_path / "home",
        artifact_dir=tmp_path / "host-b",  # another host: nothing of host-a's directory here
        artifact_url=env["RPG_ARTIFACT_URL"],
        s3_endpoint_url=s3_server.url,
        lease_s=2,
        auto_migrate=False,
    )
    store = open_store(settings)
    sessions = sessions_for(pg_url)
    with sessions() as s:
        exp_id = crud.create_experiment(s, tiny_spec("moving", epochs=6, batch_size=16))
        s.commit()
    log = (tmp_path / "worker-a.log").open("wb")
    first = subprocess.Popen(  # a worker process, killed once its first checkpoint is stored
        [sys.executable, "-c", WORKER, str(exp_id)],
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    try:
        deadline = time.monotonic() + 90
        while not store.exists(checkpoint_key(exp_id)):
            assert time.monotonic() < deadline and first.poll() is None, "no checkpoint stored"
            time.sleep(0.05)
    finally:
        os.killpg(first.pid, signal.SIGKILL)
        first.wait()
        log.close()
    store.get_file(checkpoint_key(exp_id), tmp_path / "seen" / CHECKPOINT_NAME)
    stored_epoch = completed_epochs(tmp_path / "seen")
    assert stored_epoch is not None and 1 <= stored_epoch < 6
    caplog.set_level(logging.INFO)
    assert run_experiment(settings, WorkerSettings(), exp_id) == "succeeded"
    assert f"resuming from the store's checkpoint (epoch {stored_epoch}; here: None)" in caplog.text
    fresh = checkpoint_dir(settings.artifact_dir, exp_id)
    assert f"resumed moving from {fresh} at epoch {stored_epoch}" in caplog.text
    with sessions() as s:
        exp = _experiment(s, exp_id)
        result = crud.get_result(s, exp_id)
        record = crud.get_file(s, exp_id, "model")
    assert exp.status == "succeeded" and exp.attempts == 2
    assert result is not None and result["attempt"] == 2 and len(result["history"]) == 6
    # the model is in the store only (the worker's copy was scratch), and an API on a third
    # host streams it from there
    assert record is not None and store.size(record.path) == record.size
    assert not (settings.artifact_dir / record.path).exists()
    api = settings.model_copy(update={"artifact_dir": tmp_path / "host-c"})
    with TestClient(create_app(api)) as client:
        r = client.get(f"/api/experiments/{exp_id}/model")
    assert r.status_code == 200 and hashlib.sha256(r.content).hexdigest() == record.sha256
    assert int(r.headers["content-length"]) == record.size


def test_a_store_outage_mid_run_requeues_the_run_and_a_retry_succeeds(
    pg_url: str,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    for k, v in credentials_env().items():
        monkeypatch.setenv(k, v)
    server = MotoServer(tmp_path / "moto.log")
    try:
        bucket = server.make_bucket()
        settings = Settings(
            database_url=pg_url,
            broker_url=None,
            home=tmp_path / "home",
            artifact_dir=tmp_path / "art",
            artifact_url=f"s3://{bucket}/runs",
            s3_endpoint_url=server.url,
            s3_max_attempts=1,
            s3_connect_timeout_s=1.0,
            lease_s=30,
            auto_migrate=False,
        )
        sessions = sessions_for(pg_url)
        with sessions() as s:
            exp_id = crud.create_experiment(s, tiny_spec("outage", epochs=2))
            s.commit()
        local = checkpoint_dir(settings.artifact_dir, exp_id) / CHECKPOINT_NAME

        def outage() -> None:  # the store goes away once training has written a checkpoint
            deadline = time.monotonic() + 120
            while not local.exists() and time.monotonic() < deadline:
                time.sleep(0.01)
            server.stop()

        killer = threading.Thread(target=outage, daemon=True)
        killer.start()
        wcfg = WorkerSettings(max_attempts=3)
        caplog.set_level(logging.INFO)
        assert run_experiment(settings, wcfg, exp_id) == "requeued"
        assert "StoreUnavailable: the artifact store" in caplog.text  # the worker's log
        assert SECRET_KEY not in caplog.text and ACCESS_KEY not in caplog.text
        killer.join()
        with sessions() as s:
            exp = _experiment(s, exp_id)
            assert exp.status == "queued" and exp.attempts == 1
            assert crud.get_file(s, exp_id, "model") is None and crud.get_result(s, exp_id) is None
        error = exp.error or ""
        assert f"the artifact store s3://{bucket}/runs at {server.url} failed to " in error
        assert "StoreUnavailable" in error
        assert SECRET_KEY not in error and ACCESS_KEY not in error
        # the store is back (empty: moto keeps nothing); the retry resumes from this host's
        # checkpoint and stores the model
        server.start()
        server.make_bucket(bucket)
        assert run_experiment(settings, wcfg, exp_id) == "succeeded"
        with sessions() as s:
            exp = _experiment(s, exp_id)
            record = crud.get_file(s, exp_id, "model")
        assert exp.status == "succeeded" and exp.attempts == 2
        store = open_store(settings)
        assert record is not None and store.size(record.path) == record.size
        assert store.exists(checkpoint_key(exp_id))
    finally:
        server.stop()


def _experiment(session: Session, exp_id: int) -> Experiment:
    exp = crud.get_experiment(session, exp_id)
    assert exp is not None
    return exp
