"""Worker processes: one Celery worker per GPU (``CUDA_VISIBLE_DEVICES``), or CPU workers.

Each Celery worker runs one job at a time (concurrency 1, prefetch 1, late acks) in a child
process that is replaced after every job (``--max-tasks-per-child 1``: GPU memory and any leak
go with it). The supervisor restarts a worker that exits, and stops them all on SIGINT/SIGTERM.
Its workers die with it even when it is killed with SIGKILL (:mod:`worker.lifeline`: a
parent-death signal and a lifeline pipe every worker and pool child watches).
"""

from __future__ import annotations

import logging
import os
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

from .lifeline import Lifeline, preexec_for_this_thread

log = logging.getLogger(__name__)

# glibc's malloc in the training processes: keep freed memory instead of handing large blocks
# back to the kernel and faulting them in again at the next step (measured in
# docs/BENCHMARKS.md, issue 27: that system time made the ring's step load-sensitive, 1.03-1.04x
# the plain network's; with these, 1.003-1.007x and both networks 8-15% faster). The peak is
# unchanged; the process keeps it until the job ends (``--max-tasks-per-child 1``). A value set
# in the worker's environment wins.
TRAINING_MALLOC_ENV = {
    "MALLOC_MMAP_THRESHOLD_": str(4 << 30),
    "MALLOC_TRIM_THRESHOLD_": str(16 << 30),
}


def detect_gpus() -> list[str]:
    """GPU indices from ``nvidia-smi -L`` (no torch import); empty without a GPU."""
    exe = shutil.which("nvidia-smi")
    if exe is None:
        return []
    try:
        out = subprocess.run([exe, "-L"], capture_output=True, text=True, timeout=10, check=False)
    except (OSError, subprocess.TimeoutExpired):
        return []
    return [str(i) for i, line in enumerate(out.stdout.splitlines()) if line.startswith("GPU ")]


def parse_gpus(value: str | None) -> list[str] | None:
    """``--gpus``: ``0,1`` -> ["0", "1"]; ``auto``/None -> None (detect); ``cpu`` -> []."""
    if value is None or value == "auto":
        return None
    if value in ("cpu", "none", ""):
        return []
    parts = [p.strip() for p in value.split(",")]
    if not all(p.isdigit() for p in parts):
        from rpg_core.exceptions import RPGConfigError

        raise RPGConfigError(f"--gpus {value!r}: give GPU indices like 0,1 (or auto, or cpu)")
    return parts


def celery_command(queue: str, name: str, loglevel: str = "INFO") -> list[str]:
    """The command line of one single-job Celery worker on ``queue``."""
    return [
        sys.executable,
        "-m",
        "celery",
        "-A",
        "worker.app",
        "worker",
        "-Q",
        queue,
        "-n",
        name,
        "--concurrency",
        "1",
        "--prefetch-multiplier",
        "1",
        "--max-tasks-per-child",
        "1",
        "--pool",
        "prefork",
        "--without-gossip",
        "--without-mingle",
        "--without-heartbeat",
        "--loglevel",
        loglevel,
    ]


@dataclass
class Slot:
    """One worker process bound to one device (a GPU index, or "" for the CPU)."""

    name: str
    device: str
    process: subprocess.Popen[bytes] | None = None
    starts: int = 0


@dataclass
class Supervisor:
    """Starts, restarts and stops the Celery worker processes."""

    queue: str
    slots: list[Slot]
    env: Mapping[str, str] = field(default_factory=lambda: dict(os.environ))
    restart_delay_s: float = 1.0
    lifeline: Lifeline = field(default_factory=Lifeline)  # its workers die when it does

    @classmethod
    def for_devices(cls, queue: str, gpus: Sequence[str], cpu_workers: int) -> Supervisor:
        host = os.uname().nodename
        if gpus:
            slots = [Slot(f"rpg-gpu{g}@{host}", g) for g in gpus]
        else:
            slots = [Slot(f"rpg-cpu{i}@{host}", "") for i in range(max(cpu_workers, 1))]
        return cls(queue=queue, slots=slots)

    def devices_env(self) -> dict[str, str]:
        """The host's devices for ``worker.devices`` (``RPG_DEVICES``, ``RPG_DEVICE_LOCK_DIR``):
        this supervisor's GPUs, or its CPU slots ``cpu0``..., and one lock folder for them."""
        import tempfile
        from pathlib import Path

        devices = [s.device or f"cpu{i}" for i, s in enumerate(self.slots)]
        default = Path(tempfile.gettempdir()) / f"rpg-devices-{os.getuid()}-{self.queue}"
        return {
            "RPG_DEVICES": self.env.get("RPG_DEVICES") or ",".join(devices),
            "RPG_DEVICE_LOCK_DIR": self.env.get("RPG_DEVICE_LOCK_DIR") or str(default),
        }

    def start(self, slot: Slot) -> None:
        env = {**self.env, **self.devices_env(), "CUDA_VISIBLE_DEVICES": slot.device}
        if not slot.device and "OMP_NUM_THREADS" not in env:
            # CPU workers share the cores: oversubscribed OpenMP threads spin and run 5-20x slower.
            env["OMP_NUM_THREADS"] = str(max(1, (os.cpu_count() or 1) // len(self.slots)))
        for name, value in TRAINING_MALLOC_ENV.items():
            env.setdefault(name, value)
        env.update(self.lifeline.child_env())
        slot.process = subprocess.Popen(
            celery_command(self.queue, slot.name),
            env=env,
            pass_fds=self.lifeline.pass_fds,
            preexec_fn=preexec_for_this_thread(),  # prctl only: safe between fork and exec
        )
        slot.starts += 1
        log.info(
            "started %s (pid %d, device %r)", slot.name, slot.process.pid, slot.device or "cpu"
        )

    def start_all(self) -> None:
        for slot in self.slots:
            self.start(slot)

    def watch(self, stop: Sequence[bool]) -> None:
        """Restart exited workers until ``stop[0]`` becomes True."""
        while not stop[0]:
            for slot in self.slots:
                if slot.process is not None and slot.process.poll() is not None:
                    log.warning("%s exited (%s); restarting", slot.name, slot.process.returncode)
                    time.sleep(self.restart_delay_s)
                    if not stop[0]:
                        self.start(slot)
            time.sleep(0.5)

    def stop_all(self, timeout_s: float = 30.0) -> None:
        """Warm shutdown (SIGTERM: the running job's message is not acked and goes back)."""
        procs = [s.process for s in self.slots if s.process is not None]
        for p in procs:
            if p.poll() is None:
                p.send_signal(signal.SIGTERM)
        deadline = time.monotonic() + timeout_s
        for p in procs:
            try:
                p.wait(timeout=max(deadline - time.monotonic(), 0.1))
            except subprocess.TimeoutExpired:
                p.kill()
                p.wait()
