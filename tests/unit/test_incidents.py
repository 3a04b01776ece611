"""The incident lifecycle on SQLite: open, evidence, cancel, confirm, the race with the deadline."""

from __future__ import annotations

import asyncio
import io
import sqlite3
import uuid
from datetime import timedelta

import numpy as np
import pytest
import soundfile as sf
from sqlalchemy import event, func, select, update

from shared.clips import LocalClipStore, verify_clip_token
from shared.db import Database
from shared.db.clock import db_now
from shared.db.models import AuditEntry, ContactNotification, Device, DispatchOutbox, Incident
from shared.incident_events import LocalIncidentEvents
from shared.incident_state import ActionOutcome, ContactEvent, IncidentAction, IncidentKind, IncidentState
from shared.incidents import (
    SAME_EVENT_S,
    DeviceTokenChanged,
    IncidentLocation,
    ScorePoint,
    act_on_incident,
    archive_clip,
    get_incident,
    incident_clip,
    list_incidents,
    move_incident,
    open_incident,
)
from tests.alerting_support import make_device, sweeper

async def test_open_sets_the_deadline_from_the_database_clock(sqlite_db: Database) -> None:
    device = await make_device(sqlite_db)
    opened = await open_incident(
        sqlite_db, device_id=device, class_key="fire", confidence=0.8,
        scores=[ScorePoint(-0.5, 0.6), ScorePoint(0.0, 0.8)], countdown_s=60,
    )
    incident = opened.incident
    assert opened.created and incident.state is IncidentState.PENDING
    assert incident.deadline_at - incident.detected_at == timedelta(seconds=60)
    assert 59.0 < incident.seconds_left <= 60.0
    assert [p["score"] for p in incident.score_timeline] == [0.6, 0.8]


async def test_a_new_incident_takes_one_read_and_is_not_read_back(db: Database) -> None:
    """Under load each statement waits for a busy event loop (docs/performance.md): the device,
    its contacts and the database's time come in one read, and the incident is told from what
    was written, its notices queued all the same."""
    device = await make_device(db, contacts=2)
    statements: list[str] = []

    def record(_conn: object, _cursor: object, statement: str, *_: object) -> None:
        statements.append(" ".join(statement.split()[:3]))

    event.listen(db.engine.sync_engine, "before_cursor_execute", record)
    try:
        opened = await open_incident(db, device_id=device, class_key="fire", confidence=0.9, countdown_s=60)
    finally:
        event.remove(db.engine.sync_engine, "before_cursor_execute", record)
    # The open incident, then a report the detection would continue: neither is there.
    assert statements[:4] == [
        "UPDATE incidents SET", "UPDATE incidents SET", "SELECT devices.id, devices.token_hash,", "INSERT INTO incidents"
    ]
    assert sorted(statements[4:]) == ["INSERT INTO audit_log", "INSERT INTO contact_notifications"]
    incident = opened.incident
    assert opened.created and incident.seconds_left == 60.0
    assert incident.deadline_at - incident.detected_at == timedelta(seconds=60)
    assert incident.state_changed_at == incident.detected_at
    async with db.session() as session:
        stored = await session.get_one(Incident, incident.id)
        notices = (await session.scalars(select(ContactNotification.event).where(ContactNotification.incident_id == incident.id))).all()
    assert (stored.detected_at, stored.deadline_at) == (incident.detected_at, incident.deadline_at)
    assert len(notices) == 2 and set(notices) == {ContactEvent.DETECTED}


async def test_evidence_for_an_open_incident_is_not_read_after_its_update(db: Database) -> None:
    """The update that finds the open incident returns its row, so adding evidence is that
    update, the timeline's and the audit entry: no read in between (docs/performance.md)."""
    device = await make_device(db)
    first = await open_incident(db, device_id=device, class_key="fire", confidence=0.7, scores=[ScorePoint(0.0, 0.7)])
    statements: list[str] = []

    def record(_conn: object, _cursor: object, statement: str, *_: object) -> None:
        statements.append(" ".join(statement.split()[:3]))

    event.listen(db.engine.sync_engine, "before_cursor_execute", record)
    try:
        joined = await open_incident(
            db, device_id=device, class_key="fire", confidence=0.9, scores=[ScorePoint(0.0, 0.9)], countdown_s=60
        )
    finally:
        event.remove(db.engine.sync_engine, "before_cursor_execute", record)
    assert statements[0] == "UPDATE incidents SET"
    assert sorted(statements[1:]) == ["INSERT INTO audit_log", "UPDATE incidents SET"]
    incident = joined.incident
    assert not joined.created and incident.id == first.incident.id
    assert incident.detections == 2 and incident.confidence == 0.9
    assert [p["score"] for p in incident.score_timeline] == [0.7, 0.9]
    async with db.session() as session:
        stored = await session.get_one(Incident, incident.id)
    assert (stored.detections, stored.confidence, stored.score_timeline) == (2, 0.9, incident.score_timeline)


