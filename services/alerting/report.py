"""What an agency and a guardian receive, built once per delivery and then sent unchanged.

An agency report (``type: incident.reported``) carries, under ``data``:

* ``incident_id``, ``agency`` (id, name), ``class`` (key, id, Korean and English label);
* ``kind``: what opened the incident (``emergency``: the class was heard; ``child_safety``: the
  daycare profile heard a child crying with adult shouting and blows, docs/daycare.md);
* ``confidence`` and ``score_timeline`` (``t`` seconds from the detection, class, score: the
  10 s before it and what the gateway kept hearing during the countdown);
* ``evidence``: how that went (docs/evidence.md): ``mark`` (``growing``, ``steady`` or
  ``faded``), ``detections``, ``renewals`` (per class, detected again), ``classes_heard``,
  ``alarm_patterns``, ``spoken``, ``phrases`` (the distress words heard, "heard: '살려주세요'
  ×2", or null; docs/spoken.md), ``quiet_share`` and ``shortened`` (``from``, ``to``,
  ``reason`` when growing evidence brought the report forward, else null);
* ``detected_at``, ``deadline_at``, ``reported_at`` (database clock, ISO 8601 UTC) and
  ``trigger`` (``deadline``, ``confirmed`` or ``duress``);
* ``corroboration``: what the other devices of the person's household heard at the moment of
  the detection (docs/evidence.md): ``peers_listening``, ``supporting`` (each device's room,
  ``how``: ``same_class`` or ``loud``, its score and how many dB over its usual level, its own
  incident when it reported one too), ``only_this_device``, ``linked_incidents`` (the same
  event reported by another device of the home: both reports are sent), the detecting device's
  ``room`` and ``summary``, a sentence ("heard in the kitchen and the bedroom"); null when not
  judged (no household, or no other device in it);
* ``duress``: true when the person cancelled with their duress code (the report goes to the
  police whatever the class, and their device shows it cancelled), then ``duress_note`` says
  so for the dispatcher (``en``, ``ko``, ``cancelled_at``); else false and null;
* ``location`` (latitude, longitude, accuracy_m, map_url, source, address) when the person
  consented to location, else null; the session's position at detection wins over the
  registered one;
* ``profile`` (name, birth_year, medical_notes) only when the person consented to sharing it;
* ``clip``: an expiring link (see :mod:`services.alerting.archive`);
* ``history``: this person's earlier reports, newest first;
* ``outcome_callback``: where and with which secret the agency answers what it found
  (:mod:`shared.outcome_callback`), or null when the deployment has no key for it.

A guardian's notice (``type: incident.detected|dispatched|cancelled|failed``) carries the
event, class, kind, times, the owner's name, the agencies and, once reported, the location.
"""

from __future__ import annotations

import json
import uuid
from datetime import datetime
from typing import Any

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from services.alerting.anomaly_notice import anomaly_notice_data
from services.alerting.archive import clip_for_report
from services.alerting.routing import Router, reported_classes
from shared.clips import CLIP_AFTER_S, ClipStore
from shared.db import Database, Device, EmergencyContact
from shared.db.clock import db_now
from shared.db.models import ContactNotification, DispatchOutbox, Incident, IncidentClip
from shared.household import where_heard
from shared.incident_state import ContactEvent, DeliveryState, IncidentKind, IncidentState
from shared.incidents import ClipInfo
from shared.incidents.duress import DURESS_NOTE
from shared.outcome_callback import OutcomeCallbacks
from shared.taxonomy import by_key

REPORTED_STATES = (IncidentState.DISPATCHED, IncidentState.FAILED)
# The notices of a settled report: they name the agencies it reached (or missed) and the place.
SETTLED_EVENTS = tuple(ContactEvent.settled_as(state) for state in REPORTED_STATES)
# How long after the clip's end the gateway may take to encode and store it.
CLIP_UPLOAD_SLACK_S = 3.0


