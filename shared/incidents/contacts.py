"""Telling an incident's emergency contacts: the notices queued in ``contact_notifications``.

Each contact gets its webhook (when it has one) and then, only if that fails, an SMS. The
alerting worker sends them; this module only queues and withdraws, in the caller's transaction.
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from datetime import datetime

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from shared.db.clock import db_now
from shared.db.models import ContactNotification, EmergencyContact
from shared.incident_state import ContactEvent, DeliveryState
from shared.incidents.moves import move_deliveries


async def add_contact_notifications(
    session: AsyncSession,
    incident_id: uuid.UUID,
    device_id: uuid.UUID,
    event: ContactEvent,
    only_contacts: set[int] | None = None,
) -> int:
    """Queue ``event`` for each emergency contact of the device (in the caller's transaction).

    Each contact gets its webhook (when it has one) then an SMS as the fallback. Returns
    how many contacts were queued.
    """
    contacts = (
        await session.scalars(
            select(EmergencyContact).where(EmergencyContact.device_id == device_id).order_by(EmergencyContact.position)
        )
    ).all()
    if only_contacts is not None:
        contacts = [contact for contact in contacts if contact.id in only_contacts]
    return queue_contact_notifications(session, incident_id, contacts, event)


def queue_contact_notifications(
    session: AsyncSession, incident_id: uuid.UUID, contacts: Sequence[EmergencyContact], event: ContactEvent,
    now: datetime | None = None,
) -> int:
    """Queue ``event`` for each of ``contacts`` (the device's, in their order), when the caller
    has read them already: ``add_contact_notifications`` without its query. ``now``: the
    database's time, when the caller read it in this transaction; rows with plain values are
    written in one statement, rows with the clock's expression one statement each."""
    stamp = db_now() if now is None else now
    for contact in contacts:
        kinds = (["webhook"] if contact.webhook_url else []) + ["sms"]
        for position, kind in enumerate(kinds):
            session.add(
                ContactNotification(
                    incident_id=incident_id, contact_id=contact.id, event=event, position=position, kind=kind,
                    state=DeliveryState.PENDING if position == 0 else DeliveryState.STANDBY, attempts=0,
                    next_attempt_at=stamp, created_at=stamp,
                )
            )
    return len(contacts)


async def withdraw_detection_notices(session: AsyncSession, incident_id: uuid.UUID, device_id: uuid.UUID) -> None:
    """After a cancel: contacts not yet told of the detection never will be; those told hear of the cancel."""
    await session.execute(
        move_deliveries(
            ContactNotification, (DeliveryState.PENDING, DeliveryState.STANDBY), DeliveryState.SKIPPED,
            ContactNotification.incident_id == incident_id,
            ContactNotification.event == ContactEvent.DETECTED,
            ContactNotification.attempts == 0,
        )
    )
    told = await session.scalars(
        select(ContactNotification.contact_id).where(
            ContactNotification.incident_id == incident_id,
            ContactNotification.event == ContactEvent.DETECTED,
            ContactNotification.state != DeliveryState.SKIPPED,
        ).distinct()
    )
    await add_contact_notifications(session, incident_id, device_id, ContactEvent.CANCELLED, set(told))
