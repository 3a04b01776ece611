"""A cancel under duress on SQLite and PostgreSQL: the device is answered and shown an ordinary
cancel everywhere it looks, while the sweeper and sender report the incident once, to 112,
marked duress; a wrong code, no code set, or a class duress does not apply to is an ordinary
cancel."""

from __future__ import annotations

import json
import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from contextlib import AbstractAsyncContextManager
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from sqlalchemy import select, update

from services.alerting.retention import Retention, RetentionPolicy
from services.gateway.privacy import erase_device_data, export_device_data
from shared.clips import LocalClipStore
from shared.db import Database, Device
from shared.db.models import AuditEntry, ContactNotification, Incident
from shared.incident_events import IncidentEvents, IncidentUpdate
from shared.incident_privacy import DonationOutcome, delete_clip, device_clip, donate_clip
from shared.incident_state import ActionOutcome, IncidentAction, IncidentOutcome, IncidentState
from shared.incident_stats import incident_stats
from shared.incidents import (
    EvidenceFacts,
    EvidencePolicy,
    act_on_incident,
    archive_clip,
    audit_clip_access,
    clip_accesses,
    get_incident,
    incident_deliveries,
    list_incidents,
    open_incident,
    record_evidence,
)
from shared.incidents.duress import hash_code
from shared.outcome_ledger import record_outcome
from tests.alerting_support import make_device
from tests.duress_support import masked
from tests.unit.test_dispatch import Harness, build, outbox

CODE = "blue kettle"
DAY = 24 * 3600.0
class RecordedEvents(IncidentEvents):
    """What was published, in order."""

    def __init__(self) -> None:
        self.updates: list[IncidentUpdate] = []

    async def publish(self, update: IncidentUpdate) -> None:
        self.updates.append(update)

    def subscribe(self) -> AbstractAsyncContextManager[AsyncIterator[IncidentUpdate]]:
        raise NotImplementedError


@pytest.fixture
async def harness(db: Database, tmp_path: Path) -> Harness:
    h = build(db, tmp_path)
    await h.sweeper.register()
    return h


async def crime(db: Database, class_key: str = "crime", code: str | None = CODE, contacts: int = 1) -> tuple[uuid.UUID, uuid.UUID]:
    """A device (with ``code`` as its duress code) and its pending incident of ``class_key``."""
    device = await make_device(db, contacts=contacts)
    if code is not None:
        async with db.session() as session:
            await session.execute(update(Device).where(Device.id == device).values(duress_code_hash=hash_code(code)))
    incident = (await open_incident(db, device_id=device, class_key=class_key, confidence=0.9, countdown_s=60)).incident
    return device, incident.id


async def row(db: Database, incident_id: uuid.UUID) -> Incident:
    async with db.session() as session:
        return await session.get_one(Incident, incident_id)


async def audit_events(db: Database, incident_id: uuid.UUID) -> list[str]:
    async with db.session() as session:
        return list(await session.scalars(
            select(AuditEntry.event).where(AuditEntry.incident_id == incident_id).order_by(AuditEntry.id)
        ))  # fmt: skip


