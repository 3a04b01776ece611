"""Privacy jobs: a false alarm's clip is deleted after its grace unless donated; every settled
incident loses its audio and personal data after the retention, and keeps its record."""

from __future__ import annotations

import json
import uuid
from pathlib import Path

import numpy as np
import pytest
from sqlalchemy import select, update

from services.alerting.retention import Retention, RetentionPolicy
from shared.clips import ClipStore, LocalClipStore
from shared.db import Database
from shared.db.clock import db_now
from shared.db.models import AuditEntry, DispatchOutbox, Incident, IncidentClip, IncidentOutcomeRecord
from shared.incident_privacy import DonationOutcome, donate_clip
from shared.incident_state import DeliveryState, IncidentAction, IncidentOutcome, IncidentState
from shared.incidents import IncidentLocation, act_on_incident, archive_clip, open_incident
from tests.alerting_support import make_device

DAY = 24 * 3600.0


def _store(tmp_path: Path) -> LocalClipStore:
    return LocalClipStore(tmp_path / "clips", "s", "http://gw")


async def _incident_with_clip(db: Database, store: ClipStore, *, cancel: bool) -> tuple[uuid.UUID, uuid.UUID]:
    device = await make_device(db)
    incident = (
        await open_incident(db, device_id=device, class_key="fire", confidence=0.9, location=IncidentLocation(37.5, 127.0, 10))
    ).incident
    await archive_clip(db, store, incident.id, np.zeros(1600, np.float32), 16000)
    if cancel:
        await act_on_incident(db, incident.id, IncidentAction.CANCEL, reason="toast")
    return device, incident.id


async def _events(db: Database, incident_id: uuid.UUID) -> list[tuple[str, dict[str, object]]]:
    async with db.session() as session:
        rows = (await session.scalars(select(AuditEntry).where(AuditEntry.incident_id == incident_id)
                                      .order_by(AuditEntry.id))).all()
    return [(row.event, row.detail) for row in rows]


async def _clip_row(db: Database, incident_id: uuid.UUID) -> IncidentClip | None:
    async with db.session() as session:
        return await session.get(IncidentClip, incident_id)


async def test_a_false_alarms_clip_is_deleted_after_the_grace_period(db: Database, tmp_path: Path) -> None:
    store = _store(tmp_path)
    _, incident_id = await _incident_with_clip(db, store, cancel=True)
    clip_file = store.path_for(f"{incident_id}.flac")

    within_grace = Retention(db, store, RetentionPolicy(cancelled_clip_grace_s=DAY, retention_s=90 * DAY), actor="w")
    assert (await within_grace.run_once()).clips_deleted == 0
    assert clip_file.is_file()

    after_grace = Retention(db, store, RetentionPolicy(cancelled_clip_grace_s=0, retention_s=90 * DAY), actor="w")
    assert (await after_grace.run_once()).clips_deleted == 1
    assert not clip_file.exists() and await _clip_row(db, incident_id) is None
    event, detail = (await _events(db, incident_id))[-1]
    assert event == "clip_deleted" and detail["reason"] == "cancelled_false_alarm" and detail["sha256"]
    assert (await after_grace.run_once()).clips_deleted == 0  # nothing left to do


async def test_a_donated_clip_survives_the_grace_but_not_the_retention(db: Database, tmp_path: Path) -> None:
    store = _store(tmp_path)
    device, incident_id = await _incident_with_clip(db, store, cancel=True)
    donation = await donate_clip(db, incident_id, device)
    assert donation.outcome is DonationOutcome.DONATED and donation.donated_at is not None
    again = await donate_clip(db, incident_id, device)
    assert again.outcome is DonationOutcome.ALREADY_DONATED and again.donated_at == donation.donated_at

    grace_over = Retention(db, store, RetentionPolicy(cancelled_clip_grace_s=0, retention_s=90 * DAY), actor="w")
    assert (await grace_over.run_once()).clips_deleted == 0
    assert store.path_for(f"{incident_id}.flac").is_file()
    assert ("clip_donated", {"sha256": (await _clip_row(db, incident_id)).sha256}) in await _events(  # type: ignore[union-attr]
        db, incident_id
    )

    retention_over = Retention(db, store, RetentionPolicy(cancelled_clip_grace_s=0, retention_s=0), actor="w")
    assert (await retention_over.run_once()).incidents_expired == 1
    assert not store.path_for(f"{incident_id}.flac").exists()


