"""Mapped tables. Schema changes go through a revision in ``shared/db/migrations/versions/``.

A ``Device`` is one registered listener (a phone, a home speaker) together with the
profile of the person it protects, where it is, whom to tell, and what that person has
consented to. Its bearer token is never stored: only the SHA-256 of it.
"""

from __future__ import annotations

import enum
import uuid
from collections.abc import Iterable
from datetime import datetime
from typing import Any

from sqlalchemy import (
    JSON,
    Boolean,
    CheckConstraint,
    Enum,
    Float,
    ForeignKey,
    Index,
    Integer,
    String,
    Text,
    UniqueConstraint,
    false,
    func,
    text,
)
from sqlalchemy.orm import Mapped, mapped_column, relationship

from shared.db.base import Base
from shared.device_modes import DeviceProfile, ListeningMode
from shared.incident_state import (
    OPEN_INCIDENT_STATES,
    CancelKind,
    ContactEvent,
    DeliveryState,
    EvidenceMark,
    IncidentKind,
    IncidentOutcome,
    IncidentState,
)


def _in(column: str, values: Iterable[str]) -> str:
    return f"{column} IN ({', '.join(repr(str(v)) for v in values)})"


def _value_enum(values: type[enum.StrEnum]) -> Enum:
    # VARCHAR(16) holding the enum's values; reads come back as members and an unknown name
    # is refused before it reaches the database. The CHECK constraint is declared on the
    # table under the name the migrations gave it, so the type adds none of its own.
    return Enum(
        values, native_enum=False, create_constraint=False, length=16, validate_strings=True,
        values_callable=lambda members: [member.value for member in members],
    )

# A device's spoken_languages until it says otherwise (shared.spoken.LANGUAGES, both of them).
DEFAULT_SPOKEN_LANGUAGES = ("ko", "en")


class Device(Base):
    """A registered device and the profile of its owner.

    Consent flags are recorded as given, with ``consents_updated_at`` stamped by the
    database whenever any of them changes. ``consent_recording`` is true for every row the
    API writes (withdrawing it means deregistering); ``consent_location`` false means no
    location is kept; ``consent_share_profile`` false means the profile must not be sent
    to an agency.
    """

    __tablename__ = "devices"
    __table_args__ = (
        CheckConstraint(_in("listening_mode", ListeningMode), name="listening_mode"),
        CheckConstraint(_in("profile", DeviceProfile), name="profile"),
        CheckConstraint("inactivity_span_s IS NULL OR inactivity_span_s > 0", name="inactivity_span_s"),
    )
    # Fetch server-side defaults (timestamps) in the same statement, via RETURNING:
    # an expired attribute cannot be lazily loaded under asyncio.
    __mapper_args__ = {"eager_defaults": True}

    id: Mapped[uuid.UUID] = mapped_column(primary_key=True, default=uuid.uuid4)
    token_hash: Mapped[str] = mapped_column(String(64), unique=True)
    token_issued_at: Mapped[datetime] = mapped_column(server_default=func.now())

    owner_name: Mapped[str] = mapped_column(String(200))
    birth_year: Mapped[int] = mapped_column(Integer)
    medical_notes: Mapped[str | None] = mapped_column(Text)
    address: Mapped[str | None] = mapped_column(String(500))

    latitude: Mapped[float | None] = mapped_column(Float)
    longitude: Mapped[float | None] = mapped_column(Float)
    location_accuracy_m: Mapped[float | None] = mapped_column(Float)
    location_updated_at: Mapped[datetime | None]

    consent_recording: Mapped[bool] = mapped_column(Boolean)
    consent_location: Mapped[bool] = mapped_column(Boolean)
    consent_share_profile: Mapped[bool] = mapped_column(Boolean)
    consents_updated_at: Mapped[datetime] = mapped_column(server_default=func.now())

    created_at: Mapped[datetime] = mapped_column(server_default=func.now())
    updated_at: Mapped[datetime] = mapped_column(server_default=func.now(), onupdate=func.now())

    # The owner's duress PIN or phrase, hashed (shared/incidents/duress.py); null: none set.
    duress_code_hash: Mapped[str | None] = mapped_column(String(200))
    # The home this device listens in with others, and where in it ("kitchen").
    household_id: Mapped[uuid.UUID | None] = mapped_column(
        ForeignKey("households.id", ondelete="SET NULL"), index=True
    )
    room: Mapped[str | None] = mapped_column(String(100))
    # What is abnormal here besides the nine classes (shared/device_modes.py), and, in
    # alone mode, how long without a sound of activity is a concern (null: the default).
    listening_mode: Mapped[ListeningMode] = mapped_column(
        _value_enum(ListeningMode), default=ListeningMode.STANDARD, server_default=ListeningMode.STANDARD.value
    )
    profile: Mapped[DeviceProfile] = mapped_column(
        _value_enum(DeviceProfile), default=DeviceProfile.HOME, server_default=DeviceProfile.HOME.value
    )
    inactivity_span_s: Mapped[int | None] = mapped_column(Integer)
    # The languages whose distress phrases it listens for (shared/spoken, docs/spoken.md); [] is off.
    spoken_languages: Mapped[list[str]] = mapped_column(
        JSON, default=lambda: list(DEFAULT_SPOKEN_LANGUAGES), server_default=text("""'["ko", "en"]'""")
    )

    contacts: Mapped[list[EmergencyContact]] = relationship(
        back_populates="device",
        cascade="all, delete-orphan",
        passive_deletes=True,
        order_by="EmergencyContact.position",
    )


