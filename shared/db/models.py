"""Mapped tables. Schema changes go through a revision in ``shared/db/migrations/versions/``.

A ``Device`` is one registered listener (a phone, a home speaker) together with the
profile of the person it protects, where it is, whom to tell, and what that person has
consented to. Its bearer token is never stored: only the SHA-256 of it.
"""

from __future__ import annotations

import uuid
from datetime import datetime

from sqlalchemy import Boolean, Float, ForeignKey, Integer, String, Text, func
from sqlalchemy.orm import Mapped, mapped_column, relationship

from shared.db.base import Base


class Device(Base):
    """A registered device and the profile of its owner.

    Consent flags are recorded as given, with ``consents_updated_at`` stamped by the
    database whenever any of them changes. ``consent_recording`` is true for every row the
    API writes (withdrawing it means deregistering); ``consent_location`` false means no
    location is kept; ``consent_share_profile`` false means the profile must not be sent
    to an agency.
    """

    __tablename__ = "devices"
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
