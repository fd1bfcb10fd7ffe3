"""Hyper-parameter search (issue 25): search_studies, experiments.study_id / trial_number, and
Optuna's own tables (its RDB storage lives in this database)

Optuna's tables are created from its ORM metadata (api.optuna_tables, the pinned version) and its
``version_info`` row is written, so Optuna never creates or migrates them itself.

Revision ID: 0005
Revises: 0004
Create Date: 2026-12-03 11:00:00
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

from api.optuna_tables import optuna_metadata, version_row

revision: str = "0005"
down_revision: str | None = "0004"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "search_studies",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("sweep_id", sa.Integer(), nullable=True),
        sa.Column("name", sa.String(length=128), nullable=False),
        sa.Column("optuna_name", sa.String(length=160), nullable=False),
        sa.Column("search", sa.JSON(), nullable=False),
        sa.Column("base", sa.JSON(), nullable=False),
        sa.Column("objective", sa.String(length=32), nullable=False),
        sa.Column("higher_is_better", sa.Boolean(), nullable=False),
        sa.Column("state", sa.String(length=16), nullable=False),
        sa.Column("stop_reason", sa.Text(), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("finished_at", sa.DateTime(timezone=True), nullable=True),
        sa.ForeignKeyConstraint(
            ["sweep_id"],
            ["sweeps.id"],
            name="fk_search_studies_sweep_id_sweeps",
            ondelete="SET NULL",
        ),
        sa.PrimaryKeyConstraint("id", name="pk_search_studies"),
        sa.UniqueConstraint("optuna_name", name="uq_search_studies_optuna_name"),
    )
    op.create_index("ix_search_studies_sweep_id", "search_studies", ["sweep_id"], unique=False)
    with op.batch_alter_table("experiments") as batch:
        batch.add_column(sa.Column("study_id", sa.Integer(), nullable=True))
        batch.add_column(sa.Column("trial_number", sa.Integer(), nullable=True))
        batch.create_foreign_key(
            "fk_experiments_study_id_search_studies",
            "search_studies",
            ["study_id"],
            ["id"],
            ondelete="SET NULL",
        )
        batch.create_unique_constraint(
            "uq_experiments_study_id_trial_number", ["study_id", "trial_number"]
        )
    bind = op.get_bind()
    meta = optuna_metadata()
    meta.create_all(bind)
    version = meta.tables["version_info"]
    if bind.execute(sa.select(sa.func.count()).select_from(version)).scalar() == 0:
        bind.execute(version.insert().values(**version_row()))


def downgrade() -> None:
    optuna_metadata().drop_all(op.get_bind())
    with op.batch_alter_table("experiments") as batch:
        batch.drop_constraint("uq_experiments_study_id_trial_number", type_="unique")
        batch.drop_constraint("fk_experiments_study_id_search_studies", type_="foreignkey")
        batch.drop_column("trial_number")
        batch.drop_column("study_id")
    op.drop_index("ix_search_studies_sweep_id", table_name="search_studies")
    op.drop_table("search_studies")
