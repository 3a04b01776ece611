"""The outcome ledger: what an agency found for each incident reported to it.

One row per (incident, agency); a later answer from the same agency replaces it (the audit
trail keeps every answer). ``message_id`` and ``signed_at`` are the signed callback's
``webhook-id`` and ``webhook-timestamp``. The CHECK constraint is built from
``shared.incident_state.IncidentOutcome`` as it stood at this revision.

Revision ID: 0004
Revises: 0003
Create Date: 2026-12-12
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None

OUTCOMES = ("confirmed_emergency", "no_emergency_found", "unable_to_reach")


def upgrade() -> None:
    op.create_table(
        "incident_outcomes",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("incident_id", sa.Uuid(), nullable=False),
        sa.Column("agency_id", sa.String(length=64), nullable=False),
        sa.Column("outcome", sa.String(length=24), nullable=False),
        sa.Column("note", sa.String(length=500), nullable=True),
        sa.Column("message_id", sa.String(length=255), nullable=False),
        sa.Column("signed_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("received_at", sa.DateTime(timezone=True), nullable=False),
        sa.CheckConstraint(
            f"outcome IN ({', '.join(repr(value) for value in OUTCOMES)})", name=op.f("ck_incident_outcomes_outcome")
        ),
        sa.ForeignKeyConstraint(
            ["incident_id"], ["incidents.id"],
            name=op.f("fk_incident_outcomes_incident_id_incidents"), ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_incident_outcomes")),
        sa.UniqueConstraint("incident_id", "agency_id", name="uq_incident_outcomes_agency"),
    )


def downgrade() -> None:
    op.drop_table("incident_outcomes")
