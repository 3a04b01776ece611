"""A class first heard while the report is being sent reaches its agencies:
``incidents.routing_due``.

``also_detected`` now also takes a class first detected while the incident is ``dispatching``.
Its agencies were not in the plan made when the report was claimed, so the gateway marks the
incident ``routing_due``; the alerting sweeper adds the missing agencies' outbox rows and
clears the mark, and the incident is not settled while it is set. False for rows already there.

shared/incidents/lifecycle.py, services/alerting/sweeper.py, docs/incidents.md.

Revision ID: 0011
Revises: 0010
Create Date: 2026-12-07
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0011"
down_revision = "0010"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("incidents") as batch:
        batch.add_column(sa.Column("routing_due", sa.Boolean(), nullable=False, server_default=sa.false()))


def downgrade() -> None:
    with op.batch_alter_table("incidents") as batch:
        batch.drop_column("routing_due")