async def test_the_answer_and_the_update_are_an_ordinary_cancels(harness: Harness) -> None:
    db, events = harness.db, RecordedEvents()
    device, ordinary = await crime(db)
    duress_device, duress = await crime(db)
    await harness.sweeper.sweep_once()
    assert await harness.run_published() == ["sent", "sent"]  # each guardian is told of the detection
    plain = await act_on_incident(db, ordinary, IncidentAction.CANCEL, device_id=device, reason="false alarm", events=events)
    coerced = await act_on_incident(
        db, duress, IncidentAction.CANCEL, device_id=duress_device, reason="false alarm", code=" Blue  KETTLE", events=events
    )
    assert coerced.outcome is plain.outcome is ActionOutcome.CANCELLED and coerced.fulfilled
    assert coerced.incident is not None and plain.incident is not None
    assert masked(coerced.incident.to_json()) == masked(plain.incident.to_json())
    assert coerced.incident.state is IncidentState.CANCELLED and coerced.incident.trigger is None
    first, second = events.updates
    assert masked(second.__dict__) == masked(first.__dict__) and second.state is IncidentState.CANCELLED

    stored = await row(db, duress)
    assert stored.state is IncidentState.PENDING and stored.duress_at is not None and stored.trigger == "duress"
    assert stored.deadline_at == coerced.incident.deadline_at  # the deadline the device was shown, unmoved
    assert stored.cancel_reason == "false alarm"
    assert [e for e in await audit_events(db, duress) if e != "delivered"] == ["opened", "cancelled", "duress"]
    # The guardian told of the detection hears "cancelled", as after any cancel, and no more.
    await harness.sweeper.sweep_once()
    assert await harness.run_published() == ["sent", "sent", "sent"]  # two "cancelled", and the report

    async def notices(incident_id: uuid.UUID) -> list[tuple[str, str]]:
        async with db.session() as session:
            rows = await session.execute(
                select(ContactNotification.event, ContactNotification.state)
                .where(ContactNotification.incident_id == incident_id)
            )
            return sorted((event, state) for event, state in rows)

    assert await notices(duress) == await notices(ordinary) == [("cancelled", "sent"), ("detected", "sent")]


async def test_it_is_reported_once_to_112_marked_duress_and_the_device_never_hears_of_it(harness: Harness) -> None:
    db, events = harness.db, RecordedEvents()
    harness.sweeper.events = harness.dispatcher.events = events
    device, incident_id = await crime(db, class_key="help")  # 119 by default; under duress the police's
    await act_on_incident(db, incident_id, IncidentAction.CANCEL, device_id=device, code=CODE, events=events)

    assert (await harness.sweeper.sweep_once()).claimed == 1  # at once: its deadline is a minute off
    assert await outbox(db, incident_id) == [("112", 0, "pending", 0), ("112", 1, "standby", 0)]
    # The report; the guardian, not yet told of the detection, is not told at all (as after a cancel).
    assert await harness.run_published() == ["sent"]
    await harness.sweeper.sweep_once()
    assert await harness.run_published() == []  # no "reported" notice for the guardian
    assert (await row(db, incident_id)).state is IncidentState.DISPATCHED

    [request] = harness.webhook_requests()
    data = json.loads(request.content)["data"]
    assert request.url.path.endswith("/112") and data["agency"]["id"] == "112"
    assert data["duress"] is True and data["trigger"] == "duress" and data["class"]["key"] == "help"
    assert "duress code" in data["duress_note"]["en"] and "강요" in data["duress_note"]["ko"]
    assert data["clip"]["url"].startswith("http://gw/v1/clips/")
    # Only the cancel was published: nothing of the claim or the settled report.
    assert [u.state for u in events.updates] == [IncidentState.CANCELLED]

    view = await get_incident(db, incident_id, device_id=device)
    listed = await list_incidents(db, device)
    assert view is not None and view.state is IncidentState.CANCELLED and view.trigger is None
    assert [i.state for i in listed] == [IncidentState.CANCELLED]
    assert await incident_deliveries(db, incident_id) == []
    assert "dispatched" in await audit_events(db, incident_id)  # the operators' trail has it all


async def test_a_wrong_code_no_code_set_or_another_class_is_an_ordinary_cancel(harness: Harness) -> None:
    db = harness.db
    cases = [await crime(db), await crime(db, code=None), await crime(db, class_key="fire"), await crime(db, class_key="gas")]
    codes = ["blue kettles", CODE, CODE, CODE]
    for (device, incident_id), code in zip(cases, codes, strict=True):
        result = await act_on_incident(db, incident_id, IncidentAction.CANCEL, device_id=device, code=code)
        assert result.outcome is ActionOutcome.CANCELLED
        stored = await row(db, incident_id)
        assert stored.state is IncidentState.CANCELLED and stored.duress_at is None
        assert "duress" not in await audit_events(db, incident_id)
    assert (await harness.sweeper.sweep_once()).claimed == 0 and harness.webhook_requests() == []