class EmergencyContact(Base):
    """Someone to tell (a guardian, a neighbour) when the device's owner is in trouble.

    ``position`` keeps the order the owner gave; the first contact is told first.
    """

    __tablename__ = "emergency_contacts"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    device_id: Mapped[uuid.UUID] = mapped_column(
        ForeignKey("devices.id", ondelete="CASCADE"), index=True
    )
    position: Mapped[int] = mapped_column(Integer)
    name: Mapped[str] = mapped_column(String(200))
    relation: Mapped[str] = mapped_column(String(100))
    phone: Mapped[str] = mapped_column(String(16))
    webhook_url: Mapped[str | None] = mapped_column(String(2000))
    email: Mapped[str | None] = mapped_column(String(254))

    device: Mapped[Device] = relationship(back_populates="contacts")


class Household(Base):
    """Devices of one home, which corroborate each other's detections. A device joins with
    the household's join code, stored only as its SHA-256."""

    __tablename__ = "households"
    __mapper_args__ = {"eager_defaults": True}

    id: Mapped[uuid.UUID] = mapped_column(primary_key=True, default=uuid.uuid4)
    name: Mapped[str] = mapped_column(String(200))
    join_code_hash: Mapped[str] = mapped_column(String(64), unique=True)
    created_at: Mapped[datetime] = mapped_column(server_default=func.now())


