"""Worker-only settings (environment variables prefixed ``RPG_``, like :class:`api.settings.Settings`)."""

from __future__ import annotations

from functools import lru_cache

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict

from rpg_core.training.experiment import SIMILARITY_IMAGES


class WorkerSettings(BaseSettings):
    """How a worker runs, reports and recovers jobs. Every field can be set as ``RPG_<FIELD>``."""

    model_config = SettingsConfigDict(env_prefix="RPG_", extra="ignore")

    max_attempts: int = Field(
        3, ge=1, le=100, description="a job that fails or kills its worker this often ends failed"
    )
    heartbeat_s: float | None = Field(
        None, gt=0, description="seconds between heartbeats (default: lease_s / 4)"
    )
    cancel_poll_s: float = Field(0.5, gt=0, le=60, description="least time between cancel checks")
    progress_s: float = Field(1.0, gt=0, le=3600, description="least time between progress writes")
    reconcile_s: float = Field(30.0, gt=0, description="seconds between two reconciler passes")
    requeue_after_s: float = Field(
        120.0, gt=0, description="re-dispatch a queued job no broker holds after this long"
    )
    job_memory_limit_bytes: int | None = Field(
        None,
        ge=0,
        description="the memory limit each job's process runs under (RLIMIT_DATA, see "
        "worker.limits); over it the job fails once with 'exceeded the memory limit'. "
        "Default: twice max_job_memory_bytes (the estimate's budget), at most 90 % of "
        "physical memory, and none on a worker that sees a GPU; 0: no limit",
    )
    similarity_images: int = Field(
        SIMILARITY_IMAGES, ge=2, le=10_000, description="images for the histogram"
    )


@lru_cache(maxsize=1)
def get_worker_settings() -> WorkerSettings:
    return WorkerSettings()