async def _report(db: Database, incident_id: uuid.UUID, outcome: IncidentState = IncidentState.DISPATCHED) -> None:
    """"Report now", then the report went out (``dispatched``) or failed, as the alerting worker moves it."""
    await act_on_incident(db, incident_id, IncidentAction.CONFIRM)
    async with db.session() as session:
        await session.execute(move_incident(IncidentState.PENDING, IncidentState.DISPATCHING, Incident.id == incident_id))
        await session.execute(move_incident(IncidentState.DISPATCHING, outcome, Incident.id == incident_id))


async def test_the_same_event_after_its_report_is_evidence_for_the_report_not_a_second_report(db: Database) -> None:
    """A smoke alarm nobody reset keeps sounding after the report went out: its detections join
    the report (no countdown, no second report to 119); another class is a new emergency."""
    device = await make_device(db)
    first = (await open_incident(db, device_id=device, class_key="fire", confidence=0.8, scores=[ScorePoint(0, 0.8)])).incident
    await _report(db, first.id)
    again = await open_incident(db, device_id=device, class_key="fire", confidence=0.9, scores=[ScorePoint(0, 0.9)])
    assert not again.created and again.incident.id == first.id
    assert again.incident.state is IncidentState.DISPATCHED and again.incident.seconds_left == 0.0
    assert again.incident.detections == 2 and again.incident.confidence == 0.9
    assert again.incident.last_detected_at > first.last_detected_at == first.detected_at
    assert [p["score"] for p in again.incident.score_timeline] == [0.8, 0.9]
    assert again.incident.to_json()["last_detected_at"] == again.incident.last_detected_at.isoformat()
    async with db.session() as session:
        audits = (await session.scalars(
            select(AuditEntry.detail).where(AuditEntry.incident_id == first.id, AuditEntry.event == "evidence")
        )).all()
        reports = await session.scalar(select(func.count()).select_from(DispatchOutbox))
    assert audits == [{"class": "fire", "confidence": 0.9, "after_report": True}]
    other = await open_incident(db, device_id=device, class_key="help", confidence=0.9)
    assert other.created and other.incident.state is IncidentState.PENDING
    # While that one is open, a fire detection is its evidence, as any detection during a countdown.
    joined = await open_incident(db, device_id=device, class_key="fire", confidence=0.9)
    assert not joined.created and joined.incident.id == other.incident.id
    assert reports == 0  # nothing was queued for the agency by the joins


async def _heard_ago(db: Database, incident_id: uuid.UUID, seconds: float) -> None:
    """The incident's latest detection was ``seconds`` ago (database clock)."""
    async with db.session() as session:
        await session.execute(update(Incident).where(Incident.id == incident_id).values(last_detected_at=db_now(-seconds)))


async def test_a_report_is_joined_only_while_its_event_goes_on(db: Database) -> None:
    device = await make_device(db)
    first = (await open_incident(db, device_id=device, class_key="crime", confidence=0.8)).incident
    await _report(db, first.id)
    await _heard_ago(db, first.id, SAME_EVENT_S - 10)  # heard again within the span: the same event
    joined = await open_incident(db, device_id=device, class_key="crime", confidence=0.8)
    assert not joined.created and joined.incident.id == first.id
    assert joined.incident.last_detected_at > joined.incident.detected_at  # and it goes on from now
    again = await open_incident(db, device_id=device, class_key="crime", confidence=0.8, same_event_s=5.0)
    assert not again.created and again.incident.id == first.id  # 5 s span: it was heard just now
    await _heard_ago(db, first.id, SAME_EVENT_S + 10)  # quiet for longer than the span: a new event
    later = await open_incident(db, device_id=device, class_key="crime", confidence=0.8)
    assert later.created and later.incident.state is IncidentState.PENDING
    assert (await get_incident(db, first.id)).detections == 3  # type: ignore[union-attr]
    await _report(db, later.incident.id)
    off = await open_incident(db, device_id=device, class_key="crime", confidence=0.8, same_event_s=0)
    assert off.created  # the rule turned off