async def test_after_a_duress_cancel_nothing_the_device_does_changes_what_it_sees(harness: Harness) -> None:
    db = harness.db
    device, incident_id = await crime(db)
    await act_on_incident(db, incident_id, IncidentAction.CANCEL, device_id=device, code=CODE)
    again = await act_on_incident(db, incident_id, IncidentAction.CANCEL, device_id=device)
    assert again.outcome is ActionOutcome.ALREADY_CANCELLED and again.fulfilled
    confirm = await act_on_incident(db, incident_id, IncidentAction.CONFIRM, device_id=device)
    assert confirm.outcome is ActionOutcome.CANCELLED and not confirm.fulfilled  # as a confirm after a cancel
    facts = EvidenceFacts(class_key="crime", renewals={"crime": 3}, heard_s=20.0)
    assert await record_evidence(db, incident_id, points=[], facts=facts, policy=EvidencePolicy(), countdown_s=60) is None
    # A detection while its report goes out neither joins it nor opens another.
    later = await open_incident(db, device_id=device, class_key="crime", confidence=0.95)
    assert not later.created and later.incident.id == incident_id and later.incident.state is IncidentState.CANCELLED
    stored = await row(db, incident_id)
    assert stored.state is IncidentState.PENDING and stored.detections == 1 and stored.trigger == "duress"
    # Once reported, the device's next detection opens a new incident as usual.
    await harness.sweeper.sweep_once()
    await harness.run_published()
    assert (await open_incident(db, device_id=device, class_key="crime", confidence=0.95)).created


async def test_a_duress_code_after_the_deadline_won_is_answered_as_any_late_cancel(harness: Harness) -> None:
    db = harness.db
    device = await make_device(db)
    async with db.session() as session:
        await session.execute(update(Device).where(Device.id == device).values(duress_code_hash=hash_code(CODE)))
    incident_id = (await open_incident(db, device_id=device, class_key="crime", confidence=0.9, countdown_s=0)).incident.id
    await harness.sweeper.sweep_once()
    late = await act_on_incident(db, incident_id, IncidentAction.CANCEL, device_id=device, code=CODE)
    assert late.outcome is ActionOutcome.ALREADY_REPORTED
    assert (await row(db, incident_id)).duress_at is None


