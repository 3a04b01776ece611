"""Incidents, their dispatch outbox, contact notifications, clips, audit log, worker heartbeats.

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-22
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None

OPEN_STATES = sa.text("state IN ('pending', 'dispatching')")
DELIVERY_STATES = "state IN ('standby', 'pending', 'sending', 'sent', 'failed', 'skipped')"


def _delivery_columns() -> list[sa.Column]:  # type: ignore[type-arg]
    return [
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column("incident_id", sa.Uuid(), nullable=False),
        sa.Column("position", sa.Integer(), nullable=False),
        sa.Column("kind", sa.String(length=16), nullable=False),
        sa.Column("state", sa.String(length=16), nullable=False),
        sa.Column("attempts", sa.Integer(), nullable=False),
        sa.Column("next_attempt_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("enqueued_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("lease_owner", sa.String(length=64), nullable=True),
        sa.Column("lease_until", sa.DateTime(timezone=True), nullable=True),
        sa.Column("payload", sa.Text(), nullable=True),
        sa.Column("target", sa.String(length=2000), nullable=True),
        sa.Column("last_status", sa.Integer(), nullable=True),
        sa.Column("last_error", sa.Text(), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("sent_at", sa.DateTime(timezone=True), nullable=True),
    ]


def upgrade() -> None:
    op.create_table(
        "incidents",
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column("device_id", sa.Uuid(), nullable=False),
        sa.Column("session_id", sa.String(length=64), nullable=True),
        sa.Column("class_key", sa.String(length=32), nullable=False),
        sa.Column("confidence", sa.Float(), nullable=False),
        sa.Column("score_timeline", sa.JSON(), nullable=False),
        sa.Column("detections", sa.Integer(), nullable=False),
        sa.Column("detected_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("deadline_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("state", sa.String(length=16), nullable=False),
        sa.Column("state_changed_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("trigger", sa.String(length=16), nullable=True),
        sa.Column("cancel_reason", sa.String(length=200), nullable=True),
        sa.Column("latitude", sa.Float(), nullable=True),
        sa.Column("longitude", sa.Float(), nullable=True),
        sa.Column("location_accuracy_m", sa.Float(), nullable=True),
        sa.CheckConstraint(
            "state IN ('pending', 'cancelled', 'dispatching', 'dispatched', 'failed')",
            name=op.f("ck_incidents_state"),
        ),
        sa.ForeignKeyConstraint(
            ["device_id"], ["devices.id"], name=op.f("fk_incidents_device_id_devices"), ondelete="CASCADE"
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_incidents")),
    )
    op.create_index("ix_incidents_due", "incidents", ["state", "deadline_at"])
    op.create_index("ix_incidents_device_detected", "incidents", ["device_id", "detected_at"])
    # One open incident per device: a second detection adds evidence instead.
    op.create_index(
        "uq_incidents_open_per_device", "incidents", ["device_id"], unique=True,
        sqlite_where=OPEN_STATES, postgresql_where=OPEN_STATES,
    )

    op.create_table(
        "dispatch_outbox",
        sa.Column("agency_id", sa.String(length=64), nullable=False),
        *_delivery_columns(),
        sa.CheckConstraint(DELIVERY_STATES, name=op.f("ck_dispatch_outbox_state")),
        sa.ForeignKeyConstraint(
            ["incident_id"], ["incidents.id"],
            name=op.f("fk_dispatch_outbox_incident_id_incidents"), ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_dispatch_outbox")),
        sa.UniqueConstraint("incident_id", "agency_id", "position", name="uq_dispatch_outbox_delivery"),
    )
    op.create_index("ix_dispatch_outbox_due", "dispatch_outbox", ["state", "next_attempt_at"])

    op.create_table(
        "contact_notifications",
        sa.Column("contact_id", sa.Integer(), nullable=False),
        sa.Column("event", sa.String(length=16), nullable=False),
        *_delivery_columns(),
        sa.CheckConstraint(
            "event IN ('detected', 'dispatched', 'cancelled', 'failed')", name=op.f("ck_contact_notifications_event")
        ),
        sa.CheckConstraint(DELIVERY_STATES, name=op.f("ck_contact_notifications_state")),
        sa.ForeignKeyConstraint(
            ["contact_id"], ["emergency_contacts.id"],
            name=op.f("fk_contact_notifications_contact_id_emergency_contacts"), ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["incident_id"], ["incidents.id"],
            name=op.f("fk_contact_notifications_incident_id_incidents"), ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_contact_notifications")),
        sa.UniqueConstraint(
            "incident_id", "contact_id", "event", "position", name="uq_contact_notifications_delivery"
        ),
    )
    op.create_index("ix_contact_notifications_due", "contact_notifications", ["state", "next_attempt_at"])

    op.create_table(
        "incident_clips",
        sa.Column("incident_id", sa.Uuid(), nullable=False),
        sa.Column("key", sa.String(length=200), nullable=False),
        sa.Column("sha256", sa.String(length=64), nullable=False),
        sa.Column("duration_s", sa.Float(), nullable=False),
        sa.Column("size_bytes", sa.Integer(), nullable=False),
        sa.Column("content_type", sa.String(length=64), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["incident_id"], ["incidents.id"],
            name=op.f("fk_incident_clips_incident_id_incidents"), ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("incident_id", name=op.f("pk_incident_clips")),
    )

    op.create_table(
        "audit_log",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("incident_id", sa.Uuid(), nullable=True),
        sa.Column("at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("actor", sa.String(length=64), nullable=False),
        sa.Column("event", sa.String(length=64), nullable=False),
        sa.Column("detail", sa.JSON(), nullable=False),
        sa.ForeignKeyConstraint(
            ["incident_id"], ["incidents.id"], name=op.f("fk_audit_log_incident_id_incidents"), ondelete="CASCADE"
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_audit_log")),
    )
    op.create_index(op.f("ix_audit_log_incident_id"), "audit_log", ["incident_id"])

    op.create_table(
        "alerting_workers",
        sa.Column("id", sa.String(length=64), nullable=False),
        sa.Column("hostname", sa.String(length=255), nullable=False),
        sa.Column("pid", sa.Integer(), nullable=False),
        sa.Column("started_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("heartbeat_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_alerting_workers")),
    )


def downgrade() -> None:
    op.drop_table("alerting_workers")
    op.drop_index(op.f("ix_audit_log_incident_id"), table_name="audit_log")
    op.drop_table("audit_log")
    op.drop_table("incident_clips")
    op.drop_index("ix_contact_notifications_due", table_name="contact_notifications")
    op.drop_table("contact_notifications")
    op.drop_index("ix_dispatch_outbox_due", table_name="dispatch_outbox")
    op.drop_table("dispatch_outbox")
    op.drop_index("uq_incidents_open_per_device", table_name="incidents")
    op.drop_index("ix_incidents_device_detected", table_name="incidents")
    op.drop_index("ix_incidents_due", table_name="incidents")
    op.drop_table("incidents")