@pytest.mark.parametrize("outcome", [IncidentState.FAILED, IncidentState.CANCELLED])
async def test_a_failed_or_cancelled_incident_is_not_joined(db: Database, outcome: IncidentState) -> None:
    """A report that failed is tried again by the next detection; after a cancel the person is
    asked again (a cancel is never taken as "stop listening")."""
    device = await make_device(db)
    first = (await open_incident(db, device_id=device, class_key="fire", confidence=0.8)).incident
    if outcome is IncidentState.CANCELLED:
        await act_on_incident(db, first.id, IncidentAction.CANCEL, device_id=device)
    else:
        await _report(db, first.id, outcome)
    again = await open_incident(db, device_id=device, class_key="fire", confidence=0.8)
    assert again.created and again.incident.id != first.id and again.incident.state is IncidentState.PENDING


async def test_the_latest_report_of_the_class_is_joined(db: Database) -> None:
    device = await make_device(db)
    older = (await open_incident(db, device_id=device, class_key="fire", confidence=0.8)).incident
    await _report(db, older.id)
    newer = (await open_incident(db, device_id=device, class_key="fire", confidence=0.8, same_event_s=0)).incident
    await _report(db, newer.id)
    assert (await open_incident(db, device_id=device, class_key="fire", confidence=0.8)).incident.id == newer.id
    assert [(await get_incident(db, i.id)).detections for i in (older, newer)] == [1, 2]  # type: ignore[union-attr]


async def test_a_daycare_report_is_joined_by_the_models_detection_of_its_class(db: Database) -> None:
    """One fight, raised by the daycare rule and then heard by the model as crime: one 112 report."""
    device = await make_device(db)
    raised = (await open_incident(db, device_id=device, class_key="crime", confidence=0.7, kind=IncidentKind.CHILD_SAFETY)).incident
    await _report(db, raised.id)
    heard = await open_incident(db, device_id=device, class_key="crime", confidence=0.9)
    assert not heard.created and heard.incident.id == raised.id and heard.incident.kind is IncidentKind.CHILD_SAFETY


async def test_a_class_the_report_was_also_sent_for_joins_it(db: Database) -> None:
    """A cry for help, and a break-in heard during its countdown: 119 and 112 have the report.
    The intruder heard again afterwards is the same event, not a second call to the police; a
    class the report was not sent for is a new emergency."""
    device = await make_device(db)
    help_ = (await open_incident(db, device_id=device, class_key="help", confidence=0.8)).incident
    await open_incident(db, device_id=device, class_key="crime", confidence=0.8)
    await _report(db, help_.id)
    again = await open_incident(db, device_id=device, class_key="crime", confidence=0.9)
    assert not again.created and again.incident.id == help_.id and again.incident.also_detected == ("crime",)
    assert (await open_incident(db, device_id=device, class_key="fire", confidence=0.9)).created


async def test_each_class_joins_its_own_report(db: Database) -> None:
    device = await make_device(db)
    fire = (await open_incident(db, device_id=device, class_key="fire", confidence=0.8)).incident
    await _report(db, fire.id)
    help_ = (await open_incident(db, device_id=device, class_key="help", confidence=0.8)).incident
    await _report(db, help_.id)
    assert (await open_incident(db, device_id=device, class_key="fire", confidence=0.8)).incident.id == fire.id
    assert (await open_incident(db, device_id=device, class_key="help", confidence=0.8)).incident.id == help_.id
    assert (await open_incident(db, device_id=device, class_key="fire", confidence=0.8)).incident.id == fire.id


async def test_sqlite_clock_has_sub_second_precision(sqlite_db: Database) -> None:
    device = await make_device(sqlite_db)
    first = (await open_incident(sqlite_db, device_id=device, class_key="fire", confidence=0.8, countdown_s=0.25)).incident
    await asyncio.sleep(0.3)
    again = await get_incident(sqlite_db, first.id)
    assert again is not None and again.seconds_left == 0.0
    assert first.deadline_at - first.detected_at == timedelta(milliseconds=250)