async def test_the_clip_stays_for_the_report_and_goes_for_the_device_as_a_cancelled_ones_would(
    harness: Harness, tmp_path: Path
) -> None:
    db, store = harness.db, harness.dispatcher.reports.clips
    assert isinstance(store, LocalClipStore)
    device, incident_id = await crime(db)
    await act_on_incident(db, incident_id, IncidentAction.CANCEL, device_id=device, code=CODE)
    # The session keeps cutting the clip after the cancel, as after any cancel.
    await archive_clip(db, store, incident_id, np.zeros(16000, np.float32), 16000)
    await harness.sweeper.sweep_once()
    await harness.run_published()
    key = f"{incident_id}.flac"
    # The agency fetches it through the report's link; the device's trail shows only its own.
    await audit_clip_access(db, incident_id, "clip_downloaded", "link", {"client": "10.0.0.9", "link_expires_at": 1})
    await audit_clip_access(db, incident_id, "clip_link_issued", "owner", {"link_ttl_s": 3600, "link_expires_at": 7})
    await audit_clip_access(db, incident_id, "clip_downloaded", "link", {"client": "10.0.0.2", "link_expires_at": 7})
    assert [(a["event"], a.get("client")) for a in await clip_accesses(db, incident_id)] == [
        ("clip_link_issued", None), ("clip_downloaded", "10.0.0.2")
    ]
    assert (await donate_clip(db, incident_id, device)).outcome is DonationOutcome.DONATED  # as for a cancel

    # The false-alarm grace passes (undonated): gone for the device, kept for the report.
    async with db.session() as session:
        await session.execute(update(Incident).where(Incident.id == incident_id).values(clip_donated_at=None))
    grace_over = Retention(db, store, RetentionPolicy(cancelled_clip_grace_s=0, retention_s=90 * DAY), actor="w")
    assert (await grace_over.run_once()).clips_deleted == 1
    assert store.path_for(key).is_file() and await device_clip(db, incident_id) is None
    assert (await grace_over.run_once()).clips_deleted == 0
    assert not await delete_clip(db, store, incident_id, reason="deleted_by_owner", actor="owner", keep_donated=False)
    assert (await donate_clip(db, incident_id, device)).outcome is DonationOutcome.NO_CLIP
    events = await audit_events(db, incident_id)
    assert events.count("clip_deleted") == 1 and "report_clip_kept" in events

    # The retention deletes it for good, without telling the device twice.
    retention_over = Retention(db, store, RetentionPolicy(cancelled_clip_grace_s=0, retention_s=0), actor="w")
    assert (await retention_over.run_once()).incidents_expired == 1
    assert not store.path_for(key).exists()
    assert (await audit_events(db, incident_id))[-2:] == ["report_clip_deleted", "personal_data_deleted"]


async def test_the_owners_export_and_erasure_show_a_cancel(harness: Harness, tmp_path: Path) -> None:
    db, store = harness.db, harness.dispatcher.reports.clips
    device_id, incident_id = await crime(db)
    other_device, ordinary = await crime(db)
    await act_on_incident(db, incident_id, IncidentAction.CANCEL, device_id=device_id, code=CODE, reason="false alarm")
    await act_on_incident(db, ordinary, IncidentAction.CANCEL, device_id=other_device, reason="false alarm")
    await harness.sweeper.sweep_once()
    await harness.run_published()
    # The police answer the silent report: the owner's export must not show that either.
    await record_outcome(db, incident_id, "112", IncidentOutcome.CONFIRMED_EMERGENCY, message_id="msg_1",
                         signed_at=datetime.now(UTC), note="arrested")

    async def exported(device: uuid.UUID) -> dict[str, Any]:
        async with db.session() as session:
            loaded = await session.scalar(select(Device).where(Device.id == device).execution_options(populate_existing=True))
            assert loaded is not None
            await session.refresh(loaded, ["contacts"])
        body = await export_device_data(db, store, loaded, 3600)
        [incident] = body["incidents"]
        return incident

    shown, plain = await exported(device_id), await exported(other_device)
    assert masked(shown) == masked(plain)
    assert shown["state"] == "cancelled" and shown["deliveries"] == [] and shown["outcomes"] == []
    assert [entry["event"] for entry in shown["audit"]] == ["opened", "cancelled"]

    statement = await erase_device_data(db, store, device_id)
    assert statement is not None and statement.reports_kept_by_agencies == []
    assert statement.kept == ["Nothing: no report of yours was ever sent to an agency."]
    async with db.session() as session:
        erased = await session.scalar(select(AuditEntry.detail).where(AuditEntry.event == "device_erased"))
    assert erased is not None and [r["incident_id"] for r in erased["reports"]] == [str(incident_id)]


async def test_the_published_stats_count_it_as_a_cancel(harness: Harness) -> None:
    db = harness.db
    for _ in range(5):
        device, incident_id = await crime(db)
        await act_on_incident(db, incident_id, IncidentAction.CANCEL, device_id=device, code=CODE)
    await harness.sweeper.sweep_once()
    await harness.run_published()
    figures = (await incident_stats(db)).classes["crime"]
    assert figures is not None and (figures.incidents, figures.cancelled, figures.reported) == (5, 5, 0)
