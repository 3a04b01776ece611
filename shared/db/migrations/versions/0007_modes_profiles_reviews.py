"""Away and alone modes, the daycare profile and the review loop (issue 17).

* ``devices.listening_mode`` (``standard``, ``away``, ``alone``; ``shared.device_modes``):
  which sounds are abnormal in this home besides the nine classes; ``devices.profile``
  (``home``, ``daycare``); ``devices.inactivity_span_s``: in alone mode, how long without a
  sound of activity is a concern (null: the service's default).
* ``incidents.kind`` (``emergency``, ``anomaly``, ``child_safety``;
  ``shared.incident_state.IncidentKind``): what opened the incident, and so its routing.
  Every incident before this revision is an ``emergency``. ``incidents.anomaly``: an
  anomaly's score, threshold, model version and reason (JSON, null otherwise).
* ``segment_reviews``: a reviewer's label for an incident's audio; the newest row counts.

Revision ID: 0007
Revises: 0006
Create Date: 2026-12-21
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None

LISTENING_MODES = ("standard", "away", "alone")
PROFILES = ("home", "daycare")
INCIDENT_KINDS = ("emergency", "anomaly", "child_safety")


def _in(column: str, values: tuple[str, ...]) -> str:
    return f"{column} IN ({', '.join(repr(value) for value in values)})"


def upgrade() -> None:
    with op.batch_alter_table("devices") as batch:
        batch.add_column(
            sa.Column("listening_mode", sa.String(length=16), server_default="standard", nullable=False)
        )
        batch.add_column(sa.Column("profile", sa.String(length=16), server_default="home", nullable=False))
        batch.add_column(sa.Column("inactivity_span_s", sa.Integer(), nullable=True))
        batch.create_check_constraint(op.f("ck_devices_listening_mode"), _in("listening_mode", LISTENING_MODES))
        batch.create_check_constraint(op.f("ck_devices_profile"), _in("profile", PROFILES))
        batch.create_check_constraint(
            op.f("ck_devices_inactivity_span_s"), "inactivity_span_s IS NULL OR inactivity_span_s > 0"
        )
    with op.batch_alter_table("incidents") as batch:
        batch.add_column(sa.Column("kind", sa.String(length=16), server_default="emergency", nullable=False))
        batch.add_column(sa.Column("anomaly", sa.JSON(), nullable=True))
        batch.create_check_constraint(op.f("ck_incidents_kind"), _in("kind", INCIDENT_KINDS))
    op.create_table(
        "segment_reviews",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("incident_id", sa.Uuid(), nullable=False),
        sa.Column("label", sa.String(length=32), nullable=False),
        sa.Column("model_label", sa.String(length=32), nullable=False),
        sa.Column("reviewer", sa.String(length=64), nullable=False),
        sa.Column("note", sa.String(length=500), nullable=True),
        sa.Column("reviewed_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["incident_id"], ["incidents.id"], name=op.f("fk_segment_reviews_incident_id_incidents"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_segment_reviews")),
    )
    op.create_index("ix_segment_reviews_incident", "segment_reviews", ["incident_id", "reviewed_at"])


def downgrade() -> None:
    op.drop_index("ix_segment_reviews_incident", table_name="segment_reviews")
    op.drop_table("segment_reviews")
    with op.batch_alter_table("incidents") as batch:
        batch.drop_constraint(op.f("ck_incidents_kind"), type_="check")
        batch.drop_column("anomaly")
        batch.drop_column("kind")
    with op.batch_alter_table("devices") as batch:
        batch.drop_constraint(op.f("ck_devices_inactivity_span_s"), type_="check")
        batch.drop_constraint(op.f("ck_devices_profile"), type_="check")
        batch.drop_constraint(op.f("ck_devices_listening_mode"), type_="check")
        batch.drop_column("inactivity_span_s")
        batch.drop_column("profile")
        batch.drop_column("listening_mode")
