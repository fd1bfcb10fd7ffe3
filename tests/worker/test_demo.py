"""The demo as a user runs it: one home, the token flow from its printout, SIGTERM/SIGHUP leaving
no process and no port behind, a taken port refused before anything starts (real processes)."""

from __future__ import annotations

import os
import queue
import re
import signal
import socket
import sqlite3
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from rpg_core.spec import parse_spec
from worker.demo import demo_sweep, sweep_specs

from .conftest import tiny_spec

ROOT = Path(__file__).resolve().parents[2]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _port_free(port: int) -> bool:
    with socket.socket() as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


def _env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("RPG_")}
    env.update(PYTHONPATH=str(ROOT), OMP_NUM_THREADS="1", **extra)
    return env


def _with_home(home: Path) -> list[int]:
    """Live processes whose environment names this home (the server, its worker, their pool)."""
    needle = f"RPG_HOME={home}".encode()
    out = []
    for environ in Path("/proc").glob("[0-9]*/environ"):
        try:
            if needle in environ.read_bytes().split(b"\0"):
                out.append(int(environ.parent.name))
        except OSError:
            continue
    return [p for p in out if p != os.getpid()]


class Demo:
    """``python -m worker.demo`` in a fresh folder (no RPG_* variable): its stdout, line by line."""

    def __init__(self, cwd: Path, port: int, *args: str) -> None:
        self.cwd, self.port = cwd, port
        self.home = cwd / ".rpg-studio"
        self.lines: queue.Queue[str] = queue.Queue()
        self.seen: list[str] = []
        cmd = [sys.executable, "-m", "worker.demo", "--port", str(port), "--tiny", *args]
        self.proc = subprocess.Popen(
            cmd, cwd=cwd, env=_env(), stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
        )
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            self.lines.put(line.rstrip("\n"))

    def wait_for(self, text: str, timeout: float = 120.0) -> str:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                line = self.lines.get(timeout=0.5)
            except queue.Empty:
                if self.proc.poll() is not None and self.lines.empty():
                    break
                continue
            self.seen.append(line)
            if text in line:
                return line
        raise AssertionError(
            f"the demo never printed {text!r}; it printed:\n" + "\n".join(self.seen)
        )

    def printed(self) -> list[str]:
        """Every line printed so far (those not waited for included)."""
        while True:
            try:
                self.seen.append(self.lines.get(timeout=0.2))
            except queue.Empty:
                return self.seen

    def exports(self) -> dict[str, str]:
        out = {}
        for name in ("RPG_HOME", "RPG_API_URL", "RPG_API_TOKEN"):
            line = self.wait_for(f"export {name}=", timeout=30)
            out[name] = line.split("=", 1)[1]
        return out

    def stop(self, sig: signal.Signals) -> None:
        """Send ``sig`` to the demo alone (as `kill PID` does) and expect everything gone."""
        self.proc.send_signal(sig)
        try:
            self.proc.wait(timeout=60)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            raise
        deadline = time.monotonic() + 10
        while (_with_home(self.home.resolve()) or not _port_free(self.port)) and (
            time.monotonic() < deadline
        ):
            time.sleep(0.2)
        left = _with_home(self.home.resolve())
        for pid in left:  # clean up before failing
            os.kill(pid, signal.SIGKILL)
        assert not left, f"processes left behind after {sig.name}: {left}"
        assert _port_free(self.port), f"port {self.port} still held after {sig.name}"

    def kill(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()
        for pid in _with_home(self.home.resolve()):
            os.kill(pid, signal.SIGKILL)


@pytest.fixture
def demo_dir(tmp_path: Path) -> Iterator[Path]:
    yield tmp_path


def _rpg(
    args: list[str], env: dict[str, str], cwd: Path, check: bool = True
) -> subprocess.CompletedProcess[str]:
    out = subprocess.run(
        [sys.executable, "-m", "rpg_core.cli", *args],
        env=env,
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=120,
    )
    if check:
        assert out.returncode == 0, out.stderr
    return out


def test_a_one_epoch_demo_sweep_is_valid() -> None:
    # `python -m worker.demo --epochs 1` generated milestones [0] and died with a 422
    specs = sweep_specs(1)
    assert len(specs) == 5
    for s in specs:
        parse_spec(s)
    assert {tuple(s["tags"]) for s in specs} == {("demo", "rpg"), ("demo", "plain")}


def test_the_demo_submits_one_sweep() -> None:
    sweep = demo_sweep(3)
    assert sweep["name"] == "demo" and sweep["grid"]["rpg.ring_size"]


@pytest.mark.e2e
def test_demo_token_flow_from_its_printout_then_sigterm_leaves_nothing(tmp_path: Path) -> None:
    cwd = tmp_path / "clone"
    cwd.mkdir()
    port = _free_port()
    demo = Demo(cwd, port, "--no-wait")
    try:
        ex = demo.exports()
        assert ex["RPG_HOME"] == str(cwd / ".rpg-studio")
        assert ex["RPG_API_URL"] == f"http://127.0.0.1:{port}"
        demo.wait_for("queued")
        elsewhere = tmp_path / "another-shell"
        elsewhere.mkdir()
        spec = elsewhere / "spec.yaml"
        spec.write_text(yaml.safe_dump(tiny_spec("from-shell", epochs=1)))
        # another shell, another folder, the two pasted exports: submit, status
        out = _rpg(["submit", str(spec)], _env(**ex), elsewhere)
        assert re.fullmatch(r"experiment \d+ queued\n", out.stdout), out
        assert f"server http://127.0.0.1:{port} (RPG_API_URL)" in out.stderr
        assert "demo-ring_size_500" in _rpg(["status"], _env(**ex), elsewhere).stdout
        # `rpg token create` in the clone, no variable: the same home as the demo's server
        created = _rpg(["token", "create", "me"], _env(), cwd)
        assert str(cwd / ".rpg-studio" / "rpg-studio.db") in created.stderr
        token = created.stdout.strip()
        # ... and `rpg submit` there finds the server in the home's server.json
        out = _rpg(["submit", str(spec), "--token", token], _env(), cwd)
        assert re.fullmatch(r"experiment \d+ queued\n", out.stdout), out.stderr
        assert "server.json" in out.stderr
        # a token from elsewhere is refused with the way to get one
        bad = _rpg(
            ["submit", str(spec)],
            _env(RPG_API_URL=ex["RPG_API_URL"], RPG_API_TOKEN="x"),
            cwd,
            check=False,
        )
        assert bad.returncode == 2
        assert "rpg token create" in bad.stderr and "RPG_API_TOKEN" in bad.stderr
        demo.stop(signal.SIGTERM)
    finally:
        demo.kill()


@pytest.mark.e2e
@pytest.mark.parametrize(("sig", "said"), [(signal.SIGHUP, "SIGHUP"), (signal.SIGINT, "Ctrl-C")])
def test_sighup_or_ctrl_c_stops_the_demo_and_its_server_and_says_why(
    tmp_path: Path, sig: signal.Signals, said: str
) -> None:
    port = _free_port()
    demo = Demo(tmp_path, port, "--no-wait")
    try:
        demo.wait_for("queued")
        demo.stop(sig)
        stopping = [ln for ln in demo.printed() if ln.startswith("stopping")]
        assert stopping and stopping[0].startswith(f"stopping ({said}): the server and its worker")
    finally:
        demo.kill()


@pytest.mark.e2e
def test_a_taken_port_is_refused_before_anything_starts(tmp_path: Path) -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        s.listen()
        port = s.getsockname()[1]
        out = subprocess.run(
            [sys.executable, "-m", "worker.demo", "--port", str(port), "--tiny"],
            cwd=tmp_path,
            env=_env(),
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert out.returncode == 2
        assert f"port {port}" in out.stderr and f"make demo PORT={port + 10}" in out.stderr
        assert not (tmp_path / ".rpg-studio").exists()  # nothing started, nothing submitted
        serve = _rpg(["serve", "--port", str(port)], _env(), tmp_path, check=False)
        assert serve.returncode == 2
        assert f"port {port} on 127.0.0.1 is already in use" in serve.stderr


@pytest.mark.e2e
def test_make_demo_takes_the_port(tmp_path: Path) -> None:
    import shutil

    if shutil.which("make") is None:
        pytest.skip("make is not installed")
    venv = Path(sys.executable).parent.parent
    out = subprocess.run(
        ["make", "-n", "demo", "PORT=8123", f"VENV={venv}"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert out.returncode == 0, out.stderr
    assert "-m worker.demo --port 8123" in out.stdout


def _db(home: Path, sql: str) -> list[tuple[Any, ...]]:
    with sqlite3.connect(home / "rpg-studio.db") as db:
        return db.execute(sql).fetchall()


def test_a_restarted_demo_serves_its_sweep_and_resumes_the_interrupted_run_first(
    tmp_path: Path,
) -> None:
    port, epochs = _free_port(), 400  # a run still training when the demo is stopped
    demo = Demo(tmp_path, port, "--epochs", str(epochs))
    try:
        demo.wait_for("queued")
        line = demo.wait_for(f"epoch 2/{epochs}", timeout=240)  # one line per epoch per run
        name = line.split()[0]
        assert f"{name:<22} epoch 1/{epochs}" in "\n".join(demo.seen)
        demo.stop(signal.SIGTERM)
        assert "stopping (SIGTERM)" in "\n".join(demo.printed())
        left = dict(_db(demo.home, "SELECT name, status FROM experiments"))
        assert left[name] == "running" and len(left) == 4  # tiny: 3 rings, 1 plain width
        waiting = sorted(n for n, status in left.items() if status == "queued")
        assert len(waiting) == 3

        demo = Demo(tmp_path, port, "--epochs", str(epochs))  # the same home, the same sweep
        found = demo.wait_for("already in this home")
        assert found.startswith("sweep 1 (4 experiments: ") and "not submitting it again" in found
        demo.wait_for("run first, before the queued ones")
        note = demo.wait_for(f" {name}: ")
        done = int(re.search(r"after epoch (\d+)", note)[1])  # type: ignore[index]
        assert done >= 2 and "it resumes from its checkpoint" in note
        # the terminal follows it again, from its checkpoint, before any queued run starts
        demo.wait_for(f"{name:<22} epoch {done + 1}/{epochs}", timeout=240)
        rows = _db(demo.home, "SELECT name, status, started_at FROM experiments")
        assert {n: st for n, st, _ in rows}[name] == "running"
        assert sorted(n for n, st, started in rows if st == "queued" and started is None) == waiting
        assert _db(demo.home, "SELECT count(*) FROM sweeps") == [(1,)]
        assert not any("epoch" in ln and name not in ln for ln in demo.printed())
        demo.stop(signal.SIGTERM)
    finally:
        demo.kill()


def test_the_demo_says_why_it_fits_no_law_when_a_run_is_perfect(
    capsys: pytest.CaptureFixture[str],
) -> None:
    """A long demo on the tiny data reaches val acc 1.0: its error 0 cannot be fitted in log
    space, so the demo says so instead of dying at the end of its sweep (found in CI)."""
    from worker.demo import _print_fit

    rows = [
        {"backbone_params": p, "best_val_acc": a, "status": "succeeded", "tags": ["rpg"]}
        for p, a in ((1000, 0.8), (4000, 0.9), (16000, 1.0))
    ]
    _print_fit("http://x", rows)
    out = capsys.readouterr().out
    assert "not fitted: 1 of 3 RPG runs reached val acc 1.000" in out
    rows[2]["best_val_acc"] = 0.95
    _print_fit("http://x", rows)
    assert "power law over 3 RPG runs" in capsys.readouterr().out
