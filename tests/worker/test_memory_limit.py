"""Memory on the worker: a job over the budget fails before it starts, a job over its memory
limit fails once saying so, and the worker takes the next job.

A real Celery worker runs with ``RPG_MAX_JOB_MEMORY_BYTES`` (the estimate's budget, 4 GiB) and
``RPG_JOB_MEMORY_LIMIT_BYTES`` (1.5 GiB, RLIMIT_DATA in the job's process: worker.limits); the
API that takes the specs has a larger budget (a spec accepted under it, or before the estimate
existed, still reaches the worker).

- "over-limit": its synthetic data (4,000 images of 3x128x128, drawn as floats: 0.8 GB in one
  allocation) passes the estimate (about 3.2 GiB) but not the limit beside the process's ~0.9 GB
  of torch: the allocation fails in the job's process, which is failed once with "exceeded the
  memory limit of 1.5 GiB" (before: killed by the OOM killer and retried three times).
- "over-budget": 8,000 such images, about 5 GiB by the estimate: failed before any data is
  drawn, with the estimate, the budget and the fields to change.
- "small": succeeds on the same worker afterwards.
"""

from __future__ import annotations

from fastapi.testclient import TestClient

from studio.app import create_app

from .conftest import Stack, tiny_spec

GiB = 1024**3


def test_jobs_over_memory_fail_once_and_the_worker_goes_on(stack: Stack) -> None:
    stack.start_worker(
        RPG_JOB_MEMORY_LIMIT_BYTES=str(int(1.5 * GiB)), RPG_MAX_JOB_MEMORY_BYTES=str(4 * GiB)
    )
    big = tiny_spec("over-limit", epochs=1)
    big["data"] = {**big["data"], "image_size": 128, "num_train": 4000, "num_val": 100}
    huge = {**big, "name": "over-budget", "data": {**big["data"], "num_train": 8000}}
    roomy = stack.settings.model_copy(update={"max_job_memory_bytes": 64 * GiB})
    with TestClient(create_app(roomy)) as api:
        ids = []
        for spec in (big, huge, tiny_spec("small", epochs=1)):
            r = api.post("/api/experiments", json=spec, headers=stack.auth)
            assert r.status_code == 201, r.text
            ids.append(int(r.json()["id"]))
    over_limit, over_budget, small = ids

    failed = stack.wait_status(over_limit, "failed", "succeeded", timeout=180)
    assert failed.status == "failed", failed.error
    assert "exceeded the memory limit of 1.5 GiB" in (failed.error or "")
    assert "not retried" in (failed.error or "") and failed.attempts == 1

    refused = stack.wait_status(over_budget, "failed", "succeeded", timeout=180)
    assert refused.status == "failed", refused.error
    error = refused.error or ""
    assert "this job needs about" in error and "allows 4.0 GiB per job" in error
    assert "data.num_train" in error and refused.attempts == 1

    done = stack.wait_status(small, "succeeded", "failed", timeout=180)
    assert done.status == "succeeded", done.error
