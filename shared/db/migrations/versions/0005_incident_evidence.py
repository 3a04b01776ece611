"""Countdown evidence: how an incident's evidence went while the gateway kept listening.

``incidents.evidence``: ``growing``, ``steady`` or ``faded`` (rule: shared/incidents/evidence.py;
the CHECK constraint is built from ``shared.incident_state.EvidenceMark`` as it stood at this
revision); every incident before this revision is ``steady``. ``incidents.evidence_summary``:
what the mark rests on and whether growing evidence shortened the countdown (JSON, null until
first judged).

Revision ID: 0005
Revises: 0004
Create Date: 2026-12-19
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None

MARKS = ("growing", "steady", "faded")


def upgrade() -> None:
    with op.batch_alter_table("incidents") as batch:
        # The server default fills the rows already there; the model writes the value itself.
        batch.add_column(sa.Column("evidence", sa.String(length=16), nullable=False, server_default="steady"))
        batch.add_column(sa.Column("evidence_summary", sa.JSON(), nullable=True))
        batch.create_check_constraint(
            op.f("ck_incidents_evidence"), f"evidence IN ({', '.join(repr(mark) for mark in MARKS)})")
    with op.batch_alter_table("incidents") as batch:
        batch.alter_column("evidence", server_default=None, existing_type=sa.String(length=16), existing_nullable=False)


def downgrade() -> None:
    with op.batch_alter_table("incidents") as batch:
        batch.drop_constraint(op.f("ck_incidents_evidence"), type_="check")
        batch.drop_column("evidence_summary")
        batch.drop_column("evidence")
