"""Real parts for the worker tests: a throwaway PostgreSQL database, Redis (a queue name of our
own), Celery worker subprocesses killed at the end, and the API app in-process."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest
import redis
from fastapi.testclient import TestClient
from sqlalchemy.orm import Session

from api import crud
from api.models import Experiment
from api.settings import Settings
from studio.app import create_app
from worker.config import WorkerSettings
from worker.process import celery_command
from worker.reconcile import ReconcilerThread
from worker.runner import sessions_for

from ..pg import throwaway_database

# RPG_TEST_REDIS_DB picks another database (parallel checkouts on one Redis)
REDIS_URL = f"redis://127.0.0.1:6379/{os.environ.get('RPG_TEST_REDIS_DB', '14')}"
LEASE_S = 3.0


def tiny_spec(
    name: str = "tiny", epochs: int = 3, ring: int | None = 2000, **train: Any
) -> dict[str, Any]:
    """A spec that trains in well under a second per epoch (8x8 synthetic images, width 1/8)."""
    return {
        "name": name,
        "model": {"arch": "resnet18", "width": 0.125},
        "rpg": {"ring_size": ring} if ring else None,
        "data": {
            "dataset": "synthetic",
            "image_size": 8,
            "num_train": 256,
            "num_val": 64,
            "num_classes": 4,
        },
        "train": {"epochs": epochs, "batch_size": 32, **train},
    }


@pytest.fixture(scope="session")
def pg_url() -> Iterator[str]:
    with throwaway_database("rpg_worker") as url:
        try:
            yield url
        finally:
            sessions_for.cache_clear()


@dataclass
class Stack:
    """One isolated service stack: its own queue, artifact dir and worker processes."""

    settings: Settings
    env: dict[str, str]
    client: TestClient
    auth: dict[str, str]
    workers: list[subprocess.Popen[bytes]] = field(default_factory=list)
    logs: list[Path] = field(default_factory=list)
    reconcilers: list[ReconcilerThread] = field(default_factory=list)

    @property
    def queue(self) -> str:
        return self.settings.dispatch_queue

    def session(self) -> Session:
        return sessions_for(self.settings.database_url)()

    def start_worker(self, **env: str) -> subprocess.Popen[bytes]:
        n = len(self.workers)
        log = Path(self.settings.artifact_dir).parent / f"worker{n}.log"
        with log.open("ab") as out:
            proc = subprocess.Popen(
                celery_command(self.queue, f"w{n}-{self.queue}@test", loglevel="INFO"),
                env={**self.env, **env},
                stdout=out,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        self.workers.append(proc)
        self.logs.append(log)
        return proc

    def start_reconciler(self) -> None:
        """The reconciler loop (as ``rpg worker`` and ``rpg serve`` run it), in a thread here."""
        thread = ReconcilerThread(self.settings, WorkerSettings(requeue_after_s=1, reconcile_s=0.5))
        thread.start()
        self.reconcilers.append(thread)

    def kill_worker(self, proc: subprocess.Popen[bytes]) -> None:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()

    def submit(self, spec: dict[str, Any]) -> int:
        r = self.client.post("/api/experiments", json=spec, headers=self.auth)
        assert r.status_code == 201, r.text
        return int(r.json()["id"])

    def experiment(self, exp_id: int) -> Experiment:
        with self.session() as s:
            exp = crud.get_experiment(s, exp_id)
            assert exp is not None
            return exp

    def wait(
        self, exp_id: int, until: Callable[[Experiment], bool], timeout: float = 60.0
    ) -> Experiment:
        deadline = time.monotonic() + timeout
        while True:
            exp = self.experiment(exp_id)
            if until(exp):
                return exp
            if time.monotonic() > deadline:
                tail = "".join(p.read_text()[-3000:] for p in self.logs if p.exists())
                pytest.fail(f"experiment {exp_id} stuck at {exp.status} {exp.error}\n{tail}")
            time.sleep(0.1)

    def wait_status(self, exp_id: int, *statuses: str, timeout: float = 60.0) -> Experiment:
        return self.wait(exp_id, lambda e: e.status in statuses, timeout)


def make_stack(pg_url: str, tmp: Path) -> Iterator[Stack]:
    queue = f"rpg-test-{uuid.uuid4().hex[:10]}"
    art = tmp / "artifacts"
    env = {
        **os.environ,
        "RPG_DATABASE_URL": pg_url,
        "RPG_BROKER_URL": REDIS_URL,
        "RPG_DISPATCH_QUEUE": queue,
        "RPG_ARTIFACT_DIR": str(art),
        "RPG_LEASE_S": str(LEASE_S),
        "RPG_PROGRESS_S": "0.2",
        "RPG_REQUEUE_AFTER_S": "1",
        "RPG_RECONCILE_S": "1",
        "RPG_AUTO_MIGRATE": "false",
        "OMP_NUM_THREADS": "1",
    }
    settings = Settings(
        database_url=pg_url,
        broker_url=REDIS_URL,
        dispatch_queue=queue,
        artifact_dir=art,
        lease_s=LEASE_S,
        auto_migrate=False,
    )
    app = create_app(settings)
    with TestClient(app) as client, sessions_for(pg_url)() as s:
        token = crud.create_token(s, f"worker-test-{queue}")
        stack = Stack(settings, env, client, {"Authorization": f"Bearer {token}"})
        try:
            yield stack
        finally:
            for thread in stack.reconcilers:
                thread.stop()
            for proc in stack.workers:
                stack.kill_worker(proc)
            r = redis.Redis.from_url(REDIS_URL)
            r.delete(queue)
            r.close()


@pytest.fixture
def stack(pg_url: str, tmp_path: Path) -> Iterator[Stack]:
    yield from make_stack(pg_url, tmp_path)


@pytest.fixture(scope="module")
def shared_stack(pg_url: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    """A stack with one worker already started, shared by a module's tests."""
    for st in make_stack(pg_url, tmp_path_factory.mktemp("stack")):
        st.start_worker()
        yield st


# --- `rpg serve` as a real process (embedded mode) ------------------------------------------
def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class Serve:
    """`rpg serve` as its own process group, started and waited for until /healthz answers."""

    def __init__(self, env: dict[str, str], port: int, log: Path) -> None:
        self.url = f"http://127.0.0.1:{port}"
        with log.open("ab") as out:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "rpg_core.cli", "serve", "--port", str(port)],
                env=env,
                stdout=out,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        deadline = time.monotonic() + 90
        while True:
            try:
                if httpx.get(f"{self.url}/healthz", timeout=2).status_code == 200:
                    return
            except httpx.HTTPError:
                pass
            assert time.monotonic() < deadline and self.proc.poll() is None, log.read_text()
            time.sleep(0.3)

    def experiment(self, exp_id: int) -> dict[str, Any]:
        out: dict[str, Any] = httpx.get(f"{self.url}/api/experiments/{exp_id}").json()
        return out

    def stop(self) -> None:
        os.killpg(self.proc.pid, signal.SIGTERM)
        try:
            self.proc.wait(timeout=60)
        finally:
            try:
                os.killpg(self.proc.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
