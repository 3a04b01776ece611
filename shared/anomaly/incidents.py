"""Anomaly incidents: opened by away/alone mode, told to the contacts, never to an agency alone.

An anomaly opens a ``pending`` incident of kind ``anomaly`` with class ``normal`` and the
ordinary countdown; its contacts are queued a "detected" notice (with a link to listen to
the clip) in the same transaction, as for every incident. At the deadline the sweeper
claims it as any other, and :func:`settle_contacts_only` settles it at once as
``dispatched`` with no agency row: the contacts hear that nobody cancelled it. If the
nine-class detector fires while it is open, the detection joins it as evidence and
:func:`shared.anomaly.promotion.promote_to_emergency` makes it an emergency of that class, which then goes the
normal route (one open incident per device).
"""

from __future__ import annotations

import uuid
from typing import Any

from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from shared.db import Database
from shared.db.clock import db_now
from shared.db.models import Device, Incident
from shared.incident_events import IncidentEvents
from shared.incident_state import ContactEvent, IncidentKind, IncidentState
from shared.incidents.audit import add_audit
from shared.incidents.contacts import add_contact_notifications
from shared.incidents.moves import move_incident
from shared.incidents.views import DeviceTokenChanged, OpenedIncident, read_incident

ANOMALY_CLASS = "normal"


async def open_anomaly_incident(
    db: Database,
    *,
    device_id: uuid.UUID,
    anomaly: dict[str, Any],
    countdown_s: float,
    session_id: str | None = None,
    events: IncidentEvents | None = None,
    actor: str = "gateway",
    token_hash: str | None = None,
) -> OpenedIncident | None:
    """Open an anomaly incident (``anomaly``: score, threshold, model_version, reason and what
    else the reason has). None when the device already has an open incident, which stands for
    it; LookupError for an unknown device. ``token_hash`` as ``open_incident``'s: checked in the
    same transaction, :class:`DeviceTokenChanged` when it is no longer the device's."""
    try:
        async with db.session() as session:
            device = await session.get(Device, device_id)
            DeviceTokenChanged.check(device, token_hash)
            if device is None:
                raise LookupError(f"no device {device_id}")
            incident_id = uuid.uuid4()
            session.add(
                Incident(
                    id=incident_id, device_id=device_id, session_id=session_id, kind=IncidentKind.ANOMALY,
                    anomaly=anomaly, class_key=ANOMALY_CLASS, confidence=0.0, score_timeline=[], detections=1,
                    detected_at=db_now(), last_detected_at=db_now(), deadline_at=db_now(countdown_s),
                    state=IncidentState.PENDING, state_changed_at=db_now(),
                )
            )
            await session.flush()
            await add_contact_notifications(session, incident_id, device_id, ContactEvent.DETECTED)
            add_audit(session, incident_id, actor, "opened", {"kind": IncidentKind.ANOMALY.value, **anomaly})
            await session.flush()
            view = await read_incident(session, incident_id)
            assert view is not None
    except IntegrityError:
        return None  # an open incident holds the device's one slot
    if events is not None:
        await events.publish(view.as_update({"kind": IncidentKind.ANOMALY.value, "anomaly": anomaly}))
    return OpenedIncident(view, created=True)


async def settle_contacts_only(session: AsyncSession, incident_id: uuid.UUID, device_id: uuid.UUID, actor: str) -> bool:
    """A claimed (``dispatching``) anomaly settles as reported to its contacts only, in the
    caller's transaction: ``dispatched`` with no agency, the contacts told nobody cancelled it."""
    settled = (
        await session.execute(
            move_incident(IncidentState.DISPATCHING, IncidentState.DISPATCHED, Incident.id == incident_id)
            .returning(Incident.id)
        )
    ).first()
    if settled is None:
        return False
    await add_contact_notifications(session, incident_id, device_id, ContactEvent.DISPATCHED)
    add_audit(session, incident_id, actor, IncidentState.DISPATCHED.value, {"reached": [], "contacts_only": True})
    return True


async def publish_settled(db: Database, events: IncidentEvents, incident_id: uuid.UUID) -> None:
    """Tell the gateways an anomaly settled with its contacts (after the claim's commit)."""
    async with db.session() as session:
        view = await read_incident(session, incident_id)
    if view is not None:
        await events.publish(view.as_update({"reached": [], "missed": [], "contacts_only": True}))