class ReportBuilder:
    """Builds payload bytes from the database for one outbox or notification row."""

    def __init__(
        self, db: Database, router: Router, clips: ClipStore, *, clip_wait_s: float, link_ttl_s: int, history_limit: int,
        callbacks: OutcomeCallbacks | None = None,
    ) -> None:
        self.db = db
        self.router = router
        self.clips = clips
        self.clip_wait_s = clip_wait_s
        self.link_ttl_s = link_ttl_s
        self.history_limit = history_limit
        self.callbacks = callbacks

    async def agency_report(self, row: DispatchOutbox) -> bytes:
        async with self.db.session() as session:
            incident, device, now = await self._load(session, row.incident_id)
            history = (
                await session.scalars(
                    select(Incident)
                    .where(
                        Incident.device_id == incident.device_id,
                        Incident.id != incident.id,
                        Incident.state.in_(REPORTED_STATES),
                    )
                    .order_by(Incident.detected_at.desc())
                    .limit(self.history_limit)
                )
            ).all()
            stored = await session.get(IncidentClip, incident.id)
        agency = self.router.agency(row.agency_id)
        # Waiting helps only while the gateway can still be recording the 20 s after the
        # detection; a clip still missing after that is not coming any sooner.
        clip_due_s = (incident.detected_at - now).total_seconds() + CLIP_AFTER_S + CLIP_UPLOAD_SLACK_S
        clip = await clip_for_report(
            self.db, self.clips, incident.id,
            stored=None if stored is None else ClipInfo.from_row(stored),
            wait_s=max(0.0, min(self.clip_wait_s, clip_due_s)), ttl_s=self.link_ttl_s,
        )
        data = {
            "incident_id": str(incident.id),
            "device_id": str(incident.device_id),
            "agency": {"id": row.agency_id, "name": agency.name if agency else row.agency_id},
            "class": _class(incident.class_key),
            # Other emergencies detected while it was open (their agencies get this report too).
            "also_detected": [_class(key) for key in incident.also_detected],
            "kind": incident.kind.value,
            "confidence": round(incident.confidence, 4),
            "score_timeline": incident.score_timeline,
            "detections": incident.detections,
            "evidence": _evidence(incident),
            "corroboration": _corroboration(incident, device),
            "detected_at": _iso(incident.detected_at),
            "deadline_at": _iso(incident.deadline_at),
            "reported_at": _iso(now),
            "trigger": incident.trigger or "deadline",
            "duress": incident.duress_at is not None,
            "duress_note": None if incident.duress_at is None else {**DURESS_NOTE, "cancelled_at": _iso(incident.duress_at)},
            "location": _location(incident, device),
            "profile": _profile(device),
            "clip": clip,
            "history": [
                {
                    "incident_id": str(h.id),
                    "class": h.class_key,
                    "label_ko": by_key(h.class_key).label_ko,
                    "label_en": by_key(h.class_key).label_en,
                    "detected_at": _iso(h.detected_at),
                    "state": h.state.value,
                }
                for h in history
            ],
            "outcome_callback": None if self.callbacks is None else self.callbacks.for_report(incident.id, row.agency_id),
        }
        return _envelope("incident.reported", now, data)

    async def contact_notice(self, row: ContactNotification) -> bytes:
        async with self.db.session() as session:
            incident, device, now = await self._load(session, row.incident_id)
            contact = await session.get(EmergencyContact, row.contact_id)
            if incident.kind is IncidentKind.ANOMALY:  # its contacts only, with the clip to listen to
                who = {"name": contact.name, "relation": contact.relation} if contact else None
                data = await anomaly_notice_data(self.db, self.clips, row, incident, device.owner_name, who, self.link_ttl_s)
                return _envelope(f"incident.{row.event}", now, data)
            if row.event in SETTLED_EVENTS:
                # The agencies the report reached (or, for "failed", could not reach).
                agencies = list(
                    await session.scalars(
                        select(DispatchOutbox.agency_id)
                        .where(
                            DispatchOutbox.incident_id == incident.id,
                            DispatchOutbox.state
                            == (DeliveryState.SENT if row.event is ContactEvent.DISPATCHED else DeliveryState.FAILED),
                        )
                        .distinct()
                    )
                )
            else:
                agencies = list(self.router.agencies_for(*reported_classes(incident)))
        names = [a.name if (a := self.router.agency(agency_id)) else agency_id for agency_id in sorted(agencies)]
        data = {
            "event": row.event,
            "incident_id": str(incident.id),
            "class": _class(incident.class_key),
            "kind": incident.kind.value,
            "owner_name": device.owner_name,
            "contact": {"name": contact.name, "relation": contact.relation} if contact else None,
            "detected_at": _iso(incident.detected_at),
            "deadline_at": _iso(incident.deadline_at),
            "agencies": names,
            "location": _location(incident, device) if row.event in SETTLED_EVENTS else None,
        }
        return _envelope(f"incident.{row.event}", now, data)

    @staticmethod
    async def _load(session: AsyncSession, incident_id: uuid.UUID) -> tuple[Incident, Device, datetime]:
        incident, device, now = (
            await session.execute(
                select(Incident, Device, db_now()).join(Device, Device.id == Incident.device_id)
                .where(Incident.id == incident_id)
            )
        ).one()
        return incident, device, now


