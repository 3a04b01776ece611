"""Erasing a device: its data and clips go, a running countdown is cancelled and recorded, a
report being sent is never cut off, and what is kept is said. A clip stored after the erasure
does not stay behind."""

from __future__ import annotations

import uuid
from pathlib import Path

import numpy as np
import pytest
from sqlalchemy import ColumnElement, func, select, true, update

from services.gateway.privacy import DEVICE_DELETED, ErasureDeferred, erase_device_data
from shared.clips import LocalClipStore
from shared.db import Database, Device, EmergencyContact
from shared.db.clock import db_now
from shared.db.models import AuditEntry, DispatchOutbox, Incident, IncidentClip
from shared.incident_events import LocalIncidentEvents
from shared.incident_state import DeliveryState, IncidentAction, IncidentState
from shared.incidents import act_on_incident, archive_clip, open_incident
from tests.alerting_support import make_device


def _store(tmp_path: Path) -> LocalClipStore:
    return LocalClipStore(tmp_path / "clips", "s", "http://gw")


async def _incident(db: Database, store: LocalClipStore, device: uuid.UUID, class_key: str = "fire") -> uuid.UUID:
    incident = (await open_incident(db, device_id=device, class_key=class_key, confidence=0.9)).incident
    await archive_clip(db, store, incident.id, np.zeros(1600, np.float32), 16000)
    return incident.id


async def _count(db: Database, model: type, *where: ColumnElement[bool]) -> int:
    async with db.session() as session:
        return int(await session.scalar(select(func.count()).select_from(model).where(*where)) or 0)


async def test_erasure_deletes_everything_and_keeps_an_anonymised_record_of_reports(db: Database, tmp_path: Path) -> None:
    store = _store(tmp_path)
    device = await make_device(db, contacts=2)
    reported = await _incident(db, store, device)
    async with db.session() as session:
        await session.execute(update(Incident).where(Incident.id == reported).values(state=IncidentState.DISPATCHED))
        session.add(DispatchOutbox(
            incident_id=reported, agency_id="119", position=0, kind="webhook", state=DeliveryState.SENT, attempts=1,
            next_attempt_at=db_now(), created_at=db_now(), sent_at=db_now(), payload='{"data": {"medical_notes": "x"}}',
        ))  # fmt: skip
    # Another class: a fire detection now would be the reported fire going on (evidence for it).
    false_alarm = await _incident(db, store, device, "crime")
    await act_on_incident(db, false_alarm, IncidentAction.CANCEL)
    countdown = await _incident(db, store, device, "crime")
    events = LocalIncidentEvents()

    async with events.subscribe() as updates:
        statement = await erase_device_data(db, store, device, events=events)
        update_ = await updates.__anext__()
    assert statement is not None
    assert update_.incident_id == str(countdown) and update_.state is IncidentState.CANCELLED
    assert update_.detail == {"reason": DEVICE_DELETED}  # every gateway's session hears why

    assert list(store.root.iterdir()) == []  # every clip left the store
    for model, where in ((Device, Device.id == device), (EmergencyContact, EmergencyContact.device_id == device),
                         (Incident, Incident.device_id == device), (IncidentClip, true()),
                         (DispatchOutbox, true())):  # fmt: skip
        assert await _count(db, model, where) == 0, model
    body = statement.to_json()
    assert body["deleted"] == {"profile": 1, "contacts": 2, "incidents": 3, "clips": 3}
    assert body["cancelled_incidents"] == [str(countdown)]
    [kept_report] = body["reports_kept_by_agencies"]
    assert kept_report["incident_id"] == str(reported) and kept_report["sent_to"][0]["agency"] == "119"
    assert any("stay with the agencies" in line for line in body["kept"])
    assert any(DEVICE_DELETED in line for line in body["kept"])

    async with db.session() as session:
        [record] = (await session.scalars(select(AuditEntry).where(AuditEntry.event == "device_erased"))).all()
    assert record.incident_id is None and record.detail["reports"] == body["reports_kept_by_agencies"]
    assert str(device) not in str(record.detail) and "홍길동" not in str(record.detail)  # anonymised
    assert await erase_device_data(db, store, device) is None  # already erased


async def test_a_report_being_sent_defers_the_erasure(db: Database, tmp_path: Path) -> None:
    store = _store(tmp_path)
    device = await make_device(db)
    incident = await _incident(db, store, device)
    async with db.session() as session:
        await session.execute(update(Incident).where(Incident.id == incident).values(state=IncidentState.DISPATCHING))
    with pytest.raises(ErasureDeferred) as deferred:
        await erase_device_data(db, store, device)
    assert deferred.value.incident_id == incident and deferred.value.retry_after_s > 0
    assert "being reported" in str(deferred.value)
    assert await _count(db, Device, Device.id == device) == 1  # nothing was erased
    assert store.path_for(f"{incident}.flac").is_file()


async def test_a_clip_stored_after_the_erasure_is_deleted_again(db: Database, tmp_path: Path) -> None:
    store = _store(tmp_path)
    device = await make_device(db)
    incident = (await open_incident(db, device_id=device, class_key="fire", confidence=0.9)).incident
    await act_on_incident(db, incident.id, IncidentAction.CANCEL)
    await erase_device_data(db, store, device)
    # The gateway was still encoding the clip when the device went.
    with pytest.raises(LookupError):
        await archive_clip(db, store, incident.id, np.zeros(1600, np.float32), 16000)
    assert not store.path_for(f"{incident.id}.flac").exists()
