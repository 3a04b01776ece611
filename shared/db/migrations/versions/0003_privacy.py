"""Privacy: a false alarm's clip donated for training, and an incident's retention done.

``incidents.clip_donated_at``: when the owner gave explicit consent to keep the clip of a
cancelled incident for training (the grace deletion skips it). ``incidents.personal_data_deleted_at``:
when retention deleted the incident's audio and personal data (the row and its audit trail stay).

Revision ID: 0003
Revises: 0002
Create Date: 2026-12-05
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None

NOT_YET_EXPIRED = sa.text("personal_data_deleted_at IS NULL")


def upgrade() -> None:
    with op.batch_alter_table("incidents") as batch:
        batch.add_column(sa.Column("clip_donated_at", sa.DateTime(timezone=True), nullable=True))
        batch.add_column(sa.Column("personal_data_deleted_at", sa.DateTime(timezone=True), nullable=True))
    # The retention job's scan: incidents still holding personal data, oldest first.
    op.create_index(
        "ix_incidents_retention", "incidents", ["detected_at"],
        sqlite_where=NOT_YET_EXPIRED, postgresql_where=NOT_YET_EXPIRED,
    )


def downgrade() -> None:
    op.drop_index("ix_incidents_retention", table_name="incidents")
    with op.batch_alter_table("incidents") as batch:
        batch.drop_column("personal_data_deleted_at")
        batch.drop_column("clip_donated_at")