async def test_a_second_detection_adds_evidence_to_the_open_incident(sqlite_db: Database) -> None:
    device = await make_device(sqlite_db)
    first = await open_incident(sqlite_db, device_id=device, class_key="fire", confidence=0.7, scores=[ScorePoint(0, 0.7)])
    second = await open_incident(sqlite_db, device_id=device, class_key="help", confidence=0.9, scores=[ScorePoint(0, 0.9)])
    assert not second.created and second.incident.id == first.incident.id
    assert second.incident.detections == 2 and second.incident.confidence == 0.9
    assert second.incident.class_key == "fire"
    assert [p["class"] for p in second.incident.score_timeline] == ["fire", "help"]
    assert second.incident.score_timeline[1]["t"] >= 0
    assert second.incident.deadline_at == first.incident.deadline_at


async def test_concurrent_detections_open_one_incident(sqlite_db: Database) -> None:
    device = await make_device(sqlite_db)
    results = await asyncio.gather(
        *(open_incident(sqlite_db, device_id=device, class_key="crime", confidence=0.9) for _ in range(5))
    )
    assert len({r.incident.id for r in results}) == 1
    assert sum(r.created for r in results) == 1
    final = await get_incident(sqlite_db, results[0].incident.id)
    assert final is not None and final.detections == 5


async def test_refuses_normal_class_and_unknown_device(sqlite_db: Database) -> None:
    device = await make_device(sqlite_db)
    with pytest.raises(ValueError):
        await open_incident(sqlite_db, device_id=device, class_key="normal", confidence=0.9)
    with pytest.raises(LookupError):
        await open_incident(sqlite_db, device_id=uuid.uuid4(), class_key="fire", confidence=0.9)


async def test_a_detection_whose_token_changed_writes_nothing(sqlite_db: Database) -> None:
    device = await make_device(sqlite_db)
    async with sqlite_db.session() as session:
        current = (await session.get_one(Device, device)).token_hash
    first = await open_incident(sqlite_db, device_id=device, class_key="fire", confidence=0.7, token_hash=current)
    assert first.created
    with pytest.raises(DeviceTokenChanged) as raised:  # a stale session's detection: not even evidence
        await open_incident(sqlite_db, device_id=device, class_key="help", confidence=0.9, token_hash="stale")
    assert raised.value.current_token_hash == current
    after = await get_incident(sqlite_db, first.incident.id)
    assert after is not None and after.detections == 1 and after.confidence == 0.7
    async with sqlite_db.session() as session:
        audited = await session.scalar(select(func.count()).select_from(AuditEntry).where(AuditEntry.event == "evidence"))
    assert audited == 0
    with pytest.raises(DeviceTokenChanged) as raised:  # the device was deleted: nothing opened
        await open_incident(sqlite_db, device_id=uuid.uuid4(), class_key="fire", confidence=0.9, token_hash=current)
    assert raised.value.current_token_hash is None


async def test_a_detection_is_one_transaction(sqlite_db: Database) -> None:
    device = await make_device(sqlite_db, contacts=2)
    async with sqlite_db.session() as session:
        current = (await session.get_one(Device, device)).token_hash
    began: list[object] = []
    event.listen(sqlite_db.engine.sync_engine, "begin", began.append)
    opened = await open_incident(sqlite_db, device_id=device, class_key="fire", confidence=0.7, token_hash=current)
    joined = await open_incident(sqlite_db, device_id=device, class_key="fire", confidence=0.8, token_hash=current)
    assert opened.created and not joined.created and joined.incident.id == opened.incident.id
    assert len(began) == 2  # the token check, the evidence or the insert, its contacts' notices, its audit


async def test_location_is_kept_only_with_consent(sqlite_db: Database) -> None:
    place = IncidentLocation(37.5, 127.0, 12.0)
    with_consent = await make_device(sqlite_db)
    without = await make_device(sqlite_db, consent_location=False)
    kept = await open_incident(sqlite_db, device_id=with_consent, class_key="fire", confidence=0.9, location=place)
    dropped = await open_incident(sqlite_db, device_id=without, class_key="fire", confidence=0.9, location=place)
    assert kept.incident.location == place
    assert dropped.incident.location is None


async def test_contacts_are_queued_at_detection(sqlite_db: Database) -> None:
    device = await make_device(sqlite_db, contacts=2, contact_webhook="http://guardian/hook")
    incident = (await open_incident(sqlite_db, device_id=device, class_key="medical", confidence=0.9)).incident
    async with sqlite_db.session() as session:
        rows = (await session.execute(
            select(ContactNotification.contact_id, ContactNotification.kind, ContactNotification.state)
            .where(ContactNotification.incident_id == incident.id)
            .order_by(ContactNotification.contact_id, ContactNotification.position)
        )).all()
    assert [(kind, state) for _, kind, state in rows] == [
        ("webhook", "pending"), ("sms", "standby"), ("webhook", "pending"), ("sms", "standby")
    ]


