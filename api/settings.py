"""One settings object for the API and the worker (environment variables prefixed ``RPG_``)."""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path
from typing import Annotated, Any

from pydantic import Field, field_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict


class Settings(BaseSettings):
    """Service configuration. Every field can be set as ``RPG_<FIELD>`` in the environment."""

    model_config = SettingsConfigDict(env_prefix="RPG_", extra="ignore")

    database_url: str = Field(
        default="sqlite:///./rpg-studio.db",
        description="sqlite:///PATH (embedded) or postgresql+psycopg://USER@HOST/DB",
    )
    broker_url: str | None = Field(
        default="redis://127.0.0.1:6379/0",
        description="Celery broker; empty = embedded mode (no broker)",
    )
    dispatch_queue: str = Field(default="rpg", pattern=r"^[A-Za-z0-9_.\-]{1,64}$")
    artifact_dir: Path = Field(
        default=Path("./artifacts"), description="where .rpg files are stored"
    )
    data_root: Path = Field(
        default=Path("./data"), description="datasets named imagefolder:<name> live here"
    )
    max_ring_size: int = Field(
        default=100_000_000, ge=1, description="largest ring (element count)"
    )
    max_epochs: int = Field(default=1000, ge=1)
    max_batch_size: int = Field(default=4096, ge=1)
    max_sweep_experiments: int = Field(default=1000, ge=1, le=1000)
    max_upload_bytes: int = Field(
        default=256 * 1024 * 1024, ge=1, description="POST /api/models/inspect"
    )
    max_body_bytes: int = Field(default=1024 * 1024, ge=1, description="any other request body")
    public_reads: bool = Field(
        default=True, description="GET without a token (writes always need one)"
    )
    cors_origins: Annotated[list[str], NoDecode] = Field(
        default_factory=list, description="comma-separated origins; empty = CORS off"
    )
    sse_poll_s: float = Field(
        default=0.5, gt=0, le=60, description="how often event streams poll the DB"
    )
    sse_max_s: float = Field(
        default=300.0, gt=0, description="longest event stream (clients reconnect)"
    )
    auto_migrate: bool = Field(default=True, description="run the Alembic migrations at start-up")
    lease_s: float = Field(
        default=60.0, gt=0, description="worker lease length (heartbeat renews it)"
    )
    # --- hardening (issue 16): overload, the YAML helper, submission checks
    max_concurrent_requests: int = Field(
        default=16, ge=1, le=1000, description="requests handled at once per API process"
    )
    max_queued_requests: int = Field(
        default=256, ge=0, description="requests waiting for a slot; more get 503 at once"
    )
    queue_timeout_s: float = Field(
        default=10.0, gt=0, description="longest wait for a slot before a 503 + Retry-After"
    )
    retry_after_s: int = Field(default=2, ge=1, description="Retry-After of a 503 (overload)")
    db_pool_size: int = Field(
        default=20, ge=1, description="database connections per API process (>= concurrency)"
    )
    db_pool_timeout_s: float = Field(
        default=5.0, gt=0, description="longest wait for a database connection (then 503)"
    )
    parse_spec_max_bytes: int = Field(
        default=64 * 1024, ge=1, description="POST /ui/api/parse-spec body limit"
    )
    parse_spec_rate: float = Field(
        default=5.0, gt=0, description="POST /ui/api/parse-spec: requests/s per client"
    )
    parse_spec_burst: int = Field(default=20, ge=1)
    check_data_on_submit: bool = Field(
        default=True,
        description="refuse specs whose data is missing under data_root (the API must see it)",
    )
    max_job_memory_bytes: int = Field(
        default=8 * 1024**3, ge=1, description="estimated dataset memory a job may need"
    )

    @field_validator("broker_url", mode="before")
    @classmethod
    def _empty_is_none(cls, v: Any) -> Any:
        return None if v is None or (isinstance(v, str) and not v.strip()) else v

    @field_validator("cors_origins", mode="before")
    @classmethod
    def _split_origins(cls, v: Any) -> Any:
        if isinstance(v, str):
            return [o.strip() for o in v.split(",") if o.strip()]
        return v


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    """The process-wide settings, read once from the environment."""
    return Settings()
