"""What happens to an incident's audio and personal data after the emergency: donation,
deletion, retention (docs/incidents.md#privacy).

* :func:`donate_clip`: the owner's explicit consent to keep the clip of a cancelled false
  alarm for training, stamped on the incident (``clip_donated_at``) and audited.
* :func:`delete_clip`: the clip removed from the store and its row dropped, audited as
  ``clip_deleted`` with the reason (a false alarm's grace over, the device erased).
* :func:`expire_personal_data`: an incident past the deployment's retention keeps its row
  and audit trail (what was detected, when, who was told, the outcome) but loses its audio,
  its location, the report bodies sent (which held the profile and medical notes) and the
  agencies' free-text outcome notes ("taken to hospital").

The store is deleted from before the row goes, inside the row's transaction: when the store
fails, the row stays and the next run tries again, so no stored audio is ever left without a
row that points at it. Rows are taken ``FOR UPDATE SKIP LOCKED`` so several workers split
the work, and a donation waits for (and then sees) a deletion in progress.
"""

from __future__ import annotations

import enum
import uuid
from dataclasses import dataclass
from datetime import datetime

from typing import Any

from sqlalchemy import exists, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from shared.clips import ClipStore
from shared.db import Database
from shared.db.clock import db_now
from shared.db.models import AuditEntry, ContactNotification, DispatchOutbox, Incident, IncidentClip, IncidentOutcomeRecord
from shared.incident_state import OPEN_DELIVERY_STATES, IncidentState
from shared.incidents import ClipInfo, add_audit

# Audit events (``audit_log.event``).
CLIP_DONATED = "clip_donated"
CLIP_DELETED = "clip_deleted"
PERSONAL_DATA_DELETED = "personal_data_deleted"
# A report under duress keeps its clip (the police's evidence) where its device was told of a
# deletion, and deletes it at the retention: operators' entries the device never sees
# (``shared.incidents.device_trail.REPORT_EVENTS``).
REPORT_CLIP_KEPT = "report_clip_kept"
REPORT_CLIP_DELETED = "report_clip_deleted"

# Why a clip was deleted (``detail.reason`` of ``clip_deleted``).
REASON_FALSE_ALARM = "cancelled_false_alarm"
REASON_DEVICE_ERASED = "device_erased"


class DonationOutcome(enum.StrEnum):
    DONATED = "donated"
    ALREADY_DONATED = "already_donated"
    NOT_FOUND = "not_found"  # no such incident (or another device's)
    NOT_CANCELLED = "not_cancelled"  # only a false alarm's clip is donated; a report's is evidence
    NO_CLIP = "no_clip"  # not stored yet, or already deleted

    @property
    def message(self) -> str:
        return _DONATION_MESSAGES[self]


_DONATION_MESSAGES = {
    DonationOutcome.DONATED: "thank you: the clip is kept for training and not deleted after the grace period",
    DonationOutcome.ALREADY_DONATED: "the clip was already donated",
    DonationOutcome.NOT_FOUND: "no such incident",
    DonationOutcome.NOT_CANCELLED: "only the clip of a cancelled incident (a false alarm) can be donated",
    DonationOutcome.NO_CLIP: "this incident has no stored clip (not stored yet, or already deleted)",
}


@dataclass(frozen=True)
class Donation:
    outcome: DonationOutcome
    donated_at: datetime | None = None


async def donate_clip(db: Database, incident_id: uuid.UUID, device_id: uuid.UUID) -> Donation:
    """Record the owner's consent to keep the clip of their cancelled incident for training.

    Repeating it is harmless (``already_donated`` with the first time). The grace deletion
    then skips the clip; the deployment's retention and an erasure of the device still apply.
    """
    async with db.session() as session:
        incident = await session.scalar(
            select(Incident).where(Incident.id == incident_id, Incident.device_id == device_id).with_for_update()
        )
        if incident is None:
            return Donation(DonationOutcome.NOT_FOUND)
        # Cancelled under duress is cancelled for the device: answered alike (the flag is
        # harmless there: a report's clip is never a training sample and no grace applies).
        if incident.state is not IncidentState.CANCELLED and incident.duress_at is None:
            return Donation(DonationOutcome.NOT_CANCELLED)
        if incident.clip_donated_at is not None:
            return Donation(DonationOutcome.ALREADY_DONATED, incident.clip_donated_at)
        clip = await session.scalar(select(IncidentClip).where(IncidentClip.incident_id == incident_id).with_for_update())
        if clip is None or await _kept_for_report(session, incident_id):
            return Donation(DonationOutcome.NO_CLIP)
        donated_at = await session.scalar(
            update(Incident).where(Incident.id == incident_id).values(clip_donated_at=db_now())
            .returning(Incident.clip_donated_at).execution_options(synchronize_session=False)
        )
        add_audit(session, incident_id, "owner", CLIP_DONATED, {"sha256": clip.sha256})
    return Donation(DonationOutcome.DONATED, donated_at)