async def test_cancel_wins_while_pending_and_is_reported_truthfully_after(sqlite_db: Database) -> None:
    events = LocalIncidentEvents()
    device = await make_device(sqlite_db, contacts=1)
    incident = (await open_incident(sqlite_db, device_id=device, class_key="fire", confidence=0.9)).incident
    async with events.subscribe() as updates:
        result = await act_on_incident(sqlite_db, incident.id, IncidentAction.CANCEL, device_id=device, reason="toast", events=events)
        update = await asyncio.wait_for(anext(updates), 1)
    assert result.outcome is ActionOutcome.CANCELLED and result.incident is not None
    assert result.incident.state is IncidentState.CANCELLED and result.incident.cancel_reason == "toast"
    assert update.state == "cancelled" and update.detail == {"reason": "toast"}
    again = await act_on_incident(sqlite_db, incident.id, IncidentAction.CANCEL, device_id=device)
    assert again.outcome is ActionOutcome.ALREADY_CANCELLED
    confirm = await act_on_incident(sqlite_db, incident.id, IncidentAction.CONFIRM, device_id=device)
    assert confirm.outcome is ActionOutcome.CANCELLED
    async with sqlite_db.session() as session:
        states = (await session.scalars(
            select(ContactNotification.state).where(ContactNotification.incident_id == incident.id)
        )).all()
    # The guardian had not been told yet: the detection notice is dropped, no cancel notice is needed.
    assert set(states) == {"skipped"}


async def test_cancel_after_the_deadline_claim_is_already_reported(sqlite_db: Database) -> None:
    device = await make_device(sqlite_db)
    incident = (await open_incident(sqlite_db, device_id=device, class_key="crime", confidence=0.9, countdown_s=0)).incident
    published: list[tuple[str, str]] = []
    assert await sweeper(sqlite_db, published).claim_due_incidents() == 1
    result = await act_on_incident(sqlite_db, incident.id, IncidentAction.CANCEL, device_id=device)
    assert result.outcome is ActionOutcome.ALREADY_REPORTED
    assert result.incident is not None and result.incident.state is IncidentState.DISPATCHING
    assert (await act_on_incident(sqlite_db, incident.id, IncidentAction.CONFIRM)).outcome is ActionOutcome.ALREADY_REPORTED


async def test_cancel_of_another_devices_incident_is_not_found(sqlite_db: Database) -> None:
    owner, stranger = await make_device(sqlite_db), await make_device(sqlite_db)
    incident = (await open_incident(sqlite_db, device_id=owner, class_key="fire", confidence=0.9)).incident
    assert (await act_on_incident(sqlite_db, incident.id, IncidentAction.CANCEL, device_id=stranger)).outcome is ActionOutcome.NOT_FOUND
    assert (await act_on_incident(sqlite_db, incident.id, IncidentAction.CONFIRM, device_id=stranger)).outcome is ActionOutcome.NOT_FOUND
    assert await get_incident(sqlite_db, incident.id, device_id=stranger) is None
    assert (await get_incident(sqlite_db, incident.id, device_id=owner)) is not None


async def test_confirm_moves_the_deadline_to_now(sqlite_db: Database) -> None:
    device = await make_device(sqlite_db)
    incident = (await open_incident(sqlite_db, device_id=device, class_key="help", confidence=0.9)).incident
    result = await act_on_incident(sqlite_db, incident.id, IncidentAction.CONFIRM, device_id=device)
    assert result.outcome is ActionOutcome.CONFIRMED and result.incident is not None
    assert result.incident.seconds_left == 0.0 and result.incident.trigger == "confirmed"
    assert await sweeper(sqlite_db).claim_due_incidents() == 1


