"""The first schema: sweeps, records (whole JSON plus indexed columns), results.

Revision ID: 0001
Revises:
Create Date: 2026-11-28
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0001"
down_revision: str | None = None
branch_labels: str | None = None
depends_on: str | None = None


def _key(length: int) -> sa.types.TypeEngine[str]:
    return sa.String(length).with_variant(sa.String(length, collation="C"), "postgresql")


def upgrade() -> None:
    op.create_table(
        "sweeps",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("started_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("finished_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("state", sa.String(16), nullable=False),
        sa.Column("inventory", sa.Text(), nullable=False),
        sa.Column("devices", sa.Integer(), nullable=False),
        sa.Column("profile_id", sa.String(255), nullable=False),
        sa.Column("profile_version", sa.String(255), nullable=False),
        sa.Column("profile_digest", sa.String(80), nullable=False),
        sa.Column("probe_version", sa.String(40), nullable=False),
        sa.Column("intrusive", sa.Boolean(), nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_sweeps"),
    )
    op.create_table(
        "records",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("sweep_id", sa.Integer(), nullable=False),
        sa.Column("device_id", _key(255), nullable=False),
        sa.Column("address", sa.String(255), nullable=False),
        sa.Column("verdict", sa.String(16), nullable=False),
        sa.Column("started_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("finished_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("record", sa.JSON(), nullable=False),
        sa.ForeignKeyConstraint(["sweep_id"], ["sweeps.id"], ondelete="CASCADE",
                                name="fk_records_sweep_id_sweeps"),
        sa.PrimaryKeyConstraint("id", name="pk_records"),
        sa.UniqueConstraint("sweep_id", "device_id", name="uq_records_sweep_id"),
    )
    op.create_index("ix_records_device_id", "records", ["device_id"])
    op.create_index("ix_records_sweep_verdict", "records", ["sweep_id", "verdict"])
    op.create_table(
        "results",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("record_id", sa.Integer(), nullable=False),
        sa.Column("sweep_id", sa.Integer(), nullable=False),
        sa.Column("device_id", _key(255), nullable=False),
        sa.Column("check_id", _key(80), nullable=False),
        sa.Column("target", _key(255), nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("severity", sa.String(10), nullable=False),
        sa.Column("waived", sa.Boolean(), nullable=False),
        sa.Column("summary", sa.Text(), nullable=False),
        sa.ForeignKeyConstraint(["record_id"], ["records.id"], ondelete="CASCADE",
                                name="fk_results_record_id_records"),
        sa.PrimaryKeyConstraint("id", name="pk_results"),
    )
    op.create_index("ix_results_record_id", "results", ["record_id"])
    op.create_index("ix_results_sweep_device", "results",
                    ["sweep_id", "device_id", "check_id", "target"])
    op.create_index("ix_results_sweep_check_status", "results",
                    ["sweep_id", "check_id", "status"])


def downgrade() -> None:
    op.drop_table("results")
    op.drop_table("records")
    op.drop_table("sweeps")
