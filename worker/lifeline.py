"""Children that die with their server, and one server per home.

``rpg serve`` (and ``rpg worker``) start Celery worker processes, which fork pool children that
train. None of them may outlive the server, even when it is killed with SIGKILL (no clean-up code
runs then). Two mechanisms, both needed:

* **Parent-death signal** (Linux ``prctl(PR_SET_PDEATHSIG, SIGKILL)``, :func:`die_with_parent`):
  the kernel kills the child when the thread that forked it ends. That is the process only for
  children forked by the main thread (a worker restarted by the supervisor's watch thread would
  be killed when that thread ends at shutdown, before its warm stop), so :func:`child_preexec`
  sets it only then. Celery sets it in its prefork pool children itself.
* **A lifeline pipe** (:class:`Lifeline`, portable): the server holds the only write end; every
  child gets the read end (``pass_fds``, its number in ``RPG_LIFELINE_FD``) and, once started,
  a thread that blocks reading it (:func:`watch_lifeline`, from the Celery signals
  ``worker_init`` and ``worker_process_init``). When the server dies in any way, the kernel
  closes the write end, the read returns end-of-file, and the child kills its own descendants
  and itself. The fd is inherited by Celery's pool children too, so they do not depend on the
  Celery main process being alive.

:class:`HomeLock` is ``fcntl.flock`` on ``HOME/serve.lock``, held for the server's lifetime (the
kernel releases it when the process dies, however it dies); the holder's PID is written inside
for the message a second server gets.
"""

from __future__ import annotations

import ctypes
import logging
import os
import signal
import stat
import sys
import threading
from collections.abc import Callable
from pathlib import Path
from typing import IO, Any

log = logging.getLogger(__name__)

LIFELINE_ENV = "RPG_LIFELINE_FD"
PR_SET_PDEATHSIG = 1
LOCK_FILE = "serve.lock"


# --- parent-death signal -----------------------------------------------------------------------
def _load_prctl() -> Any:
    if not sys.platform.startswith("linux"):
        return None
    try:
        return ctypes.CDLL(None, use_errno=True).prctl
    except (OSError, AttributeError):
        return None


_prctl: Any = None  # libc's prctl, looked up in the parent (never between fork and exec)


def die_with_parent(sig: int = signal.SIGKILL) -> bool:
    """Ask the kernel to send ``sig`` to this process when its parent (thread) ends. Linux only;
    returns whether it was set."""
    global _prctl
    if _prctl is None:
        _prctl = _load_prctl()
    return _prctl is not None and int(_prctl(PR_SET_PDEATHSIG, int(sig), 0, 0, 0)) == 0


def _child_preexec() -> None:  # pragma: no cover - runs in the child between fork and exec
    if _prctl is not None:
        _prctl(PR_SET_PDEATHSIG, int(signal.SIGKILL), 0, 0, 0)


def preexec_for_this_thread() -> Callable[[], None] | None:
    """The ``preexec_fn`` for a child forked from the calling thread: SIGKILL at the parent's
    death, only from the main thread (see the module's docstring); None elsewhere (the
    lifeline covers those)."""
    global _prctl
    if threading.current_thread() is not threading.main_thread():
        return None
    if _prctl is None:
        _prctl = _load_prctl()
    return _child_preexec if _prctl is not None else None


# --- lifeline pipe -----------------------------------------------------------------------------
class Lifeline:
    """A pipe whose write end only this process holds; children watch the read end."""

    def __init__(self) -> None:
        self.read_fd, self._write_fd = os.pipe()  # both non-inheritable (O_CLOEXEC)

    def child_env(self) -> dict[str, str]:
        return {LIFELINE_ENV: str(self.read_fd)}

    @property
    def pass_fds(self) -> tuple[int, ...]:
        return (self.read_fd,)

    def close(self) -> None:
        for fd in (self.read_fd, self._write_fd):
            try:
                os.close(fd)
            except OSError:
                pass


