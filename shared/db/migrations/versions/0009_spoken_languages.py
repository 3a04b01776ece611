"""Spoken distress words per device (issue 16): ``devices.spoken_languages``.

The languages whose distress phrases the device listens for (``shared.spoken``: ``ko``,
``en``), a JSON list; every device has both until it says otherwise, and ``[]`` turns spoken
words off for it (docs/spoken.md).

Revision ID: 0009
Revises: 0008
Create Date: 2026-12-23
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0009"
down_revision = "0008"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("devices") as batch:
        batch.add_column(
            sa.Column("spoken_languages", sa.JSON(), server_default=sa.text("""'["ko", "en"]'"""), nullable=False)
        )


def downgrade() -> None:
    with op.batch_alter_table("devices") as batch:
        batch.drop_column("spoken_languages")