class ThresholdAdjustment(Base):
    """One change a home's cancels made to one class's threshold on one device. The
    device's threshold for the class is the newest row not undone; an undo stamps
    ``undone_at`` and keeps the row, so every adjustment stays in the log."""

    __tablename__ = "threshold_adjustments"
    __table_args__ = (Index("ix_threshold_adjustments_device_class", "device_id", "class_key", "created_at"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    device_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("devices.id", ondelete="CASCADE"))
    class_key: Mapped[str] = mapped_column(String(32))
    threshold_from: Mapped[float] = mapped_column(Float)
    threshold_to: Mapped[float] = mapped_column(Float)
    reason: Mapped[str] = mapped_column(String(32))
    # What it rests on: the cancelled incidents, their similarity, the bounds applied.
    evidence: Mapped[dict[str, Any]] = mapped_column(JSON)
    created_at: Mapped[datetime]
    undone_at: Mapped[datetime | None]


# --- Incidents (alerting). States and transitions: shared/incident_state.py; lifecycle:
# shared/incidents/ (package); guarantees: docs/incidents.md.

class Incident(Base):
    """One emergency event on one device, from detection to report or cancel.

    ``detected_at`` and ``deadline_at`` come from the database clock. A device has at most
    one open incident (partial unique index), so concurrent detections add evidence to it.
    """

    __tablename__ = "incidents"
    __table_args__ = (
        CheckConstraint(_in("state", IncidentState), name="state"),
        CheckConstraint(_in("evidence", EvidenceMark), name="evidence"),
        CheckConstraint(f"cancel_kind IS NULL OR {_in('cancel_kind', CancelKind)}", name="cancel_kind"),
        CheckConstraint(_in("kind", IncidentKind), name="kind"),
        Index("ix_incidents_due", "state", "deadline_at"),
        Index("ix_incidents_device_detected", "device_id", "detected_at"),
        Index("ix_incidents_device_last_detected", "device_id", "last_detected_at"),
        Index(
            "ix_incidents_retention",
            "detected_at",
            sqlite_where=text("personal_data_deleted_at IS NULL"),
            postgresql_where=text("personal_data_deleted_at IS NULL"),
        ),
        Index(
            "uq_incidents_open_per_device",
            "device_id",
            unique=True,
            sqlite_where=text(_in("state", OPEN_INCIDENT_STATES)),
            postgresql_where=text(_in("state", OPEN_INCIDENT_STATES)),
        ),
    )

    id: Mapped[uuid.UUID] = mapped_column(primary_key=True, default=uuid.uuid4)
    device_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("devices.id", ondelete="CASCADE"))
    session_id: Mapped[str | None] = mapped_column(String(64))
    # What opened it, and so where it goes (shared/incident_state.py IncidentKind). An
    # anomaly's class_key is the nine-class key nearest to what was heard ("normal" when
    # the nine-class detector does not agree); ``anomaly`` holds its score, threshold, model
    # version and reason ("sound" or "inactivity").
    kind: Mapped[IncidentKind] = mapped_column(
        _value_enum(IncidentKind), default=IncidentKind.EMERGENCY, server_default=IncidentKind.EMERGENCY.value
    )
    anomaly: Mapped[dict[str, Any] | None] = mapped_column(JSON)
    class_key: Mapped[str] = mapped_column(String(32))
    # Other emergency classes detected while it was open, in order: the report goes to their
    # agencies too (a break-in heard during a cry for help's countdown reaches the police).
    also_detected: Mapped[list[str]] = mapped_column(JSON, default=list)
    # A class was added while the report was being sent: its agencies are not planned yet. The
    # sweeper adds them and clears this; the incident is not settled while it is set.
    routing_due: Mapped[bool] = mapped_column(Boolean, default=False, server_default=false())
    confidence: Mapped[float] = mapped_column(Float)
    # [{"t": seconds from detected_at, "class": key, "score": float}, ...]
    score_timeline: Mapped[list[dict[str, Any]]] = mapped_column(JSON)
    detections: Mapped[int] = mapped_column(Integer, default=1)
    # How the evidence went during the countdown (shared/incidents/evidence.py), and what it
    # rests on: {"renewals", "classes_heard", "alarm_patterns", "spoken", "heard_s",
    # "quiet_share", "shortened": {"from", "to", "reason"} or null}; null until first judged.
    evidence: Mapped[EvidenceMark] = mapped_column(_value_enum(EvidenceMark), default=EvidenceMark.STEADY)
    evidence_summary: Mapped[dict[str, Any] | None] = mapped_column(JSON)
    detected_at: Mapped[datetime]
    # The latest detection added to it (a report is joined by the same event going on:
    # shared.incidents.lifecycle.SAME_EVENT_S).
    last_detected_at: Mapped[datetime]
    deadline_at: Mapped[datetime]
    state: Mapped[IncidentState] = mapped_column(_value_enum(IncidentState))
    state_changed_at: Mapped[datetime]
    # "deadline" or "confirmed": what made it go out; None until it does.
    trigger: Mapped[str | None] = mapped_column(String(16))
    cancel_reason: Mapped[str | None] = mapped_column(String(200))
    cancel_kind: Mapped[CancelKind | None] = mapped_column(_value_enum(CancelKind))
    # A short description of the detected sound (shared/incidents/sound_signature.py), to
    # compare one false alarm with the next.
    sound_signature: Mapped[list[float] | None] = mapped_column(JSON)
    # Cancelled with the owner's duress code: the device sees a cancel, the report goes on.
    duress_at: Mapped[datetime | None]
    # What the other devices of the household heard at the detection
    # (shared/household/corroboration.py); null until judged, or without a household.
    corroboration: Mapped[dict[str, Any] | None] = mapped_column(JSON)
    latitude: Mapped[float | None] = mapped_column(Float)
    longitude: Mapped[float | None] = mapped_column(Float)
    location_accuracy_m: Mapped[float | None] = mapped_column(Float)
    # Privacy (docs/incidents.md#privacy): the owner's explicit consent to keep a cancelled
    # incident's clip for training, and when retention deleted its audio and personal data.
    clip_donated_at: Mapped[datetime | None]
    personal_data_deleted_at: Mapped[datetime | None]


class _DeliveryColumns:
    """One message to send exactly once: the outbox state machine shared by agencies and contacts.

    ``id`` is the idempotency key (``webhook-id``). ``payload`` is fixed at the first
    attempt so every retry sends the same bytes. A ``sending`` row belongs to
    ``lease_owner`` until ``lease_until`` or until that worker stops heartbeating.
    """

    id: Mapped[uuid.UUID] = mapped_column(primary_key=True, default=uuid.uuid4)
    incident_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("incidents.id", ondelete="CASCADE"))
    position: Mapped[int] = mapped_column(Integer)
    kind: Mapped[str] = mapped_column(String(16))
    state: Mapped[DeliveryState] = mapped_column(_value_enum(DeliveryState))
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    next_attempt_at: Mapped[datetime]
    enqueued_at: Mapped[datetime | None]
    lease_owner: Mapped[str | None] = mapped_column(String(64))
    lease_until: Mapped[datetime | None]
    payload: Mapped[str | None] = mapped_column(Text)
    target: Mapped[str | None] = mapped_column(String(2000))
    last_status: Mapped[int | None] = mapped_column(Integer)
    last_error: Mapped[str | None] = mapped_column(Text)
    created_at: Mapped[datetime]
    sent_at: Mapped[datetime | None]