def _envelope(kind: str, at: datetime, data: dict[str, Any]) -> bytes:
    # Standard Webhooks' recommended shape: type, timestamp, data.
    return json.dumps({"type": kind, "timestamp": _iso(at), "data": data}, ensure_ascii=False).encode()


def _class(key: str) -> dict[str, Any]:
    cls = by_key(key)
    return {"key": cls.key, "id": cls.id, "label_ko": cls.label_ko, "label_en": cls.label_en}


def _evidence(incident: Incident) -> dict[str, Any]:
    summary = incident.evidence_summary or {}
    return {
        "mark": incident.evidence.value,
        "detections": incident.detections,
        "renewals": summary.get("renewals", {}),
        "classes_heard": summary.get("classes_heard", [incident.class_key]),
        "alarm_patterns": summary.get("alarm_patterns", []),
        "spoken": summary.get("spoken", False),
        "phrases": summary.get("phrases"),  # "heard: '살려주세요' ×2" (docs/spoken.md)
        "quiet_share": summary.get("quiet_share"),
        "shortened": summary.get("shortened"),
    }


def _corroboration(incident: Incident, device: Device) -> dict[str, Any] | None:
    if incident.corroboration is None:
        return None
    name = device.owner_name if device.consent_share_profile else None
    return {
        **incident.corroboration,
        "room": device.room,
        "summary": where_heard(device.room, name, incident.corroboration),
    }


def _location(incident: Incident, device: Device) -> dict[str, Any] | None:
    if not device.consent_location:
        return None
    if incident.latitude is not None and incident.longitude is not None:
        lat, lon, accuracy, source = incident.latitude, incident.longitude, incident.location_accuracy_m, "session"
    elif device.latitude is not None and device.longitude is not None:
        lat, lon, accuracy, source = device.latitude, device.longitude, device.location_accuracy_m, "registered"
    else:
        return None if device.address is None else {"address": device.address, "source": "registered"}
    return {
        "latitude": lat,
        "longitude": lon,
        "accuracy_m": accuracy if accuracy is not None else 0.0,
        "map_url": f"https://www.openstreetmap.org/?mlat={lat:.6f}&mlon={lon:.6f}#map=18/{lat:.6f}/{lon:.6f}",
        "source": source,
        "address": device.address,
    }


def _profile(device: Device) -> dict[str, Any] | None:
    if not device.consent_share_profile:
        return None
    return {"name": device.owner_name, "birth_year": device.birth_year, "medical_notes": device.medical_notes}


def _iso(moment: datetime) -> str:
    return moment.isoformat()
