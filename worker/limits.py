"""The memory limit of a job's process, so that a wrong estimate kills the job, not the machine.

The limit is ``RLIMIT_DATA``, set in the Celery child process that runs the job (a fresh child
per job: ``--max-tasks-per-child 1``), around the job only. Why this one:

- ``RLIMIT_AS`` counts address space, not memory: CUDA reserves tens of GiB of virtual address
  space when it initialises (unified addressing), and torch's shared libraries map another 1-2
  GiB, so any useful ``RLIMIT_AS`` breaks GPU jobs and a CPU job's figure says little.
- A cgroup (v2 ``memory.max``) needs a delegated, writable cgroup, which a worker started by
  hand, by ``rpg serve`` or in a container usually does not have (this project's build machine
  has the v1 hierarchy, managed by its host); and over its limit the kernel's OOM killer sends
  SIGKILL, so the job could not say why it ended.
- ``RLIMIT_DATA`` (enforced since Linux 4.7) counts the private writable mappings: the heap and
  the anonymous mappings that malloc, numpy and torch's CPU allocator make for tensors; not the
  libraries' file mappings, nor inaccessible (``PROT_NONE``) reservations. Unprivileged, per
  process, inherited by DataLoader workers. GPU memory is the device's own (with its own
  out-of-memory error); how the CUDA driver's host mappings count against RLIMIT_DATA has not
  been measured on a GPU machine yet, so by default a worker that sees a GPU sets no limit
  (:func:`job_memory_limit`; ``RPG_JOB_MEMORY_LIMIT_BYTES`` sets one anyway).

Over the limit an allocation fails with ENOMEM: Python raises ``MemoryError``, numpy
``_ArrayMemoryError``, torch ``RuntimeError: ... can't allocate memory``, in the job's own
process, so :mod:`worker.runner` fails the job once with "exceeded the memory limit of N GiB"
(not retried: the same job needs the same memory) and the worker takes the next job. A C
library that aborts on a failed allocation instead kills the job's process; that ends as any
worker death does (retried up to ``max_attempts``).
"""

from __future__ import annotations

import logging
import os
import resource
from collections.abc import Iterator, Mapping
from contextlib import contextmanager

from rpg_core.training.memory import gib, physical_memory_bytes

log = logging.getLogger(__name__)

__all__ = ["is_out_of_memory", "job_memory_limit", "memory_limit", "out_of_memory_message"]

# torch's and the C++ runtime's words for a failed host allocation
_OOM_WORDS = ("can't allocate memory", "cannot allocate memory", "std::bad_alloc",
              "DefaultCPUAllocator: not enough memory")  # fmt: skip


def sees_a_gpu(environ: Mapping[str, str] | None = None) -> bool:
    """Whether a job of this process could train on a GPU (``CUDA_VISIBLE_DEVICES``, else
    ``nvidia-smi``; no torch import)."""
    env = os.environ if environ is None else environ
    visible = env.get("CUDA_VISIBLE_DEVICES")
    if visible is not None:
        return visible.strip() not in ("", "-1")
    from .process import detect_gpus

    return bool(detect_gpus())


def job_memory_limit(
    budget_bytes: int, configured: int | None, *, gpu: bool | None = None
) -> int | None:
    """The limit a job runs under: ``configured`` (``RPG_JOB_MEMORY_LIMIT_BYTES``; 0: none), or
    by default twice the estimate's budget (the estimate is within 2x of the measured peak),
    at most 90 % of physical memory.

    By default a worker that sees a GPU runs its jobs without a limit: RLIMIT_DATA with the
    CUDA driver's host mappings (pinned buffers, its own heaps) has not been measured on a GPU
    machine yet; set ``RPG_JOB_MEMORY_LIMIT_BYTES`` to limit GPU jobs too."""
    if configured is not None:
        return configured or None
    if sees_a_gpu() if gpu is None else gpu:
        return None
    physical = physical_memory_bytes()
    limit = 2 * budget_bytes
    return min(limit, int(physical * 0.9)) if physical else limit


@contextmanager
def memory_limit(limit_bytes: int | None) -> Iterator[int | None]:
    """Run the block under a soft ``RLIMIT_DATA`` of ``limit_bytes`` (None: no limit); the
    previous soft limit is restored afterwards. Yields the limit in force."""
    if not limit_bytes:
        yield None
        return
    soft, hard = resource.getrlimit(resource.RLIMIT_DATA)
    limit = limit_bytes if hard == resource.RLIM_INFINITY else min(limit_bytes, hard)
    resource.setrlimit(resource.RLIMIT_DATA, (limit, hard))
    log.info("job memory limit: %s (RLIMIT_DATA)", gib(limit))
    try:
        yield limit
    finally:
        resource.setrlimit(resource.RLIMIT_DATA, (soft, hard))


def is_out_of_memory(err: BaseException) -> bool:
    """Whether ``err`` is a failed host allocation (MemoryError, or torch's allocator error)."""
    if isinstance(err, MemoryError):
        return True
    text = str(err)
    return isinstance(err, RuntimeError) and any(w in text for w in _OOM_WORDS)


def out_of_memory_message(limit_bytes: int | None) -> str:
    """What a job that ran out of memory is failed with."""
    if limit_bytes:
        return (
            f"exceeded the memory limit of {gib(limit_bytes)} per job; lower train.batch_size, "
            "data.image_size or model.width (or raise RPG_JOB_MEMORY_LIMIT_BYTES)"
        )
    return "ran out of memory; lower train.batch_size, data.image_size or model.width"
