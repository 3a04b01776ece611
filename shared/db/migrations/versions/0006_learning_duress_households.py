"""Cancels that teach, duress cancel and households (issue 18, items 2 to 4).

* ``incidents.cancel_kind``: why the person cancelled (``false_alarm``, ``handled``,
  ``not_sure``; ``shared.incident_state.CancelKind``), null before this revision and for
  incidents not cancelled. ``incidents.sound_signature``: a short vector describing the
  sound that was detected, to compare one false alarm with the next (JSON list of floats).
* ``incidents.duress_at``: when the incident was cancelled with the owner's duress code. The
  device is shown an ordinary cancel; the report goes on, marked duress.
* ``devices.duress_code_hash``: the duress PIN or phrase, hashed (never stored in clear).
* ``incidents.corroboration``: what the other devices of the household heard at the time of
  the detection (JSON, null until judged or when the device has no household).
* ``households`` and ``devices.household_id`` / ``devices.room``: devices of one home that
  corroborate each other; ``room`` names where a device listens ("kitchen").
* ``threshold_adjustments``: every change a home's cancels made to one class's threshold,
  with what it rests on; undone rows stay (``undone_at``), so the log is complete.

Revision ID: 0006
Revises: 0005
Create Date: 2026-12-20
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None

CANCEL_KINDS = ("false_alarm", "handled", "not_sure")


def upgrade() -> None:
    op.create_table(
        "households",
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column("name", sa.String(length=200), nullable=False),
        sa.Column("join_code_hash", sa.String(length=64), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), server_default=sa.func.now(), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_households")),
        sa.UniqueConstraint("join_code_hash", name=op.f("uq_households_join_code_hash")),
    )
    with op.batch_alter_table("devices") as batch:
        batch.add_column(sa.Column("duress_code_hash", sa.String(length=200), nullable=True))
        batch.add_column(sa.Column("household_id", sa.Uuid(), nullable=True))
        batch.add_column(sa.Column("room", sa.String(length=100), nullable=True))
        batch.create_foreign_key(
            op.f("fk_devices_household_id_households"), "households", ["household_id"], ["id"], ondelete="SET NULL"
        )
        batch.create_index("ix_devices_household_id", ["household_id"])
    with op.batch_alter_table("incidents") as batch:
        batch.add_column(sa.Column("cancel_kind", sa.String(length=16), nullable=True))
        batch.add_column(sa.Column("sound_signature", sa.JSON(), nullable=True))
        batch.add_column(sa.Column("duress_at", sa.DateTime(timezone=True), nullable=True))
        batch.add_column(sa.Column("corroboration", sa.JSON(), nullable=True))
        batch.create_check_constraint(
            op.f("ck_incidents_cancel_kind"),
            f"cancel_kind IS NULL OR cancel_kind IN ({', '.join(repr(kind) for kind in CANCEL_KINDS)})",
        )
    op.create_table(
        "threshold_adjustments",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("device_id", sa.Uuid(), nullable=False),
        sa.Column("class_key", sa.String(length=32), nullable=False),
        sa.Column("threshold_from", sa.Float(), nullable=False),
        sa.Column("threshold_to", sa.Float(), nullable=False),
        sa.Column("reason", sa.String(length=32), nullable=False),
        sa.Column("evidence", sa.JSON(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("undone_at", sa.DateTime(timezone=True), nullable=True),
        sa.ForeignKeyConstraint(
            ["device_id"], ["devices.id"], name=op.f("fk_threshold_adjustments_device_id_devices"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_threshold_adjustments")),
    )
    op.create_index(
        "ix_threshold_adjustments_device_class", "threshold_adjustments", ["device_id", "class_key", "created_at"]
    )


def downgrade() -> None:
    op.drop_index("ix_threshold_adjustments_device_class", table_name="threshold_adjustments")
    op.drop_table("threshold_adjustments")
    with op.batch_alter_table("incidents") as batch:
        batch.drop_constraint(op.f("ck_incidents_cancel_kind"), type_="check")
        batch.drop_column("corroboration")
        batch.drop_column("duress_at")
        batch.drop_column("sound_signature")
        batch.drop_column("cancel_kind")
    with op.batch_alter_table("devices") as batch:
        batch.drop_index("ix_devices_household_id")
        batch.drop_constraint(op.f("fk_devices_household_id_households"), type_="foreignkey")
        batch.drop_column("room")
        batch.drop_column("household_id")
        batch.drop_column("duress_code_hash")
    op.drop_table("households")
