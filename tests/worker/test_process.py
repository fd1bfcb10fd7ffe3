"""Unit tests of the worker supervisor (Popen is replaced: no process starts here)."""

from __future__ import annotations

import os
from typing import Any

import pytest

from rpg_core import RPGConfigError
from worker import process


class FakePopen:
    started: list[dict[str, str]] = []

    def __init__(self, cmd: list[str], env: dict[str, str], **kw: Any) -> None:
        self.pid = 1234
        FakePopen.started.append(env)
        assert "--concurrency" in cmd and cmd[cmd.index("--concurrency") + 1] == "1"
        # the worker gets the supervisor's lifeline (and, started from the main thread, the
        # parent-death signal): it dies with the supervisor (worker.lifeline)
        assert kw["pass_fds"] == (int(env["RPG_LIFELINE_FD"]),)
        assert kw["preexec_fn"] is not None


def test_cpu_workers_split_the_cores_and_gpu_workers_get_one_device(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(process.subprocess, "Popen", FakePopen)
    FakePopen.started = []
    cpu = process.Supervisor.for_devices("q", [], cpu_workers=2)
    cpu.env = {k: v for k, v in os.environ.items() if k != "OMP_NUM_THREADS"}
    cpu.start_all()
    threads = {e["OMP_NUM_THREADS"] for e in FakePopen.started}
    assert threads == {str(max(1, (os.cpu_count() or 1) // 2))}
    FakePopen.started = []
    gpu = process.Supervisor.for_devices("q", ["0", "3"], cpu_workers=0)
    gpu.env = {}
    gpu.start_all()
    assert [e["CUDA_VISIBLE_DEVICES"] for e in FakePopen.started] == ["0", "3"]
    assert all("OMP_NUM_THREADS" not in e for e in FakePopen.started)


def test_workers_keep_freed_memory_unless_told_otherwise(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(process.subprocess, "Popen", FakePopen)
    FakePopen.started = []
    sup = process.Supervisor.for_devices("q", [], cpu_workers=2)
    sup.env = {"MALLOC_TRIM_THRESHOLD_": "1024"}
    sup.start_all()
    for env in FakePopen.started:
        assert (
            env["MALLOC_MMAP_THRESHOLD_"] == process.TRAINING_MALLOC_ENV["MALLOC_MMAP_THRESHOLD_"]
        )
        assert env["MALLOC_TRIM_THRESHOLD_"] == "1024"  # the operator's setting wins


@pytest.mark.parametrize(("value", "expected"), [("0,1", ["0", "1"]), ("cpu", []), ("auto", None)])
def test_parse_gpus(value: str, expected: Any) -> None:
    assert process.parse_gpus(value) == expected


def test_parse_gpus_rejects_names() -> None:
    with pytest.raises(RPGConfigError, match="--gpus 'a,b'"):
        process.parse_gpus("a,b")