async def test_a_cancel_that_finds_the_database_locked_is_carried_out_once_the_lock_is_free(
    sqlite_db: Database, sqlite_url: str
) -> None:
    # Another connection holds SQLite's write lock longer than this engine waits: the person's
    # cancel is tried again, not refused (a refused cancel would let the incident be reported).
    device = await make_device(sqlite_db)
    incident = (await open_incident(sqlite_db, device_id=device, class_key="fire", confidence=0.9)).incident
    impatient = Database(sqlite_url, connect_args={"timeout": 0.1})
    holder = sqlite3.connect(sqlite_url.removeprefix("sqlite+aiosqlite:///"), isolation_level=None)
    holder.execute("BEGIN IMMEDIATE")

    async def release_later() -> None:
        await asyncio.sleep(0.3)
        holder.execute("COMMIT")

    try:
        result, _ = await asyncio.gather(
            act_on_incident(impatient, incident.id, IncidentAction.CANCEL, device_id=device), release_later()
        )
    finally:
        holder.close()
        await impatient.dispose()
    assert result.outcome is ActionOutcome.CANCELLED
    async with sqlite_db.session() as session:
        audited = (await session.scalars(select(AuditEntry.event).where(AuditEntry.incident_id == incident.id))).all()
    assert audited.count("cancelled") == 1


@pytest.mark.parametrize("round_", range(8))
async def test_cancel_racing_the_deadline_has_exactly_one_winner(sqlite_db: Database, round_: int) -> None:
    device = await make_device(sqlite_db)
    incident = (await open_incident(sqlite_db, device_id=device, class_key="fire", confidence=0.9, countdown_s=0.02)).incident
    await asyncio.sleep(0.02 + round_ * 0.002)
    claimed, cancel = await asyncio.gather(
        sweeper(sqlite_db).claim_due_incidents(), act_on_incident(sqlite_db, incident.id, IncidentAction.CANCEL)
    )
    async with sqlite_db.session() as session:
        rows = await session.scalar(select(func.count()).select_from(DispatchOutbox).where(DispatchOutbox.incident_id == incident.id))
    if cancel.outcome is ActionOutcome.CANCELLED:
        assert claimed == 0 and rows == 0
    else:
        assert cancel.outcome is ActionOutcome.ALREADY_REPORTED and claimed == 1 and rows == 1


async def test_history_filters(sqlite_db: Database) -> None:
    device = await make_device(sqlite_db)
    fire = (await open_incident(sqlite_db, device_id=device, class_key="fire", confidence=0.9)).incident
    await act_on_incident(sqlite_db, fire.id, IncidentAction.CANCEL)
    crime = (await open_incident(sqlite_db, device_id=device, class_key="crime", confidence=0.9)).incident
    assert [i.id for i in await list_incidents(sqlite_db, device)] == [crime.id, fire.id]
    assert [i.id for i in await list_incidents(sqlite_db, device, class_key="fire")] == [fire.id]
    assert [i.id for i in await list_incidents(sqlite_db, device, since=crime.detected_at)] == [crime.id]
    assert [i.id for i in await list_incidents(sqlite_db, device, until=crime.detected_at)] == [fire.id]
    assert await list_incidents(sqlite_db, uuid.uuid4()) == []


async def test_clip_is_archived_with_checksum_and_a_verifiable_link(sqlite_db: Database, tmp_path) -> None:  # type: ignore[no-untyped-def]
    device = await make_device(sqlite_db)
    incident = (await open_incident(sqlite_db, device_id=device, class_key="fire", confidence=0.9)).incident
    store = LocalClipStore(tmp_path / "clips", "clip-secret", "http://gw:8000")
    samples = (0.1 * np.sin(np.arange(16000 * 30) / 10)).astype(np.float32)
    info = await archive_clip(sqlite_db, store, incident.id, samples, 16000)
    assert info == await incident_clip(sqlite_db, incident.id)
    assert info.duration_s == 30.0 and len(info.sha256) == 64
    data = await store.get(info.key)
    decoded, rate = sf.read(io.BytesIO(data), dtype="float32")
    assert rate == 16000 and np.abs(decoded - samples).max() < 1e-4
    link = store.link(info.key, 60)
    assert link.startswith(f"http://gw:8000/v1/clips/{info.key}?")
    query = dict(p.split("=") for p in link.split("?")[1].split("&"))
    assert verify_clip_token("clip-secret", info.key, int(query["exp"]), query["sig"])
    assert not verify_clip_token("other", info.key, int(query["exp"]), query["sig"])
    assert not verify_clip_token("clip-secret", info.key, int(query["exp"]), query["sig"], now=int(query["exp"]))
    async with sqlite_db.session() as session:
        assert "clip" in (await session.scalars(select(AuditEntry.event).where(AuditEntry.incident_id == incident.id))).all()
