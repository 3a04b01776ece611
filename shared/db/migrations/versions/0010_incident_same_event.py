"""One event, one report, every agency it needs: ``incidents.last_detected_at`` and
``incidents.also_detected``.

``last_detected_at``: when the latest detection was added to the incident (the database's
clock). A detection of the class of a dispatched report, heard within ``SAME_EVENT_S`` of its
last detection, is the same event going on and joins that report instead of opening a second
one. Rows already there take their ``detected_at``; the index finds a device's recent reports
without scanning its history.

``also_detected``: the other emergency classes detected while the incident was pending (a JSON
list, ``[]`` for rows already there); the report goes to their agencies too.

Both: shared/incidents/lifecycle.py, docs/incidents.md.

Revision ID: 0010
Revises: 0009
Create Date: 2026-12-07
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0010"
down_revision = "0009"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("incidents") as batch:
        batch.add_column(sa.Column("last_detected_at", sa.DateTime(timezone=True), nullable=True))
        # The server default fills the rows already there; the model writes the value itself.
        batch.add_column(sa.Column("also_detected", sa.JSON(), nullable=False, server_default=sa.text("'[]'")))
    op.execute("UPDATE incidents SET last_detected_at = detected_at")
    with op.batch_alter_table("incidents") as batch:
        batch.alter_column("last_detected_at", nullable=False, existing_type=sa.DateTime(timezone=True))
        batch.alter_column("also_detected", server_default=None, existing_type=sa.JSON(), existing_nullable=False)
    op.create_index("ix_incidents_device_last_detected", "incidents", ["device_id", "last_detected_at"])


def downgrade() -> None:
    op.drop_index("ix_incidents_device_last_detected", table_name="incidents")
    with op.batch_alter_table("incidents") as batch:
        batch.drop_column("also_detected")
        batch.drop_column("last_detected_at")
