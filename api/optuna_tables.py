"""Optuna's RDB storage in the product's own database: its tables, its version row, the storage.

Optuna keeps studies and trials in its own tables (``studies``, ``trials``, ``trial_params``,
``trial_values``, ``trial_intermediate_values``, ... and ``version_info``). Migration 0005
creates them from Optuna's ORM metadata (the version pinned in ``constraints.txt``) and writes
``version_info``, so :func:`storage` opens them with ``skip_table_creation`` and
``skip_compatibility_check``: Optuna never creates or migrates tables here (its own Alembic
history would share our ``alembic_version`` table, which holds our revision). Upgrading Optuna to a
version with another schema needs a migration of ours.
"""

from __future__ import annotations

import os
from functools import lru_cache
from typing import TYPE_CHECKING, Any

from sqlalchemy import MetaData

if TYPE_CHECKING:
    from optuna.storages import RDBStorage


def optuna_metadata() -> MetaData:
    """Optuna's table definitions (its ORM metadata: Optuna exposes no public name for it)."""
    from optuna.storages._rdb import models  # noqa: PLC2701 - the one place that reads it

    return models.BaseModel.metadata


def version_row() -> dict[str, Any]:
    """The row Optuna's ``version_info`` table holds for the pinned version."""
    import optuna
    from optuna.storages._rdb import models  # noqa: PLC2701

    return {
        "version_info_id": 1,
        "schema_version": models.SCHEMA_VERSION,
        "library_version": optuna.__version__,
    }


def storage(database_url: str) -> RDBStorage:
    """Optuna's storage on the product database at ``database_url`` (one per process and URL:
    a forked worker child opens its own connections; the tables come from the migrations)."""
    return _storage(database_url, os.getpid())


@lru_cache(maxsize=8)
def _storage(database_url: str, _pid: int) -> RDBStorage:
    import optuna

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    kwargs: dict[str, Any] = {"pool_pre_ping": True}
    if database_url.startswith("sqlite"):
        kwargs = {"connect_args": {"timeout": 10, "check_same_thread": False}}
    return optuna.storages.RDBStorage(
        database_url,
        engine_kwargs=kwargs,
        skip_table_creation=True,
        skip_compatibility_check=True,
    )
