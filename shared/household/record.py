"""Writing a household's corroboration of a detection: ``incidents.corroboration``, the links
between incidents of one home, and the earlier deadline corroboration may earn.

One transaction per judgement. Its first statement takes the household row (``UPDATE
households ... WHERE id = ...``: the row lock on PostgreSQL, the database lock on SQLite), so
the judgements of one home are written one at a time and two devices linking their incidents
to each other never wait on each other's rows. Then:

* the peers' own incidents of the class detected within the span (not cancelled) are linked:
  this incident's corroboration names them, and each of them already judged gets this one's
  id and its device as a supporting peer. Both reports still go out: two reports of one home
  are shown as one event, never merged into one (a merge could lose a report);
* the corroboration is stored and audited (``corroborated``);
* when another device detected the class too, the class's shortening rule
  (:func:`shared.incidents.corroborated_deadline`) may move the deadline earlier, by the same
  conditional UPDATE as growing evidence (only while pending, only earlier, audited), and
  the move is published after the commit so the device's countdown follows.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

from sqlalchemy import select, update
from sqlalchemy.ext.asyncio import AsyncSession

from shared.db import Database
from shared.db.clock import db_now
from shared.db.models import Device, Household, Incident
from shared.household.corroboration import Corroboration, Peer, place_phrase
from shared.incident_events import IncidentEvents
from shared.incident_state import IncidentState
from shared.incidents import (
    EvidencePolicy,
    IncidentView,
    Shortening,
    add_audit,
    corroborated_deadline,
    shorten_deadline,
)
from shared.incidents.views import read_incident


@dataclass(frozen=True)
class CorroborationRecorded:
    """The incident after its corroboration was written, as judged and linked."""

    incident: IncidentView
    corroboration: Corroboration
    shortening: Shortening | None


async def household_peers(db: Database, device_id: uuid.UUID) -> tuple[uuid.UUID | None, list[Peer]]:
    """The device's household now (None: it has none) and its other devices."""
    async with db.session() as session:
        household_id = await session.scalar(select(Device.household_id).where(Device.id == device_id))
        if household_id is None:
            return None, []
        devices = await session.scalars(
            select(Device).where(Device.household_id == household_id, Device.id != device_id).order_by(Device.created_at)
        )
        return household_id, [_peer(device) for device in devices]


async def record_corroboration(
    db: Database,
    incident_id: uuid.UUID,
    household_id: uuid.UUID,
    corroboration: Corroboration,
    *,
    span_s: float,
    policy: EvidencePolicy,
    countdown_s: float,
    events: IncidentEvents | None = None,
    actor: str = "gateway",
) -> CorroborationRecorded | None:
    """Store ``corroboration`` on the incident, linked to the peers' incidents of the class
    detected within ``span_s`` of it, and shorten its countdown when ``policy`` says so
    (module docstring). None, writing nothing, when the household or the incident is gone."""
    async with db.session() as session:
        locked = (
            await session.execute(
                update(Household)
                .where(Household.id == household_id)
                .values(name=Household.name)
                .returning(db_now())
                .execution_options(synchronize_session=False)
            )
        ).first()
        incident = await session.get(Incident, incident_id, populate_existing=True)
        if locked is None or incident is None:
            return None
        now = locked[0]
        peers = await _peer_incidents(session, incident, household_id, span_s)
        devices = {str(d.id): d for d in await session.scalars(
            select(Device).where(Device.id.in_([incident.device_id, *(peer.device_id for peer in peers)]))
        )}  # fmt: skip
        links = {str(peer.device_id): str(peer.id) for peer in reversed(peers)}  # each device's earliest
        judged = corroboration.linked(links, {key: _peer(device) for key, device in devices.items()})
        incident.corroboration = judged.to_json()
        for peer in peers:
            _link_back(peer, incident, _peer(devices[str(incident.device_id)]))
        add_audit(session, incident_id, actor, "corroborated", {
            "peers_listening": judged.peers_listening, "supporting": len(judged.supporting),
            "only_this_device": judged.only_this_device, "linked_incidents": list(judged.linked_incidents),
        })  # fmt: skip
        shortening = None
        if judged.detected_by_peer and incident.state is IncidentState.PENDING:
            detector = next(s for s in judged.supporting if s.detected)
            shortening = corroborated_deadline(
                policy.shortening, incident.class_key, place_phrase(detector.room, detector.name),
                detected_at=incident.detected_at, deadline_at=incident.deadline_at, now=now, countdown_s=countdown_s,
            )  # fmt: skip
            if shortening is not None:
                summary = dict(incident.evidence_summary or {})
                shortening = await shorten_deadline(session, incident, shortening, summary, actor)
        await session.flush()
        view = await read_incident(session, incident_id)
        assert view is not None
    if events is not None and shortening is not None:
        await events.publish(view.as_update({"shortened": shortening.reason}))
    return CorroborationRecorded(view, judged, shortening)


async def _peer_incidents(
    session: AsyncSession, incident: Incident, household_id: uuid.UUID, span_s: float
) -> list[Incident]:
    """The household's other devices' incidents of the class detected within ``span_s``, not
    cancelled, earliest first."""
    span = timedelta(seconds=span_s)
    members = select(Device.id).where(Device.household_id == household_id, Device.id != incident.device_id)
    return list(
        await session.scalars(
            select(Incident)
            .where(
                Incident.device_id.in_(members),
                Incident.class_key == incident.class_key,
                Incident.state != IncidentState.CANCELLED,
                # Cancelled under duress is cancelled for every device of the home: it neither
                # corroborates another incident nor is changed by one (shared/incidents/duress_cancel.py).
                Incident.duress_at.is_(None),
                Incident.detected_at.between(incident.detected_at - span, incident.detected_at + span),
            )
            .order_by(Incident.detected_at)
        )
    )


def _link_back(peer: Incident, incident: Incident, device: Peer) -> None:
    """Name ``incident`` (of ``device``) in ``peer``'s corroboration, when that is judged already."""
    judged: dict[str, Any] | None = peer.corroboration
    if judged is None or str(incident.id) in (judged.get("linked_incidents") or []):
        return
    key = str(device.device_id)
    supporting = [s for s in judged.get("supporting") or [] if s.get("device_id") != key]
    known = next((s for s in judged.get("supporting") or [] if s.get("device_id") == key), None)
    entry = known or {"device_id": key, "room": device.room, "name": device.name, "class": peer.class_key,
                      "score": 0.0, "loud_db": None}  # fmt: skip
    supporting.insert(0, {**entry, "how": "same_class", "detected": True, "incident_id": str(incident.id)})
    # A new dict: the JSON column is not tracked for changes made inside it.
    listening = sorted({*(judged.get("listening") or []), key})
    peer.corroboration = {
        **judged,
        "peers_listening": len(listening),
        "listening": listening,
        "supporting": supporting,
        "only_this_device": False,
        "detected_by_peer": True,
        "linked_incidents": sorted({*(judged.get("linked_incidents") or []), str(incident.id)}),
    }


def _peer(device: Device) -> Peer:
    return Peer(device.id, device.room, device.owner_name if device.consent_share_profile else None)