async def delete_clip(
    db: Database, store: ClipStore, incident_id: uuid.UUID, *, reason: str, actor: str, keep_donated: bool
) -> bool:
    """Delete the incident's clip from the store and the database, audited with ``reason``.

    False when there was nothing to delete: no clip, another worker holds it, or (with
    ``keep_donated``) the owner donated it. The clip of a report under duress is the police's
    evidence: it is kept until the retention and only its device is told of the deletion
    (audited ``clip_deleted`` as here, beside an operators' ``report_clip_kept``), so the
    device sees it go exactly as a cancelled incident's would.
    """
    query = select(IncidentClip, Incident.duress_at).join(Incident, Incident.id == IncidentClip.incident_id).where(
        IncidentClip.incident_id == incident_id
    )
    if keep_donated:
        query = query.where(Incident.clip_donated_at.is_(None))
    async with db.session() as session:
        found = (await session.execute(query.with_for_update(skip_locked=True))).first()
        if found is None or (found.duress_at is not None and await _kept_for_report(session, incident_id)):
            return False
        clip = found[0]
        if found.duress_at is not None:
            add_audit(session, incident_id, actor, CLIP_DELETED, {"reason": reason, "sha256": clip.sha256})
            add_audit(session, incident_id, actor, REPORT_CLIP_KEPT, {"reason": reason, "sha256": clip.sha256})
            return True
        await store.delete(clip.key)
        await session.delete(clip)
        add_audit(session, incident_id, actor, CLIP_DELETED, {"reason": reason, "sha256": clip.sha256})
    return True


async def expire_personal_data(db: Database, store: ClipStore, incident_id: uuid.UUID, *, actor: str) -> bool:
    """Apply the retention to a settled incident: delete its clip (donated or not), forget its
    location, the bodies of its finished deliveries and its agencies' outcome notes (the
    outcomes themselves stay), stamp ``personal_data_deleted_at``.

    The row, its score timeline and its audit trail stay: what was detected and reported, to
    whom and when, is the record a deployment keeps. False when the incident is not settled,
    already done, or held by another worker.
    """
    settled = [state for state in IncidentState if state.is_final]
    async with db.session() as session:
        incident = await session.scalar(
            select(Incident)
            .where(Incident.id == incident_id, Incident.personal_data_deleted_at.is_(None), Incident.state.in_(settled))
            .with_for_update(skip_locked=True)
        )
        if incident is None:
            return False
        clip = await session.get(IncidentClip, incident_id, with_for_update=True)
        # A clip its device was told is deleted goes now without saying so there again.
        shown = clip if clip is not None and not await _kept_for_report(session, incident_id) else None
        if clip is not None:
            await store.delete(clip.key)
            await session.delete(clip)
            if shown is None:
                add_audit(session, incident_id, actor, REPORT_CLIP_DELETED, {"sha256": clip.sha256})
        cleared = 0
        for table in (DispatchOutbox, ContactNotification):
            # The report bodies held the profile, medical notes and location; a contact's
            # target is their phone number or webhook.
            values = {"payload": None, "target": None} if table is ContactNotification else {"payload": None}
            result = await session.execute(
                update(table)
                .where(table.incident_id == incident_id, table.state.not_in(OPEN_DELIVERY_STATES))
                .values(**values)
                .execution_options(synchronize_session=False)
            )
            cleared += result.rowcount  # type: ignore[attr-defined]
        # What an agency wrote of what it found may name a hospital or a diagnosis.
        notes = await session.execute(
            update(IncidentOutcomeRecord)
            .where(IncidentOutcomeRecord.incident_id == incident_id, IncidentOutcomeRecord.note.is_not(None))
            .values(note=None)
            .execution_options(synchronize_session=False)
        )
        await session.execute(
            update(Incident).where(Incident.id == incident_id)
            .values(latitude=None, longitude=None, location_accuracy_m=None, personal_data_deleted_at=db_now())
            .execution_options(synchronize_session=False)
        )
        add_audit(session, incident_id, actor, PERSONAL_DATA_DELETED, {
            "clip_sha256": shown.sha256 if shown is not None else None, "deliveries_cleared": cleared,
            "outcome_notes_cleared": notes.rowcount,  # type: ignore[attr-defined]
        })  # fmt: skip
    return True


async def device_clip(db: Database, incident_id: uuid.UUID) -> ClipInfo | None:
    """The incident's clip as its device sees it: None also when it was deleted for the device
    and kept for a report under duress (:func:`delete_clip`)."""
    async with db.session() as session:
        clip = await session.get(IncidentClip, incident_id)
        if clip is None or await _kept_for_report(session, incident_id):
            return None
        return ClipInfo.from_row(clip)


def kept_for_report() -> Any:
    """The SQL condition: the incident's clip is kept for a report under duress, its device told it is deleted."""
    return exists().where(AuditEntry.incident_id == Incident.id, AuditEntry.event == REPORT_CLIP_KEPT)


async def _kept_for_report(session: AsyncSession, incident_id: uuid.UUID) -> bool:
    found = await session.scalar(
        select(AuditEntry.id).where(AuditEntry.incident_id == incident_id, AuditEntry.event == REPORT_CLIP_KEPT).limit(1)
    )
    return found is not None
