"""experiments.conditions, conditions_key: the experimental conditions of a run (issue 22)

A fit, a table cell or a comparison pools only runs of the same conditions (rpg_core.spec.conditions:
the resolved spec less the compared knobs, the seeds and the labels). Existing rows are
backfilled from their stored spec; a spec that no longer validates keeps NULL (its run is then
shown apart, as of unknown conditions).

Revision ID: 0004
Revises: 0003
Create Date: 2026-12-02 18:00:00
"""

from __future__ import annotations

import json
import logging
from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0004"
down_revision: str | None = "0003"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

log = logging.getLogger(__name__)


def upgrade() -> None:
    with op.batch_alter_table("experiments") as batch:
        batch.add_column(sa.Column("conditions", sa.JSON(), nullable=True))
        batch.add_column(sa.Column("conditions_key", sa.String(length=16), nullable=True))
        batch.create_index(
            "ix_experiments_conditions_key_id", ["conditions_key", "id"], unique=False
        )
    _backfill()


def _backfill() -> None:
    from rpg_core.exceptions import RPGConfigError
    from rpg_core.spec.conditions import conditions_of, key_of

    conn = op.get_bind()
    table = sa.table(
        "experiments",
        sa.column("id", sa.Integer),
        sa.column("spec", sa.JSON),
        sa.column("conditions", sa.JSON),
        sa.column("conditions_key", sa.String),
    )
    rows = conn.execute(sa.select(table.c.id, table.c.spec).where(table.c.conditions_key.is_(None)))
    unknown = 0
    for row_id, spec in rows.all():
        if isinstance(spec, str):  # a JSON column read back as text on some drivers
            spec = json.loads(spec)
        try:
            conditions = conditions_of(spec) if isinstance(spec, dict) else None
        except (RPGConfigError, ValueError, TypeError, KeyError):
            conditions = None
        if conditions is None:
            unknown += 1
            continue
        conn.execute(
            table.update()
            .where(table.c.id == row_id)
            .values(conditions=conditions, conditions_key=key_of(conditions))
        )
    if unknown:
        log.warning("%d runs keep unknown conditions (their spec no longer validates)", unknown)


def downgrade() -> None:
    with op.batch_alter_table("experiments") as batch:
        batch.drop_index("ix_experiments_conditions_key_id")
        batch.drop_column("conditions_key")
        batch.drop_column("conditions")
