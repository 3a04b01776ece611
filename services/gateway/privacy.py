"""A device owner's data: everything exported, or everything erased but what the law keeps.

:func:`export_device_data` gathers what the owner gave (profile, address, location, contacts,
consents) and what Hear-o made of it (incidents with their audit trails, where each report
went, what each guardian was told, a fresh link to each clip still stored).

:func:`erase_device_data` deletes the device, its contacts, its incidents with their audit
trails and deliveries, and every clip in the store; ``DELETE /v1/devices/me`` calls it, then
revokes the token. What happens to an open incident (docs/incidents.md#erasing-a-device):

* a countdown still running is cancelled with the reason ``device deleted`` (audited, and
  published so every gateway's session hears it), then erased with the rest;
* a report being sent (``dispatching``) is never cut off: the erasure is refused with
  :class:`ErasureDeferred` until the dispatch settles (seconds; the route answers 409 with
  ``Retry-After``), because the report's outbox rows would go with the device;
* a report under duress (the device saw a cancel) is waited for quietly, up to
  :data:`DURESS_REPORT_WAIT_S`, and left out of the owner's statement: the device holder must
  not learn of it here either (docs/security.md#coercion).

What stays, and why, is in the :class:`ErasureStatement` returned: a report that reached an
agency is that agency's record (we cannot recall it), and this deployment keeps one
anonymised audit entry (``device_erased``, no device id, no name, no audio) listing which
incidents were reported to whom and when, to answer for what was sent.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from sqlalchemy import delete, select

from services.gateway.schemas import device_out
from shared.clips import ClipStore, clip_key
from shared.db import Database, Device, EmergencyContact
from shared.db.clock import db_now
from shared.db.models import AuditEntry, ContactNotification, DispatchOutbox, Incident, IncidentClip, IncidentOutcomeRecord
from shared.household.membership import delete_if_empty
from shared.incident_events import IncidentEvents
from shared.incident_privacy import kept_for_report
from shared.incident_state import OPEN_INCIDENT_STATES, ActionOutcome, DeliveryState, IncidentAction, IncidentState
from shared.incidents import CLIP_LINK_ISSUED, act_on_incident, add_audit, list_incidents
from shared.incidents.device_trail import device_audit, device_deliveries, issued_link
from shared.incidents.threshold_adjustments import threshold_log

# The cancel reason of a countdown stopped by its device's erasure.
DEVICE_DELETED = "device deleted"
DEVICE_ERASED = "device_erased"  # the anonymised audit entry's event
# Every incident a device ever had, for the export (a device has a few a year).
_ALL = 1_000_000
# How soon to try again while a report is being sent (the dispatch usually settles in seconds).
RETRY_AFTER_S = 10
# How long an erasure waits for a report under duress to settle before it defers like any other.
DURESS_REPORT_WAIT_S = 20.0
_POLL_S = 0.25
_ATTEMPTS = 3


class ErasureDeferred(Exception):
    """A report of this device is being sent to an agency; erase once it has settled."""

    def __init__(self, incident_id: uuid.UUID) -> None:
        super().__init__(
            f"incident {incident_id} is being reported to an agency right now; the device can be "
            f"deleted once the report has gone out (try again in {RETRY_AFTER_S} s)"
        )
        self.incident_id = incident_id
        self.retry_after_s = RETRY_AFTER_S


@dataclass(frozen=True)
class ErasureStatement:
    """What an erasure deleted and what it kept, in words the owner can read."""

    device_id: uuid.UUID
    erased_at: datetime
    deleted: dict[str, int]
    cancelled_incidents: list[str]
    reports_kept_by_agencies: list[dict[str, Any]]
    kept: list[str] = field(default_factory=list)

    def to_json(self) -> dict[str, Any]:
        return {
            "device_id": str(self.device_id),
            "erased_at": self.erased_at.isoformat(),
            "deleted": self.deleted,
            "cancelled_incidents": self.cancelled_incidents,
            "reports_kept_by_agencies": self.reports_kept_by_agencies,
            "kept": self.kept,
        }


async def erase_device_data(
    db: Database, store: ClipStore, device_id: uuid.UUID, *, events: IncidentEvents | None = None
) -> ErasureStatement | None:
    """Erase the device and everything of its owner (module docstring); None when there is no
    such device (already erased). Raises :class:`ErasureDeferred` while a report is being sent.

    The caller revokes the token afterwards (the device's sessions close with 4001).
    """
    await _await_reports_under_duress(db, device_id)
    cancelled: list[str] = []
    for _ in range(_ATTEMPTS):
        cancelled += await _cancel_countdowns(db, device_id, events)
        try:
            return await _erase(db, store, device_id, cancelled)
        except _OpenedMeanwhile as opened:
            incident_id = opened.incident_id
    raise ErasureDeferred(incident_id)


class _OpenedMeanwhile(Exception):
    def __init__(self, incident_id: uuid.UUID) -> None:
        self.incident_id = incident_id


async def _await_reports_under_duress(db: Database, device_id: uuid.UUID) -> None:
    # The device saw that incident cancelled: a 409 "report in flight" would tell whoever holds
    # it otherwise, so the erasure waits (quietly, seconds) for the report to settle.
    deadline = time.monotonic() + DURESS_REPORT_WAIT_S
    while time.monotonic() < deadline:
        async with db.session() as session:
            reporting = await session.scalar(select(Incident.id).where(
                Incident.device_id == device_id, Incident.duress_at.is_not(None),
                Incident.state.in_(OPEN_INCIDENT_STATES)))  # fmt: skip
        if reporting is None:
            return
        await asyncio.sleep(_POLL_S)


async def _cancel_countdowns(db: Database, device_id: uuid.UUID, events: IncidentEvents | None) -> list[str]:
    async with db.session() as session:
        open_ = (
            await session.execute(
                select(Incident.id, Incident.state, Incident.duress_at)
                .where(Incident.device_id == device_id, Incident.state.in_(OPEN_INCIDENT_STATES))
            )
        ).all()
    cancelled = []
    for incident_id, state, duress_at in open_:
        if state is IncidentState.DISPATCHING or duress_at is not None:
            raise ErasureDeferred(incident_id)
        result = await act_on_incident(
            db, incident_id, IncidentAction.CANCEL, device_id=device_id, reason=DEVICE_DELETED,
            events=events, actor="erasure",
        )
        if result.outcome is ActionOutcome.ALREADY_REPORTED:  # the deadline came first
            raise ErasureDeferred(incident_id)
        cancelled.append(str(incident_id))
    return cancelled


async def _erase(db: Database, store: ClipStore, device_id: uuid.UUID, cancelled: list[str]) -> ErasureStatement | None:
    """One attempt; raises _OpenedMeanwhile when a detection opened an incident since the cancel."""
    async with db.session() as session:
        # The lock holds off new incidents (their foreign key waits for it) until the device is gone.
        device = await session.scalar(select(Device).where(Device.id == device_id).with_for_update())
        if device is None:
            return None
        incidents = (await session.scalars(select(Incident).where(Incident.device_id == device_id))).all()
        for incident in incidents:
            if incident.state.is_open:
                raise _OpenedMeanwhile(incident.id)
        ids = [incident.id for incident in incidents]
        clips = (await session.scalars(select(IncidentClip.key).where(IncidentClip.incident_id.in_(ids)))).all()
        # Before the rows go, so a failed store leaves everything to erase again. The key of an
        # incident's clip is fixed: one stored by a gateway after this read is deleted by
        # archive_clip itself when its row finds the incident gone.
        for key in {*clips, *(clip_key(incident_id) for incident_id in ids)}:
            await store.delete(key)
        reported = [incident for incident in incidents if incident.state in (IncidentState.DISPATCHED, IncidentState.FAILED)]
        reports = await _reports(session, reported)
        # The owner's statement tells what the device saw: a report under duress was a cancel
        # there. The anonymised entry below, for the operators, lists it.
        told = [report for report, incident in zip(reports, reported) if incident.duress_at is None]
        contact_count = len((await session.scalars(select(EmergencyContact.id).where(
            EmergencyContact.device_id == device_id))).all())  # fmt: skip
        erased_at = await session.scalar(select(db_now()))
        assert erased_at is not None
        add_audit(session, None, "erasure", DEVICE_ERASED, {
            "reports": reports, "cancelled_incidents": cancelled, "incidents_deleted": len(ids),
            "clips_deleted": len(clips),
        })  # fmt: skip
        # Incidents, audit trails, deliveries, clips' rows and contacts go by cascade.
        await session.execute(delete(Device).where(Device.id == device_id))
        if device.household_id is not None:  # a household left with no device goes too
            await delete_if_empty(session, device.household_id)
    return ErasureStatement(
        device_id=device_id,
        erased_at=erased_at,
        deleted={"profile": 1, "contacts": contact_count, "incidents": len(ids), "clips": len(clips)},
        cancelled_incidents=cancelled,
        reports_kept_by_agencies=told,
        kept=_kept_sentences(told, cancelled),
    )


async def _reports(session: Any, incidents: list[Incident]) -> list[dict[str, Any]]:
    """The anonymised record of each report sent: incident id, class, times, agencies reached."""
    records = []
    for incident in incidents:
        rows = (await session.scalars(
            select(DispatchOutbox).where(DispatchOutbox.incident_id == incident.id, DispatchOutbox.state == DeliveryState.SENT)
            .order_by(DispatchOutbox.sent_at)
        )).all()  # fmt: skip
        records.append({
            "incident_id": str(incident.id), "class": incident.class_key, "state": incident.state.value,
            "detected_at": incident.detected_at.isoformat(), "trigger": incident.trigger,
            "sent_to": [{"agency": row.agency_id, "channel": row.kind,
                         "sent_at": row.sent_at.isoformat() if row.sent_at else None} for row in rows],
        })  # fmt: skip
    return records


def _kept_sentences(reports: list[dict[str, Any]], cancelled: list[str]) -> list[str]:
    kept = []
    if reports:
        kept.append(
            f"{len(reports)} report(s) already sent stay with the agencies that received them (name, birth year, "
            "medical notes and location as shared at the time, and a clip link that no longer works): they are "
            "those agencies' records and cannot be recalled from here."
        )
        kept.append(
            "This service keeps one anonymised audit entry listing those reports (incident id, class, detection "
            "time, which agency received it and when), without your name, profile, location, contacts or audio, "
            "to answer for what was sent."
        )
    if cancelled:
        kept.append(
            f"The countdown of {len(cancelled)} incident(s) still running was cancelled with the reason "
            f"'{DEVICE_DELETED}': nothing will be reported. Emergency contacts who had already been told of the "
            "detection are not told of the cancel (their details are erased with yours): tell them yourself."
        )
    if not kept:
        kept.append("Nothing: no report of yours was ever sent to an agency.")
    return kept


async def export_device_data(db: Database, store: ClipStore, device: Device, link_ttl_s: int) -> dict[str, Any]:
    """Everything kept about ``device`` (contacts loaded) and its incidents; each clip still
    stored gets a link valid ``link_ttl_s`` seconds, audited as issued to the owner."""
    views = list(reversed(await list_incidents(db, device.id, limit=_ALL)))  # oldest first
    async with db.session() as session:
        now = await session.scalar(select(db_now()))
        incidents = {incident.id: incident for incident in (await session.scalars(
            select(Incident).where(Incident.device_id == device.id))).all()}  # fmt: skip
        ids = list(incidents)
        # As the device sees them: not a clip it was told is deleted (kept for a duress report).
        clips = {c.incident_id: c for c in (await session.scalars(
            select(IncidentClip).join(Incident, Incident.id == IncidentClip.incident_id)
            .where(IncidentClip.incident_id.in_(ids), ~kept_for_report()))).all()}  # fmt: skip
        audits = (await session.scalars(
            select(AuditEntry).where(AuditEntry.incident_id.in_(ids)).order_by(AuditEntry.at, AuditEntry.id)
        )).all()  # fmt: skip
        outbox = (await session.scalars(
            select(DispatchOutbox).where(DispatchOutbox.incident_id.in_(ids), DispatchOutbox.state != DeliveryState.STANDBY)
            .order_by(DispatchOutbox.agency_id, DispatchOutbox.position)
        )).all()  # fmt: skip
        outcomes = (await session.scalars(
            select(IncidentOutcomeRecord).where(IncidentOutcomeRecord.incident_id.in_(ids))
            .order_by(IncidentOutcomeRecord.agency_id)
        )).all()  # fmt: skip
        notices = (await session.scalars(
            select(ContactNotification).where(ContactNotification.incident_id.in_(ids),
                                              ContactNotification.state != DeliveryState.STANDBY)
            .order_by(ContactNotification.created_at, ContactNotification.id)
        )).all()  # fmt: skip
        contact_positions = {c.id: c.position for c in device.contacts}
        assert now is not None
        links = {incident_id: store.link(clip.key, link_ttl_s) for incident_id, clip in clips.items()}
        for incident_id, url in links.items():
            add_audit(session, incident_id, "owner", CLIP_LINK_ISSUED, issued_link(url, link_ttl_s, via="export"))
    exported = []
    for view in views:
        incident = incidents.get(view.id)
        if incident is None:  # erased or opened between the two reads
            continue
        body = view.to_json()
        clip = clips.get(incident.id)
        body["clip"] = None if clip is None else {
            "url": links[incident.id], "sha256": clip.sha256, "duration_s": clip.duration_s,
            "content_type": clip.content_type, "stored_at": clip.created_at.isoformat(),
        }
        body["sound_signature"] = incident.sound_signature  # what its false-alarm comparisons read
        body["clip_donated_at"] = incident.clip_donated_at.isoformat() if incident.clip_donated_at else None
        body["personal_data_deleted_at"] = (
            incident.personal_data_deleted_at.isoformat() if incident.personal_data_deleted_at else None
        )
        # As the device sees the incident (after a duress cancel, not the report's trail).
        body["deliveries"] = [
            {"agency": row.agency_id, "channel": row.kind, "state": row.state.value, "attempts": row.attempts,
             "sent_at": row.sent_at.isoformat() if row.sent_at else None}
            for row in device_deliveries(incident.duress_at, [row for row in outbox if row.incident_id == incident.id])
        ]  # fmt: skip
        # What each agency found (the outcome ledger), with its note until the retention clears
        # it; after a duress cancel, none, as for the deliveries.
        body["outcomes"] = [
            {"agency": row.agency_id, "outcome": row.outcome.value, "note": row.note,
             "signed_at": row.signed_at.isoformat(), "received_at": row.received_at.isoformat()}
            for row in device_deliveries(incident.duress_at, [row for row in outcomes if row.incident_id == incident.id])
        ]  # fmt: skip
        body["contact_notifications"] = [
            {"contact_position": contact_positions.get(row.contact_id), "event": row.event, "channel": row.kind,
             "state": row.state.value, "sent_at": row.sent_at.isoformat() if row.sent_at else None}
            for row in notices if row.incident_id == incident.id
        ]  # fmt: skip
        body["audit"] = [
            {"at": entry.at.isoformat(), "actor": entry.actor, "event": entry.event, "detail": entry.detail}
            for entry in device_audit(incident.duress_at, [entry for entry in audits if entry.incident_id == incident.id])
        ]
        exported.append(body)
    return {
        "exported_at": now.isoformat(),
        "device": device_out(device).model_dump(mode="json"),
        "incidents": exported,
        # What the device's cancels taught its thresholds, undone changes too.
        "threshold_adjustments": [adjustment.to_json() for adjustment in await threshold_log(db, device.id)],
    }
