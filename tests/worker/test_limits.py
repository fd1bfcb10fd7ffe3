"""worker.limits: the job's memory limit (RLIMIT_DATA) and how a failed allocation is told."""

from __future__ import annotations

import resource
import subprocess
import sys
from pathlib import Path

from worker.errors import JobOutOfMemory, is_permanent
from worker.limits import (
    is_out_of_memory,
    job_memory_limit,
    memory_limit,
    out_of_memory_message,
    sees_a_gpu,
)

ROOT = Path(__file__).resolve().parents[2]
GiB = 1024**3


def test_default_limit_is_twice_the_budget_and_none_beside_a_gpu() -> None:
    assert job_memory_limit(GiB, None, gpu=False) == 2 * GiB
    assert job_memory_limit(GiB, None, gpu=True) is None
    assert job_memory_limit(GiB, 3 * GiB, gpu=True) == 3 * GiB
    assert job_memory_limit(GiB, 0, gpu=False) is None
    assert job_memory_limit(10**15, None, gpu=False) < 10**15  # at most 90 % of physical memory
    assert sees_a_gpu({"CUDA_VISIBLE_DEVICES": ""}) is False
    assert sees_a_gpu({"CUDA_VISIBLE_DEVICES": "0"}) is True


def test_limit_is_set_and_restored() -> None:
    before = resource.getrlimit(resource.RLIMIT_DATA)
    with memory_limit(64 * GiB) as limit:
        assert resource.getrlimit(resource.RLIMIT_DATA)[0] == limit == 64 * GiB
    assert resource.getrlimit(resource.RLIMIT_DATA) == before
    with memory_limit(None) as limit:
        assert limit is None and resource.getrlimit(resource.RLIMIT_DATA) == before


def test_an_allocation_over_the_limit_fails_in_the_process() -> None:
    code = (
        "import torch\n"
        "from worker.limits import memory_limit, is_out_of_memory\n"
        "with memory_limit(3 * 1024**3):\n"
        "    try:\n"
        "        torch.empty(4 * 1024**3, dtype=torch.uint8)\n"
        "    except Exception as err:\n"
        "        print('oom' if is_out_of_memory(err) else repr(err))\n"
        "    x = torch.empty(16 * 1024**2)  # a small one still works\n"
        "print('alive')\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=120,
        env={"PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1", "PATH": "/usr/bin:/bin"},
    )  # fmt: skip
    assert out.stdout.split() == ["oom", "alive"], out.stderr[-1000:]


def test_out_of_memory_is_told_and_not_retried() -> None:
    assert is_out_of_memory(MemoryError())
    assert is_out_of_memory(RuntimeError("DefaultCPUAllocator: can't allocate memory: 8 GB"))
    assert not is_out_of_memory(RuntimeError("CUDA error: an illegal memory access"))
    assert is_permanent(JobOutOfMemory("x"))
    assert out_of_memory_message(int(1.5 * GiB)).startswith("exceeded the memory limit of 1.5 GiB")
