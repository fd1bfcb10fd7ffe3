"""SIGTERM to ``rpg serve`` while it is flooded with requests: it stops within the drain time,
restarts no worker on the way out, and leaves no process and no port behind (issue 16, item 7)."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import httpx
import pytest

from .conftest import Serve, free_port, tiny_spec

pytestmark = pytest.mark.e2e  # starts real server / worker processes


def _group_alive(pgid: int) -> bool:
    try:
        os.killpg(pgid, 0)
    except ProcessLookupError:
        return False
    return True


def test_sigterm_under_load_stops_fast_and_restarts_no_worker(tmp_path: Path) -> None:
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("RPG_")}
    env.update(OMP_NUM_THREADS="1", RPG_HOME=str(tmp_path / "home"))
    log_path = tmp_path / "serve.log"
    serve = Serve(env, port, log_path)
    srv, url = serve.proc, serve.url
    stop_flood = threading.Event()
    try:
        token = subprocess.run(
            [sys.executable, "-m", "rpg_core.cli", "token", "create", "flood"],
            env=env, capture_output=True, text=True, check=True,
        ).stdout.strip()  # fmt: skip
        auth = {"Authorization": f"Bearer {token}"}
        answered: list[int] = []

        def flood() -> None:  # bounded: stops with the event or after 60 s
            end = time.monotonic() + 60
            with httpx.Client(base_url=url, headers=auth, timeout=30) as c:
                while not stop_flood.is_set() and time.monotonic() < end:
                    try:
                        r = c.post("/api/experiments", json=tiny_spec("flood", epochs=1))
                        answered.append(r.status_code)
                        c.get("/api/experiments", params={"limit": 50})
                    except httpx.HTTPError:
                        return  # the server went away: that is the point

        threads = [threading.Thread(target=flood, daemon=True) for _ in range(40)]
        for t in threads:
            t.start()
        time.sleep(4)  # the queue fills, the worker is busy
        assert answered, "the flood got no answer before the stop"
        t0 = time.monotonic()
        os.killpg(srv.pid, signal.SIGTERM)  # the whole group, as make demo's stop and Ctrl-C do
        srv.wait(timeout=45)
        took = time.monotonic() - t0
        assert took < 30, f"rpg serve took {took:.1f} s to stop under load"
        deadline = time.monotonic() + 15
        while _group_alive(srv.pid) and time.monotonic() < deadline:
            time.sleep(0.2)
        assert not _group_alive(srv.pid), "a worker or its pool child outlived rpg serve"
        with socket.socket() as s:  # nothing listens: the next rpg serve can take the port
            s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as its port check does
            s.bind(("127.0.0.1", port))
    finally:
        stop_flood.set()
        if srv.poll() is None:
            os.killpg(srv.pid, signal.SIGKILL)
            srv.wait()
    text = log_path.read_text()
    after = text.split("stopping", 1)[-1] if "stopping" in text else text
    assert "restarting" not in after, text[-3000:]