class DispatchOutbox(_DeliveryColumns, Base):
    """The report of one incident to one agency through one of its channels (``position``)."""

    __tablename__ = "dispatch_outbox"
    __table_args__ = (
        UniqueConstraint("incident_id", "agency_id", "position", name="uq_dispatch_outbox_delivery"),
        CheckConstraint(_in("state", DeliveryState), name="state"),
        Index("ix_dispatch_outbox_due", "state", "next_attempt_at"),
    )

    agency_id: Mapped[str] = mapped_column(String(64))


class ContactNotification(_DeliveryColumns, Base):
    """Telling one emergency contact about one incident event through one channel."""

    __tablename__ = "contact_notifications"
    __table_args__ = (
        UniqueConstraint("incident_id", "contact_id", "event", "position", name="uq_contact_notifications_delivery"),
        CheckConstraint(_in("state", DeliveryState), name="state"),
        CheckConstraint(_in("event", ContactEvent), name="event"),
        Index("ix_contact_notifications_due", "state", "next_attempt_at"),
    )

    contact_id: Mapped[int] = mapped_column(ForeignKey("emergency_contacts.id", ondelete="CASCADE"))
    event: Mapped[ContactEvent] = mapped_column(_value_enum(ContactEvent))


class IncidentClip(Base):
    """The archived audio of an incident: where it is stored and its SHA-256."""

    __tablename__ = "incident_clips"

    incident_id: Mapped[uuid.UUID] = mapped_column(
        ForeignKey("incidents.id", ondelete="CASCADE"), primary_key=True
    )
    key: Mapped[str] = mapped_column(String(200))
    sha256: Mapped[str] = mapped_column(String(64))
    duration_s: Mapped[float] = mapped_column(Float)
    size_bytes: Mapped[int] = mapped_column(Integer)
    content_type: Mapped[str] = mapped_column(String(64))
    created_at: Mapped[datetime]


class AuditEntry(Base):
    """Every incident state change and delivery outcome, by whom, on the database clock."""

    __tablename__ = "audit_log"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    incident_id: Mapped[uuid.UUID | None] = mapped_column(
        ForeignKey("incidents.id", ondelete="CASCADE"), index=True
    )
    at: Mapped[datetime]
    actor: Mapped[str] = mapped_column(String(64))
    event: Mapped[str] = mapped_column(String(64))
    detail: Mapped[dict[str, Any]] = mapped_column(JSON)


class IncidentOutcomeRecord(Base):
    """What one agency found for one reported incident (the outcome ledger). A later answer
    from the same agency replaces the row; every answer stays in the audit trail. ``message_id``
    and ``signed_at`` are the callback's ``webhook-id`` and ``webhook-timestamp``: an older
    message than the recorded one cannot replace it."""

    __tablename__ = "incident_outcomes"
    __table_args__ = (
        UniqueConstraint("incident_id", "agency_id", name="uq_incident_outcomes_agency"),
        CheckConstraint(_in("outcome", IncidentOutcome), name="outcome"),
    )
    __mapper_args__ = {"eager_defaults": True}

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    incident_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("incidents.id", ondelete="CASCADE"))
    agency_id: Mapped[str] = mapped_column(String(64))
    outcome: Mapped[IncidentOutcome] = mapped_column(
        Enum(IncidentOutcome, native_enum=False, create_constraint=False, length=24, validate_strings=True,
             values_callable=lambda members: [member.value for member in members])
    )
    note: Mapped[str | None] = mapped_column(String(500))
    message_id: Mapped[str] = mapped_column(String(255))
    signed_at: Mapped[datetime]
    received_at: Mapped[datetime]


class AlertingWorker(Base):
    """A live alerting worker; a lease whose owner stopped heartbeating is re-driven early."""

    __tablename__ = "alerting_workers"

    id: Mapped[str] = mapped_column(String(64), primary_key=True)
    hostname: Mapped[str] = mapped_column(String(255))
    pid: Mapped[int] = mapped_column(Integer)
    started_at: Mapped[datetime]
    heartbeat_at: Mapped[datetime]
