"""Away and alone modes: learning samples, per-device anomaly models, activity (issue 17).

* ``anomaly_samples``: window features a device heard while learning, in batches;
* ``anomaly_models``: each device's trained models, versioned, the newest active one judging;
* ``anomaly_activity``: when a device began learning, last heard anything and a sound of
  activity, and when its inactivity was last flagged.

Revision ID: 0008
Revises: 0007
Create Date: 2026-12-22
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0008"
down_revision = "0007"
branch_labels = None
depends_on = None


def _device_fk(table: str) -> sa.ForeignKeyConstraint:
    return sa.ForeignKeyConstraint(
        ["device_id"], ["devices.id"], name=op.f(f"fk_{table}_device_id_devices"), ondelete="CASCADE"
    )


def upgrade() -> None:
    op.create_table(
        "anomaly_samples",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("device_id", sa.Uuid(), nullable=False),
        sa.Column("heard_from", sa.DateTime(timezone=True), nullable=False),
        sa.Column("heard_until", sa.DateTime(timezone=True), nullable=False),
        sa.Column("count", sa.Integer(), nullable=False),
        sa.Column("features", sa.JSON(), nullable=False),
        _device_fk("anomaly_samples"),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_anomaly_samples")),
    )
    op.create_index("ix_anomaly_samples_device", "anomaly_samples", ["device_id", "heard_from"])
    op.create_table(
        "anomaly_models",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("device_id", sa.Uuid(), nullable=False),
        sa.Column("version", sa.Integer(), nullable=False),
        sa.Column("trained_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("learned_from", sa.DateTime(timezone=True), nullable=False),
        sa.Column("learned_until", sa.DateTime(timezone=True), nullable=False),
        sa.Column("samples", sa.Integer(), nullable=False),
        sa.Column("threshold", sa.Float(), nullable=False),
        sa.Column("budget_per_week", sa.Float(), nullable=False),
        sa.Column("active", sa.Boolean(), nullable=False),
        sa.Column("params", sa.JSON(), nullable=False),
        _device_fk("anomaly_models"),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_anomaly_models")),
        sa.UniqueConstraint("device_id", "version", name="uq_anomaly_models_version"),
    )
    op.create_table(
        "anomaly_activity",
        sa.Column("device_id", sa.Uuid(), nullable=False),
        sa.Column("learning_since", sa.DateTime(timezone=True), nullable=False),
        sa.Column("last_heard_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("last_activity_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("inactivity_flagged_at", sa.DateTime(timezone=True), nullable=True),
        _device_fk("anomaly_activity"),
        sa.PrimaryKeyConstraint("device_id", name=op.f("pk_anomaly_activity")),
    )


def downgrade() -> None:
    op.drop_table("anomaly_activity")
    op.drop_table("anomaly_models")
    op.drop_index("ix_anomaly_samples_device", table_name="anomaly_samples")
    op.drop_table("anomaly_samples")
