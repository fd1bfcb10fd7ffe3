"""A host's devices and their allocation to jobs: all or nothing, with file locks.

Whoever starts a host's Celery workers (:class:`worker.process.Supervisor`, or a test) names the
host's devices in ``RPG_DEVICES`` (GPU indices ``0,1,2,3``, or CPU slots ``cpu0,cpu1``) and a
lock folder ``RPG_DEVICE_LOCK_DIR`` that the host's workers share. A job asking for N devices
(``train.devices``) takes N free devices of its host at once: a non-blocking ``flock`` on each
device's file, every one given back as soon as one is held by another job. No job ever holds
some devices while it waits for others, so two jobs of N devices never deadlock each other on a
host (:func:`allocate`); a job that finds too few free goes back to the queue with a note
(``lifecycle.release``) and the reconciler sends it again. The kernel drops a job's locks when
its process ends, ``kill -9`` included.

Without ``RPG_DEVICES`` a worker has one device, its own (``CUDA_VISIBLE_DEVICES``, or the
CPU), and no lock: one job per worker, as before data-parallel runs.
"""

from __future__ import annotations

import fcntl
import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

DEVICES_ENV, LOCK_DIR_ENV = "RPG_DEVICES", "RPG_DEVICE_LOCK_DIR"


@dataclass(frozen=True)
class HostDevices:
    """This worker's view of its host's devices."""

    devices: tuple[str, ...]  # every device of the host ("0", "1" or "cpu0", "cpu1")
    own: str  # this worker's device (taken first when free)
    lock_dir: Path | None  # None: a worker of one device, no sharing

    @property
    def kind(self) -> str:
        return "cpu" if all(d.startswith("cpu") for d in self.devices) else "gpu"

    def free(self) -> int:
        """How many devices no job holds right now (a snapshot)."""
        alloc = allocate(self, len(self.devices))
        if alloc is not None:
            alloc.release()
            return len(self.devices)
        held = 0
        for d in self.devices:
            one = _lock(self, d)
            if one is None:
                held += 1
            else:
                os.close(one)
        return len(self.devices) - held


def host_devices(env: Mapping[str, str] | None = None) -> HostDevices:
    """The devices ``RPG_DEVICES`` names (this worker's own first, if it is among them)."""
    env = os.environ if env is None else env
    visible = env.get("CUDA_VISIBLE_DEVICES", "")
    own = visible.split(",")[0] if visible else "cpu0"
    named = tuple(d.strip() for d in env.get(DEVICES_ENV, "").split(",") if d.strip())
    lock_dir = env.get(LOCK_DIR_ENV)
    if not named or not lock_dir:
        return HostDevices((own,), own, None)
    return HostDevices(named, own if own in named else named[0], Path(lock_dir))


@dataclass
class Allocation:
    """Devices a job holds until :meth:`release` (or its process ends)."""

    devices: list[str]
    fds: list[int] = field(default_factory=list)

    def release(self) -> None:
        for fd in self.fds:
            os.close(fd)  # closing the descriptor drops its flock
        self.fds.clear()

    def cuda_visible(self) -> str:
        """``CUDA_VISIBLE_DEVICES`` for the job ("" on CPU slots)."""
        return ",".join(d for d in self.devices if not d.startswith("cpu"))

    def __enter__(self) -> Allocation:
        return self

    def __exit__(self, *_exc: object) -> None:
        self.release()


def _lock(host: HostDevices, device: str) -> int | None:
    assert host.lock_dir is not None
    host.lock_dir.mkdir(parents=True, exist_ok=True)
    fd = os.open(host.lock_dir / f"device-{device}.lock", os.O_RDWR | os.O_CREAT, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        os.close(fd)
        return None
    return fd


def allocate(host: HostDevices, n: int) -> Allocation | None:
    """``n`` devices of the host, all at once (this worker's own first), or None when fewer
    than ``n`` are free (nothing is held then)."""
    if n > len(host.devices):
        return None
    if host.lock_dir is None:
        return Allocation([host.own])
    order = [host.own, *(d for d in host.devices if d != host.own)]
    alloc = Allocation([])
    for device in order:
        fd = _lock(host, device)
        if fd is None:
            continue
        alloc.devices.append(device)
        alloc.fds.append(fd)
        if len(alloc.devices) == n:
            return alloc
    alloc.release()  # all or nothing: never hold some while waiting for the rest
    return None
