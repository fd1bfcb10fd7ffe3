"""Process supervision under SIGKILL (real processes): the lifeline pipe and parent-death signal of
``worker.lifeline``, and ``rpg serve``'s home lock and worker, killed with ``kill -9``."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import httpx
import pytest

from worker.lifeline import HomeLock, HomeTakenError, descendants, holder_of

from .conftest import tiny_spec

ROOT = Path(__file__).resolve().parents[2]
PORT = 8124  # and 8125 for a second server


def _alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (OSError, IndexError):
        return False
    return state != "Z"


def _wait_gone(pids: list[int], timeout: float) -> list[int]:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        left = [p for p in pids if _alive(p)]
        if not left:
            return []
        time.sleep(0.1)
    return [p for p in pids if _alive(p)]


def _kill(pids: list[int]) -> None:
    for pid in pids:
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass


def _env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("RPG_")}
    env.update(PYTHONPATH=str(ROOT), OMP_NUM_THREADS="1", **extra)
    return env


# A parent that starts its child from a thread (so no parent-death signal: the pipe alone must
# do it); the child watches the lifeline and forks a grandchild (as Celery forks its pool) that
# watches it too; both then sleep. The parent prints the pids and sleeps.
PARENT = textwrap.dedent(
    """
    import subprocess, sys, threading, time
    from worker.lifeline import Lifeline
    line = Lifeline()
    child = "\\n".join([
        "import os, time",
        "from worker.lifeline import watch_lifeline",
        "assert watch_lifeline()",
        "pid = os.fork()",
        "if pid == 0:",
        "    assert watch_lifeline()",
        "    time.sleep(600)",
        "    os._exit(0)",
        "print(os.getpid(), pid, flush=True)",
        "time.sleep(600)",
    ])
    out = []
    def start():
        env = {**__import__("os").environ, **line.child_env()}
        out.append(subprocess.Popen([sys.executable, "-c", child], env=env,
                                    pass_fds=line.pass_fds))
    t = threading.Thread(target=start); t.start(); t.join()
    time.sleep(600)
    """
)


def test_the_lifeline_takes_a_child_and_its_fork_down_with_a_sigkilled_parent() -> None:
    parent = subprocess.Popen(
        [sys.executable, "-c", PARENT], env=_env(), stdout=subprocess.PIPE, text=True
    )
    try:
        assert parent.stdout is not None
        child, grandchild = (int(v) for v in parent.stdout.readline().split())
        time.sleep(0.3)  # the grandchild's watcher thread is up
        assert _alive(child) and _alive(grandchild)
        parent.kill()  # SIGKILL: no clean-up code of the parent runs
        parent.wait()
        left = _wait_gone([child, grandchild], 5.0)
        _kill(left)
        assert not left, f"still alive 5 s after their parent's SIGKILL: {left}"
    finally:
        if parent.poll() is None:
            parent.kill()


def test_without_a_lifeline_nothing_is_watched() -> None:
    out = subprocess.run(
        [
            sys.executable,
            "-c",
            "from worker.lifeline import watch_lifeline; print(watch_lifeline())",
        ],
        env=_env(),
        capture_output=True,
        text=True,
        check=True,
    )
    assert out.stdout.strip() == "False"


def test_the_home_lock_names_its_holder_and_is_free_once_released(tmp_path: Path) -> None:
    first = HomeLock(tmp_path)
    first.acquire(note="rpg serve on http://127.0.0.1:1")
    try:
        with pytest.raises(HomeTakenError) as err:
            HomeLock(tmp_path).acquire()
        assert err.value.holder == f"pid {os.getpid()}, rpg serve on http://127.0.0.1:1"
        assert holder_of(tmp_path) == err.value.holder
    finally:
        first.release()
    assert holder_of(tmp_path) is None
    with HomeLock(tmp_path):  # taken again
        assert holder_of(tmp_path) is not None


def _serve(home: Path, port: int, log: Path) -> subprocess.Popen[bytes]:
    cmd = [sys.executable, "-m", "rpg_core.cli", "serve", "--port", str(port), "--home", str(home)]
    with log.open("ab") as out:
        return subprocess.Popen(
            cmd, env=_env(), stdout=out, stderr=subprocess.STDOUT, start_new_session=True
        )


def _wait_up(url: str, srv: subprocess.Popen[bytes], log: Path, timeout: float = 90) -> None:
    deadline = time.monotonic() + timeout
    while True:
        try:
            if httpx.get(f"{url}/healthz", timeout=2).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        assert srv.poll() is None and time.monotonic() < deadline, log.read_text()[-3000:]
        time.sleep(0.3)


def _worker_and_pool(server: int, timeout: float = 90) -> list[int]:
    """The Celery worker below ``server`` and its pool child, once both are up: [worker, child]."""
    deadline = time.monotonic() + timeout
    while True:
        below = [p for p in descendants(server) if _alive(p)]
        workers = [p for p in below if _ppid(p) == server]
        if len(workers) == 1 and any(_ppid(p) == workers[0] for p in below):
            return [workers[0], *(p for p in below if p != workers[0])]
        assert time.monotonic() < deadline, f"no worker with a pool child below {server}"
        time.sleep(0.2)


def _ppid(pid: int) -> int:
    try:
        return int(Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[1])
    except (OSError, IndexError):
        return -1


def test_kill_9_of_rpg_serve_leaves_no_process_and_frees_its_home(tmp_path: Path) -> None:
    home, log = tmp_path / "home", tmp_path / "serve.log"
    url = f"http://127.0.0.1:{PORT}"
    srv = _serve(home, PORT, log)
    tree: list[int] = []
    try:
        _wait_up(url, srv, log)
        # kill -9 of the Celery worker alone: its pool child goes too, and the supervisor starts
        # another worker (from its watch thread: that one has only the lifeline pipe)
        first = _worker_and_pool(srv.pid)
        os.kill(first[0], signal.SIGKILL)
        left = _wait_gone(first, 5.0)
        assert not left, f"the killed worker's pool child outlived it by 5 s: {left}"
        restarted = _worker_and_pool(srv.pid)
        assert not set(restarted) & set(first)
        token = subprocess.run(
            [sys.executable, "-m", "rpg_core.cli", "token", "create", "kill9"],
            env=_env(RPG_HOME=str(home)),
            capture_output=True,
            text=True,
            check=True,
        ).stdout.strip()
        auth = {"Authorization": f"Bearer {token}"}
        spec = tiny_spec("long", epochs=200)
        r = httpx.post(f"{url}/api/experiments", json=spec, headers=auth, timeout=10)
        assert r.status_code == 201, r.text
        exp_id = r.json()["id"]
        deadline = time.monotonic() + 90
        while httpx.get(f"{url}/api/experiments/{exp_id}", headers=auth).json()["epoch"] in (
            None,
            0,
        ):
            assert time.monotonic() < deadline, "the job never started training"
            time.sleep(0.3)
        tree = descendants(srv.pid)
        assert len(tree) >= 2, f"expected the Celery worker and its pool child, got {tree}"

        # a second server on the same home is refused, naming the first one's pid
        second = subprocess.run(
            [sys.executable, "-m", "rpg_core.cli", "serve", "--port", str(PORT + 1)]
            + ["--home", str(home)],
            env=_env(),
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert second.returncode != 0
        assert f"pid {srv.pid}" in second.stderr and "already served" in second.stderr

        os.kill(srv.pid, signal.SIGKILL)
        srv.wait()
        left = _wait_gone(tree, 5.0)
        assert not left, f"processes of the killed rpg serve still alive after 5 s: {left}"
        assert holder_of(home) is None

        # and the home can be served again (it resumes the interrupted run)
        again = _serve(home, PORT + 1, log)
        try:
            _wait_up(f"http://127.0.0.1:{PORT + 1}", again, log)
            assert holder_of(home) == f"pid {again.pid}, rpg serve on http://127.0.0.1:{PORT + 1}"
        finally:
            tree2 = descendants(again.pid)
            os.killpg(again.pid, signal.SIGTERM)
            again.wait(timeout=30)
            _kill(tree2)
    finally:
        if srv.poll() is None:
            os.killpg(srv.pid, signal.SIGKILL)
            srv.wait()
        _kill(tree)


def test_the_demo_refuses_a_home_already_served(tmp_path: Path) -> None:
    home = tmp_path / ".rpg-studio"
    lock = HomeLock(home)
    lock.acquire(note="rpg serve on http://127.0.0.1:1")
    try:
        out = subprocess.run(
            [sys.executable, "-m", "worker.demo", "--port", str(PORT + 2), "--tiny"],
            cwd=tmp_path,
            env=_env(),
            capture_output=True,
            text=True,
            timeout=60,
        )
    finally:
        lock.release()
    assert out.returncode == 2
    assert f"pid {os.getpid()}, rpg serve on http://127.0.0.1:1" in out.stderr
    assert "already served" in out.stderr
    assert not (home / "serve.log").exists()  # refused before any server started
