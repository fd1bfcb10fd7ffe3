"""experiments: indexes for the listing's sort by best accuracy and the power law's cache (issue 27)

The listing sorts ``best_val_acc`` as ``coalesce(best_val_acc, -1.0), id`` (runs without a result
last); ``ix_experiments_best_val_acc_id`` on the bare column cannot serve that order, so the page
was a scan and sort of the whole table (234 ms at 100K runs on PostgreSQL, benchmarks/
bench_dashboard.py). This index on the expression makes it an index scan that stops at the page.
``ix_experiments_status_updated_at`` answers the latest change among the succeeded runs (the
version the power law's answers are cached under, api.crud.metrics.results_version) in one
index lookup.

Revision ID: 0007
Revises: 0006
Create Date: 2026-12-03 11:00:00
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0007"
down_revision: str | None = "0006"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

ORDER_INDEX = "ix_experiments_best_val_acc_order"
VERSION_INDEX = "ix_experiments_status_updated_at"


def upgrade() -> None:
    op.create_index(
        ORDER_INDEX, "experiments", [sa.text("coalesce(best_val_acc, -1.0)"), "id"], unique=False
    )
    op.create_index(VERSION_INDEX, "experiments", ["status", "updated_at"], unique=False)


def downgrade() -> None:
    op.drop_index(VERSION_INDEX, table_name="experiments")
    op.drop_index(ORDER_INDEX, table_name="experiments")
