"""worker_hosts: each worker host's device count per queue (issue 26, data-parallel runs)

Workers record their host's devices (GPUs, or CPU slots) when they start; the API refuses a job
asking for more devices (train.devices) than the largest host seen on its queue, and tells a
job that waits for its first worker why it waits.

Revision ID: 0006
Revises: 0005
Create Date: 2026-12-03 11:00:00
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0006"
down_revision: str | None = "0005"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "worker_hosts",
        sa.Column("queue", sa.String(length=200), nullable=False),
        sa.Column("host", sa.String(length=255), nullable=False),
        sa.Column("devices", sa.Integer(), nullable=False),
        sa.Column("kind", sa.String(length=8), nullable=False),
        sa.Column("seen_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("queue", "host", name=op.f("pk_worker_hosts")),
    )


def downgrade() -> None:
    op.drop_table("worker_hosts")
