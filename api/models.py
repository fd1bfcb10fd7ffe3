"""Database tables (SQLAlchemy 2 typed declarative). The migrations in api/migrations mirror them."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    DateTime,
    Float,
    ForeignKey,
    Index,
    Integer,
    MetaData,
    String,
    Text,
    UniqueConstraint,
    text,
)
from sqlalchemy.engine import Dialect
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column, relationship
from sqlalchemy.types import TypeDecorator

from .status import JobStatus

NAMING = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_N_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}


def utcnow() -> datetime:
    return datetime.now(UTC)


class UTCDateTime(TypeDecorator[datetime]):
    """Timezone-aware UTC datetimes on every backend (SQLite stores them naive)."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is not None and value.tzinfo is not None:
            value = value.astimezone(UTC)
            if dialect.name == "sqlite":
                value = value.replace(tzinfo=None)
        return value

    def process_result_value(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is not None and value.tzinfo is None:
            value = value.replace(tzinfo=UTC)
        return value


class Base(DeclarativeBase):
    metadata = MetaData(naming_convention=NAMING)
    type_annotation_map = {datetime: UTCDateTime(), dict[str, Any]: JSON()}


BEST_VAL_ACC_ORDER = "coalesce(best_val_acc, -1.0)"  # sort key of best_val_acc, its index's


class Sweep(Base):
    __tablename__ = "sweeps"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    name: Mapped[str] = mapped_column(String(128))
    spec: Mapped[dict[str, Any]]
    created_at: Mapped[datetime] = mapped_column(default=utcnow, index=True)


class Study(Base):
    """A search sweep's study (one per grid point): the link between the sweep, its Optuna study
    (``optuna_name`` in Optuna's own tables, same database) and its trials' experiments."""

    __tablename__ = "search_studies"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    sweep_id: Mapped[int | None] = mapped_column(
        ForeignKey("sweeps.id", ondelete="SET NULL"), index=True
    )
    name: Mapped[str] = mapped_column(String(128))
    optuna_name: Mapped[str] = mapped_column(String(160), unique=True)
    search: Mapped[dict[str, Any]]  # the sweep's search section (rpg_core.spec.search)
    base: Mapped[dict[str, Any]]  # the spec its trials start from (the grid point)
    objective: Mapped[str] = mapped_column(String(32))
    higher_is_better: Mapped[bool] = mapped_column(Boolean)
    state: Mapped[str] = mapped_column(String(16), default="running")  # running | finished
    stop_reason: Mapped[str | None] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    finished_at: Mapped[datetime | None]


class Experiment(Base):
    __tablename__ = "experiments"
    __table_args__ = (
        Index("ix_experiments_status_id", "status", "id"),
        Index("ix_experiments_sweep_id_id", "sweep_id", "id"),
        Index("ix_experiments_arch_id", "arch", "id"),
        Index("ix_experiments_dataset_id", "dataset", "id"),
        Index("ix_experiments_best_val_acc_id", "best_val_acc", "id"),
        Index("ix_experiments_name_id", "name", "id"),
        Index("ix_experiments_task_id", "task", "id"),
        Index("ix_experiments_conditions_key_id", "conditions_key", "id"),
        # the listing's sort by best accuracy (api.crud.listing.SORTS), results-less runs last
        Index("ix_experiments_best_val_acc_order", text(BEST_VAL_ACC_ORDER), "id"),
        # the latest change among the succeeded runs (api.crud.metrics.results_version)
        Index("ix_experiments_status_updated_at", "status", "updated_at"),
        # a trial's experiment is created once: the driver's idempotency key (api.search)
        UniqueConstraint("study_id", "trial_number"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    name: Mapped[str] = mapped_column(String(128))
    spec: Mapped[dict[str, Any]]
    status: Mapped[str] = mapped_column(String(16), default=JobStatus.queued)  # a JobStatus
    arch: Mapped[str] = mapped_column(String(64))
    dataset: Mapped[str] = mapped_column(String(128))
    ring_size: Mapped[float | None] = mapped_column(Float)
    scope: Mapped[str] = mapped_column(String(16))
    sweep_id: Mapped[int | None] = mapped_column(ForeignKey("sweeps.id", ondelete="SET NULL"))
    progress: Mapped[float] = mapped_column(Float, default=0.0)
    epoch: Mapped[int | None] = mapped_column(Integer)
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    worker: Mapped[str | None] = mapped_column(String(255))
    lease_owner: Mapped[str | None] = mapped_column(String(255))
    lease_token: Mapped[int] = mapped_column(BigInteger, default=0)
    lease_expires_at: Mapped[datetime | None]
    heartbeat_at: Mapped[datetime | None]
    cancel_requested: Mapped[bool] = mapped_column(Boolean, default=False)
    error: Mapped[str | None] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(default=utcnow, onupdate=utcnow, index=True)
    dispatched_at: Mapped[datetime | None]
    started_at: Mapped[datetime | None]
    finished_at: Mapped[datetime | None]
    val_acc: Mapped[float | None] = mapped_column(Float)
    best_val_acc: Mapped[float | None] = mapped_column(Float)
    train_acc: Mapped[float | None] = mapped_column(Float)
    backbone_params: Mapped[int | None] = mapped_column(BigInteger)
    total_params: Mapped[int | None] = mapped_column(BigInteger)
    train_time_s: Mapped[float | None] = mapped_column(Float)
    # guard-rail flags of a finished run (rpg_core.training.health), comma-separated; None: none
    flags: Mapped[str | None] = mapped_column(String(64))
    # the spec's task (rpg_core.catalog.tasks), set at submission; the primary metric's key and its
    # last-epoch value, set by the result (acc | pckh | depth_rmse)
    task: Mapped[str] = mapped_column(
        String(32), default="classification", server_default="classification"
    )
    primary_metric: Mapped[str | None] = mapped_column(String(32))
    primary_value: Mapped[float | None] = mapped_column(Float)
    # the run's experimental conditions (rpg_core.spec.conditions, set at submission): the resolved
    # spec less seeds, labels and execution; the key leaves the size knobs out too, so runs with
    # equal keys are comparable in a power law (None: a spec older than the conditions)
    conditions: Mapped[dict[str, Any] | None] = mapped_column(JSON)
    conditions_key: Mapped[str | None] = mapped_column(String(16))
    # a search trial's study and Optuna trial number (None: not a trial; api.search)
    study_id: Mapped[int | None] = mapped_column(
        ForeignKey("search_studies.id", ondelete="SET NULL")
    )
    trial_number: Mapped[int | None] = mapped_column(Integer)

    tag_rows: Mapped[list[ExperimentTag]] = relationship(
        cascade="all, delete-orphan", passive_deletes=True, lazy="selectin"
    )

    @property
    def tags(self) -> list[str]:
        return sorted(t.tag for t in self.tag_rows)


class ExperimentTag(Base):
    __tablename__ = "experiment_tags"

    experiment_id: Mapped[int] = mapped_column(
        ForeignKey("experiments.id", ondelete="CASCADE"), primary_key=True
    )
    tag: Mapped[str] = mapped_column(String(64), primary_key=True, index=True)


class MetricPoint(Base):
    __tablename__ = "metric_points"
    __table_args__ = (UniqueConstraint("experiment_id", "epoch", "name"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    experiment_id: Mapped[int] = mapped_column(ForeignKey("experiments.id", ondelete="CASCADE"))
    epoch: Mapped[int] = mapped_column(Integer)
    name: Mapped[str] = mapped_column(String(64))
    value: Mapped[float] = mapped_column(Float)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


class Result(Base):
    __tablename__ = "results"

    experiment_id: Mapped[int] = mapped_column(
        ForeignKey("experiments.id", ondelete="CASCADE"), primary_key=True
    )
    data: Mapped[dict[str, Any]]
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


class StoredFile(Base):
    __tablename__ = "files"
    __table_args__ = (UniqueConstraint("experiment_id", "kind"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    experiment_id: Mapped[int] = mapped_column(ForeignKey("experiments.id", ondelete="CASCADE"))
    kind: Mapped[str] = mapped_column(String(32))
    path: Mapped[str] = mapped_column(String(512))
    sha256: Mapped[str] = mapped_column(String(64))
    size: Mapped[int] = mapped_column(BigInteger)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


class ApiToken(Base):
    __tablename__ = "api_tokens"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    name: Mapped[str] = mapped_column(String(64), unique=True)
    token_hash: Mapped[str] = mapped_column(String(64), unique=True)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    last_used_at: Mapped[datetime | None]


class WorkerHost(Base):
    """A worker host's devices on a queue, as its workers record them when they start (issue
    26): the API refuses a job asking for more devices (``train.devices``) than the largest
    host of its queue has (``api.crud.workers``)."""

    __tablename__ = "worker_hosts"

    queue: Mapped[str] = mapped_column(String(200), primary_key=True)
    host: Mapped[str] = mapped_column(String(255), primary_key=True)
    devices: Mapped[int] = mapped_column(Integer)  # GPUs, or CPU slots
    kind: Mapped[str] = mapped_column(String(8))  # "gpu" or "cpu"
    seen_at: Mapped[datetime] = mapped_column(default=utcnow)
