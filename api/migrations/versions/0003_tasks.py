"""experiments.task, primary_metric, primary_value: pose and multitask runs (issue 13)

Existing rows are classification runs (the server default); finished ones with a final
validation accuracy get primary_metric 'acc' and primary_value = val_acc.

Revision ID: 0003
Revises: 0002
Create Date: 2026-12-04 10:00:00
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0003"
down_revision: str | None = "0002"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("experiments") as batch:
        batch.add_column(
            sa.Column("task", sa.String(length=32), nullable=False, server_default="classification")
        )
        batch.add_column(sa.Column("primary_metric", sa.String(length=32), nullable=True))
        batch.add_column(sa.Column("primary_value", sa.Float(), nullable=True))
        batch.create_index("ix_experiments_task_id", ["task", "id"], unique=False)
    op.execute(
        "UPDATE experiments SET primary_metric = 'acc', primary_value = val_acc "
        "WHERE status IN ('succeeded', 'failed', 'cancelled') AND val_acc IS NOT NULL "
        "AND primary_metric IS NULL"
    )


def downgrade() -> None:
    with op.batch_alter_table("experiments") as batch:
        batch.drop_index("ix_experiments_task_id")
        batch.drop_column("primary_value")
        batch.drop_column("primary_metric")
        batch.drop_column("task")