async def test_donation_needs_a_cancelled_incident_of_ones_own_with_a_clip(db: Database, tmp_path: Path) -> None:
    store = _store(tmp_path)
    device, pending = await _incident_with_clip(db, store, cancel=False)
    assert (await donate_clip(db, pending, device)).outcome is DonationOutcome.NOT_CANCELLED
    other, cancelled = await _incident_with_clip(db, store, cancel=True)
    assert (await donate_clip(db, cancelled, device)).outcome is DonationOutcome.NOT_FOUND
    await Retention(db, store, RetentionPolicy(0, 90 * DAY), actor="w").run_once()
    assert (await donate_clip(db, cancelled, other)).outcome is DonationOutcome.NO_CLIP


async def test_retention_clears_a_reports_audio_and_personal_data_and_keeps_its_record(
    db: Database, tmp_path: Path
) -> None:
    store = _store(tmp_path)
    _, incident_id = await _incident_with_clip(db, store, cancel=False)
    report = json.dumps({"data": {"profile": {"medical_notes": "심장질환"}}}, ensure_ascii=False)
    async with db.session() as session:
        await session.execute(update(Incident).where(Incident.id == incident_id).values(state=IncidentState.DISPATCHED))
        session.add(DispatchOutbox(
            incident_id=incident_id, agency_id="119", position=0, kind="webhook", state=DeliveryState.SENT,
            attempts=1, next_attempt_at=db_now(), created_at=db_now(), sent_at=db_now(), payload=report,
        ))  # fmt: skip
        session.add(IncidentOutcomeRecord(
            incident_id=incident_id, agency_id="119", outcome=IncidentOutcome.CONFIRMED_EMERGENCY,
            note="서울대병원 이송", message_id="msg_1", signed_at=db_now(), received_at=db_now(),
        ))  # fmt: skip

    kept = Retention(db, store, RetentionPolicy(0, retention_s=90 * DAY), actor="w")
    assert (await kept.run_once()).incidents_expired == 0  # a report's clip is evidence: no grace deletion
    assert store.path_for(f"{incident_id}.flac").is_file()

    expired = Retention(db, store, RetentionPolicy(0, retention_s=0), actor="w")
    assert (await expired.run_once()).incidents_expired == 1
    assert not store.path_for(f"{incident_id}.flac").exists() and await _clip_row(db, incident_id) is None
    async with db.session() as session:
        incident = await session.get_one(Incident, incident_id)
        delivery = await session.scalar(select(DispatchOutbox).where(DispatchOutbox.incident_id == incident_id))
        outcome = await session.scalar(select(IncidentOutcomeRecord).where(IncidentOutcomeRecord.incident_id == incident_id))
    assert outcome is not None and outcome.outcome is IncidentOutcome.CONFIRMED_EMERGENCY and outcome.note is None
    assert incident.state is IncidentState.DISPATCHED and incident.class_key == "fire"  # the record stays
    assert (incident.latitude, incident.longitude) == (None, None) and incident.personal_data_deleted_at is not None
    assert delivery is not None and delivery.payload is None and delivery.sent_at is not None
    events = await _events(db, incident_id)
    assert events[0][0] == "opened" and events[-1][0] == "personal_data_deleted"
    assert events[-1][1]["deliveries_cleared"] == 1 and events[-1][1]["outcome_notes_cleared"] == 1
    assert (await expired.run_once()).incidents_expired == 0


async def test_an_open_incident_is_never_expired(db: Database, tmp_path: Path) -> None:
    store = _store(tmp_path)
    _, incident_id = await _incident_with_clip(db, store, cancel=False)
    stats = await Retention(db, store, RetentionPolicy(0, retention_s=0), actor="w").run_once()
    assert (stats.clips_deleted, stats.incidents_expired) == (0, 0)
    assert store.path_for(f"{incident_id}.flac").is_file()


class _StoreDown(LocalClipStore):
    async def delete(self, key: str) -> None:
        raise OSError("store unreachable")


async def test_a_store_failure_keeps_the_row_for_the_next_run(
    db: Database, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    store = _store(tmp_path)
    _, incident_id = await _incident_with_clip(db, store, cancel=True)
    down = _StoreDown(store.root, "s", "http://gw")
    assert (await Retention(db, down, RetentionPolicy(0, 90 * DAY), actor="w").run_once()).clips_deleted == 0
    assert await _clip_row(db, incident_id) is not None
    assert "store unreachable" in caplog.text and "Traceback" not in caplog.text
    assert (await Retention(db, store, RetentionPolicy(0, 90 * DAY), actor="w").run_once()).clips_deleted == 1
    assert not store.path_for(f"{incident_id}.flac").exists()