def _lifeline_fd() -> int | None:
    raw = os.environ.get(LIFELINE_ENV, "")
    if not raw.isdigit():
        return None
    fd = int(raw)
    try:
        is_pipe = stat.S_ISFIFO(os.fstat(fd).st_mode)
    except OSError:
        return None
    return fd if is_pipe else None  # not inherited here (the number may name another file)


_watching: int | None = None  # the pid whose watcher thread runs (a forked child has none)


def watch_lifeline() -> bool:
    """In a supervised child: a daemon thread that kills this process (and what it started)
    when the server's lifeline closes. No-op outside one; once per process. Returns whether a
    watcher runs."""
    global _watching
    fd = _lifeline_fd()
    if fd is None:
        return False
    if _watching == os.getpid():
        return True
    _watching = os.getpid()
    threading.Thread(target=_watch, args=(fd,), name="rpg-lifeline", daemon=True).start()
    return True


def _watch(fd: int) -> None:
    while True:
        try:
            data = os.read(fd, 1)
        except InterruptedError:  # pragma: no cover - retried by Python since PEP 475
            continue
        except OSError:
            data = b""
        if not data:
            break
    log.warning("the server that started this process is gone; exiting (pid %d)", os.getpid())
    kill_all(descendants(os.getpid()))
    os.kill(os.getpid(), signal.SIGKILL)


# --- process tree --------------------------------------------------------------------------------
def descendants(pid: int) -> list[int]:
    """The processes below ``pid`` (Linux /proc; empty elsewhere)."""
    children: dict[int, list[int]] = {}
    for stat_file in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat_file.read_text().rsplit(")", 1)[1].split()
        except (OSError, IndexError):
            continue
        children.setdefault(int(fields[1]), []).append(int(stat_file.parent.name))
    out, todo = [], [pid]
    while todo:
        for child in children.get(todo.pop(), []):
            out.append(child)
            todo.append(child)
    return out


def kill_all(pids: list[int]) -> None:
    for pid in pids:
        try:
            os.kill(pid, signal.SIGKILL)
        except (ProcessLookupError, PermissionError):
            pass


# --- one server per home -----------------------------------------------------------------------
class HomeTakenError(Exception):
    """Another live process holds the home's lock."""

    def __init__(self, home: Path, holder: str) -> None:
        self.home, self.holder = home, holder
        super().__init__(holder)


class HomeLock:
    """``flock`` on ``HOME/serve.lock`` for the server's lifetime, its PID (and URL) inside."""

    def __init__(self, home: Path) -> None:
        self.path = Path(home) / LOCK_FILE
        self._file: IO[str] | None = None

    def acquire(self, note: str = "") -> None:
        """Take the lock or raise :class:`HomeTakenError` naming the holder (``pid N ...``)."""
        import fcntl

        self.path.parent.mkdir(parents=True, exist_ok=True)
        f = self.path.open("a+", encoding="utf-8")  # never truncated before the lock is ours
        try:
            fcntl.flock(f.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            f.seek(0)
            holder = f.read().strip() or "a process that has not written its pid yet"
            f.close()
            raise HomeTakenError(self.path.parent, holder) from None
        f.seek(0)
        f.truncate()
        f.write(f"pid {os.getpid()}{f', {note}' if note else ''}\n")
        f.flush()
        self._file = f

    def release(self) -> None:
        if self._file is None:
            return
        try:
            self._file.seek(0)
            self._file.truncate()
        except OSError:
            pass
        self._file.close()  # closing drops the flock
        self._file = None

    def __enter__(self) -> HomeLock:
        self.acquire()
        return self

    def __exit__(self, *_exc: object) -> None:
        self.release()


def holder_of(home: Path) -> str | None:
    """Who holds ``home``'s lock (``pid N ...``), or None when it is free (a real lock test:
    taken and released at once)."""
    lock = HomeLock(home)
    try:
        lock.acquire()
    except HomeTakenError as err:
        return err.holder
    lock.release()
    return None
