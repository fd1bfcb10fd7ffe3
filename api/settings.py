"""One settings object for the API and the worker (environment variables prefixed ``RPG_``)."""

from __future__ import annotations

import hashlib
import os
import re
from collections.abc import Mapping
from functools import lru_cache
from pathlib import Path
from typing import Annotated, Any

from pydantic import Field, SecretStr, field_validator, model_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

DEFAULT_HOME = ".rpg-studio"  # RPG_HOME: the embedded mode's folder, relative to the cwd


def home_dir(environ: Mapping[str, str] | None = None) -> Path:
    """The one home of the embedded mode: ``$RPG_HOME``, else ``./.rpg-studio``."""
    env = os.environ if environ is None else environ
    return Path(env.get("RPG_HOME", "").strip() or DEFAULT_HOME)


def default_job_memory_bytes() -> int:
    """40 % of this machine's physical memory (8 GiB where it is unknown)."""
    try:
        total = int(os.sysconf("SC_PHYS_PAGES")) * int(os.sysconf("SC_PAGE_SIZE"))
    except (ValueError, OSError, AttributeError):
        total = 0
    return total * 2 // 5 if total > 0 else 8 * 1024**3


class Settings(BaseSettings):
    """Service configuration. Every field can be set as ``RPG_<FIELD>`` in the environment."""

    model_config = SettingsConfigDict(env_prefix="RPG_", extra="ignore")

    home: Path = Field(
        default=Path(DEFAULT_HOME),
        description="the embedded mode's one folder: database, artifacts, broker, server URL "
        "(rpg serve, rpg token, rpg submit and make demo all use it)",
    )
    database_url: str = Field(
        default="",
        description="sqlite:///PATH (embedded) or postgresql+psycopg://USER@HOST/DB; "
        "default: sqlite:///<home>/rpg-studio.db",
    )
    broker_url: str | None = Field(
        default="redis://127.0.0.1:6379/0",
        description="Celery broker; empty = embedded mode (no broker)",
    )
    dispatch_queue: str = Field(default="rpg", pattern=r"^[A-Za-z0-9_.\-]{1,64}$")
    artifact_dir: Path = Field(
        default=Path(""),
        description="the local artifact directory: the store itself when artifact_url is not "
        "s3://, else this host's scratch (checkpoints as the engine writes them, caches); "
        "default: <home>/artifacts",
    )
    # --- the artifact store (issue 26): docs/DEPLOY.md, api.storage
    artifact_url: str = Field(
        default="",
        description="where models, resume checkpoints and stored files live: a local directory "
        "(a path or file://PATH; the default is artifact_dir) or s3://BUCKET/PREFIX (AWS, or the "
        "S3-compatible server at s3_endpoint_url); credentials come from boto3's usual chain "
        "(AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY, ~/.aws, an instance role), never from here",
    )
    s3_endpoint_url: str = Field(
        default="",
        description="an S3-compatible server (MinIO, Ceph): http://HOST:PORT; empty = AWS",
    )
    s3_region: str = Field(default="", description="empty = boto3's own, else us-east-1")
    s3_max_attempts: int = Field(
        default=3, ge=1, le=20, description="tries of one store request before the write fails"
    )
    s3_connect_timeout_s: float = Field(
        default=5.0, gt=0, description="a store that does not answer in this long is down"
    )
    s3_presign_downloads: bool = Field(
        default=False,
        description="GET /api/experiments/{id}/model answers 307 to a presigned URL of the "
        "object (the client reads the store directly) instead of streaming it through the API",
    )
    s3_presign_expires_s: int = Field(default=300, ge=1, le=7 * 24 * 3600)
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
    warm_on_start: bool = Field(
        default=True,
        description="before serving, import torch and estimate one model's memory, so the "
        "first submission of each API process does not wait seconds for them; then freeze the "
        "start-up heap out of the garbage collector's scans (api.main.freeze_start_up_heap)",
    )
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
    auth_max_failures: int = Field(
        default=20, ge=1, description="failed token attempts per client address in the window"
    )
    auth_failure_window_s: float = Field(
        default=60.0, gt=0, description="past auth_max_failures in it: 429 + Retry-After"
    )
    token_cache_s: float = Field(
        default=5.0,
        ge=0,
        description="a valid API token is checked against the database at most once in this "
        "many seconds per API process (a deleted token stops working within it); 0: every "
        "request",
    )
    cursor_secret: SecretStr = Field(
        default=SecretStr(""),
        description="signs the listing's next_cursor (HMAC-SHA256); set it (the same on every "
        "API process) to make cursors unforgeable; empty = a key derived from the database URL, "
        "the same in every process of one deployment (forged cursors are range-checked anyway)",
    )
    max_job_memory_bytes: int = Field(
        default_factory=lambda: default_job_memory_bytes(),
        ge=1,
        description="the most memory one job may need by its estimate (rpg_core.memory: data, "
        "parameters and optimizer state, activations, rings' tables); the API refuses a spec "
        "over it with a 422 and the worker fails such a job before it starts. Default: 40 % "
        "of this machine's physical memory (what one worker can hold beside the API, the "
        "database and the page cache; the job's hard limit is twice this), 8 GiB where it is "
        "unknown",
    )

    def cursor_key(self) -> bytes:
        """The key that signs the listing's cursors: ``cursor_secret``, else one derived from
        the database URL (every process serving one database reads the others' cursors)."""
        secret = self.cursor_secret.get_secret_value()
        if secret:
            return secret.encode()
        return hashlib.sha256(b"rpg-studio listing cursor\0" + self.database_url.encode()).digest()

    @model_validator(mode="after")
    def _home_defaults(self) -> Settings:
        # Unset, the database and the artifacts live in the one home folder (RPG_HOME).
        if not self.database_url:
            self.database_url = f"sqlite:///{self.home / 'rpg-studio.db'}"
        url = self.artifact_url.strip()
        if url and not url.lower().startswith("s3://"):
            # a local directory: the store is artifact_dir (file://PATH or a plain path)
            self.artifact_dir = Path(url[len("file://") :] if url.startswith("file://") else url)
            self.artifact_url = ""
        if self.artifact_dir == Path(""):
            self.artifact_dir = self.home / "artifacts"
        return self

    @field_validator("artifact_url")
    @classmethod
    def _check_artifact_url(cls, v: str) -> str:
        v = v.strip()
        scheme = v.split("://", 1)[0].lower() if "://" in v else ""
        if scheme not in ("", "file", "s3"):
            raise ValueError(
                f"RPG_ARTIFACT_URL: {scheme}:// is not a store; use a directory or s3://BUCKET/PREFIX"
            )
        if scheme == "s3":
            from urllib.parse import urlsplit

            bucket = urlsplit(v).netloc
            if not re.fullmatch(r"[a-z0-9][a-z0-9.\-]{1,61}[a-z0-9]", bucket):
                raise ValueError(
                    f"RPG_ARTIFACT_URL: {bucket!r} is not an S3 bucket name (3-63 lowercase "
                    "letters, digits, dots and hyphens); use s3://BUCKET/PREFIX"
                )
        return v

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


def ensure_sqlite_dir(database_url: str) -> None:
    """SQLite creates its file, not the folder: make the folder of a ``sqlite:///PATH`` URL."""
    prefix = "sqlite:///"
    if database_url.startswith(prefix) and ":memory:" not in database_url:
        Path(database_url[len(prefix) :]).parent.mkdir(parents=True, exist_ok=True)


def safe_url(database_url: str) -> str:
    """The database URL without its password (a SQLite path made absolute), for messages."""
    prefix = "sqlite:///"
    if database_url.startswith(prefix) and ":memory:" not in database_url:
        return prefix + str(Path(database_url[len(prefix) :]).resolve())
    try:
        from sqlalchemy.engine import make_url

        return make_url(database_url).render_as_string(hide_password=True)
    except Exception:  # noqa: BLE001 - a message helper never fails
        return database_url.split("@")[-1]
