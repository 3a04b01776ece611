"""Cancels that teach, in the database (SQLite and PostgreSQL): five similar false alarms of
fire raise that home's fire threshold one step, with the evidence and an audit entry; other
cancels, other sounds and other homes teach nothing; every step needs fresh evidence; the
ceiling holds; an undo goes back and is not re-learned at the next cancel; the settings and
the weekly summary say so."""

from __future__ import annotations

import asyncio
import logging
import uuid
from collections.abc import Mapping
from datetime import datetime
from typing import Any

import pytest
from sqlalchemy import select, update

from services.gateway.device_thresholds import DeviceThresholds, ThresholdsChanged
from shared.db import Database, Device
from shared.db.models import AuditEntry, Incident
from shared.detector import DetectorConfig
from shared.incident_state import ActionOutcome, CancelKind, IncidentAction, IncidentState
from shared.incidents import act_on_incident, open_incident
from shared.incidents.device_summary import device_summary
from shared.incidents.duress import hash_code
from shared.incidents.threshold_learning import LearningPolicy
from shared.pubsub import LocalChannel
from tests.alerting_support import make_device

BASE: Mapping[str, float] = DetectorConfig.build(0.5).thresholds
BEEP = [1.0, 0.5, 0.0, -0.5, -1.0, 0.0]
ALSO_BEEP = [0.95, 0.55, 0.0, -0.5, -1.0, 0.05]
OTHER = [-1.0, 0.0, 1.0, 0.0, -1.0, 1.0]


@pytest.fixture
def learning(db: Database) -> DeviceThresholds:
    return DeviceThresholds(db, LearningPolicy(), lambda: BASE, LocalChannel())


async def cancel(
    db: Database, device: uuid.UUID, learning: DeviceThresholds, signature: list[float] | None = BEEP,
    class_key: str = "fire", kind: CancelKind | None = CancelKind.FALSE_ALARM, code: str | None = None,
) -> uuid.UUID:
    """A detection of ``class_key`` with ``signature``, cancelled with ``kind``."""
    opened = await open_incident(db, device_id=device, class_key=class_key, confidence=0.6, sound_signature=signature)
    result = await act_on_incident(
        db, opened.incident.id, IncidentAction.CANCEL, device_id=device, kind=kind, code=code, learning=learning
    )
    assert result.outcome is ActionOutcome.CANCELLED
    return opened.incident.id


async def fire_threshold(learning: DeviceThresholds, device: uuid.UUID) -> float:
    return (await learning.learned([device])).get(device, {}).get("fire", BASE["fire"])


async def fire_settings(learning: DeviceThresholds, device: uuid.UUID) -> dict[str, Any]:
    settings = await learning.settings(device)
    fire: dict[str, Any] = next(c for c in settings["classes"] if c["class"] == "fire")
    return fire


async def audit(db: Database, event: str) -> list[AuditEntry]:
    async with db.session() as session:
        return list((await session.scalars(select(AuditEntry).where(AuditEntry.event == event))).all())


async def test_five_similar_false_alarms_raise_the_fire_threshold_one_step(db: Database, learning: DeviceThresholds) -> None:
    device = await make_device(db)
    async with learning.channel.subscribe() as changes:
        incidents = [await cancel(db, device, learning, BEEP if i % 2 else ALSO_BEEP) for i in range(4)]
        assert await fire_threshold(learning, device) == 0.5  # four are not enough for fire
        incidents.append(await cancel(db, device, learning))
        assert await fire_threshold(learning, device) == 0.55
        assert await anext(changes) == ThresholdsChanged(str(device))

    fire = await fire_settings(learning, device)
    assert (fire["base"], fire["current"], fire["ceiling"]) == (0.5, 0.55, 0.6)
    assert fire["learning"]["min_cancels"] == 5
    (adjustment,) = fire["adjustments"]
    assert (adjustment["threshold_from"], adjustment["threshold_to"], adjustment["undone_at"]) == (0.5, 0.55, None)
    assert sorted(adjustment["evidence"]["incidents"]) == sorted(map(str, incidents))
    assert adjustment["evidence"]["incident_id"] == str(incidents[-1])
    assert min(adjustment["evidence"]["similarities"]) >= 0.9
    (raised,) = await audit(db, "threshold_raised")
    assert raised.incident_id == incidents[-1] and raised.detail["to"] == 0.55
    async with db.session() as session:
        kinds = set((await session.scalars(select(Incident.cancel_kind).where(Incident.device_id == device))).all())
    assert kinds == {CancelKind.FALSE_ALARM}


async def test_other_sounds_other_kinds_and_other_homes_teach_nothing(db: Database, learning: DeviceThresholds) -> None:
    device, neighbour = await make_device(db), await make_device(db)
    for _ in range(2):
        await cancel(db, device, learning)
    await cancel(db, neighbour, learning)  # another home's false alarm
    await cancel(db, device, learning, OTHER)  # another sound
    await cancel(db, device, learning, kind=CancelKind.HANDLED)  # something happened: not a false alarm
    await cancel(db, device, learning, kind=CancelKind.NOT_SURE)
    await cancel(db, device, learning, kind=None)
    await cancel(db, device, learning, signature=None)  # no signature (an older gateway)
    await cancel(db, device, learning, class_key="gas")  # another class
    await cancel(db, device, learning)  # the third similar fire false alarm: fire needs five
    assert await learning.learned([device, neighbour]) == {}


async def test_three_similar_false_alarms_are_enough_for_crime(db: Database, learning: DeviceThresholds) -> None:
    device = await make_device(db)
    for _ in range(3):
        await cancel(db, device, learning, class_key="crime")
    assert await learning.learned([device]) == {device: {"crime": 0.55}}


async def test_a_cancel_under_duress_never_teaches(db: Database, learning: DeviceThresholds) -> None:
    device = await make_device(db)
    async with db.session() as session:
        await session.execute(update(Device).where(Device.id == device).values(duress_code_hash=hash_code("2580")))
    await cancel(db, device, learning, class_key="crime")
    await cancel(db, device, learning, class_key="crime")
    forced = await cancel(db, device, learning, class_key="crime", code="2580")
    assert await learning.learned([device]) == {}
    async with db.session() as session:
        incident = await session.get_one(Incident, forced)
    assert incident.duress_at is not None and incident.state is IncidentState.PENDING  # reported, not cancelled


async def test_every_step_needs_fresh_evidence_and_the_ceiling_holds(db: Database, learning: DeviceThresholds) -> None:
    device = await make_device(db)
    for _ in range(6):
        await cancel(db, device, learning)
    assert await fire_threshold(learning, device) == 0.55  # the sixth is evidence for the next step only
    for _ in range(4):
        await cancel(db, device, learning)
    assert await fire_threshold(learning, device) == 0.595
    for _ in range(10):
        await cancel(db, device, learning)
    assert await fire_threshold(learning, device) == 0.6  # the fire ceiling: 0.5 + 0.2 x (1 - 0.5)
    assert len(await audit(db, "threshold_at_ceiling")) == 1
    for _ in range(5):
        await cancel(db, device, learning)
    assert await fire_threshold(learning, device) == 0.6


async def test_an_undo_goes_back_and_is_not_relearned_at_the_next_cancel(db: Database, learning: DeviceThresholds) -> None:
    device, neighbour = await make_device(db), await make_device(db)
    for _ in range(10):
        await cancel(db, device, learning)
    first, second = (await fire_settings(learning, device))["adjustments"]
    assert (first["threshold_to"], second["threshold_to"]) == (0.55, 0.595)

    assert await learning.undo(neighbour, first["id"]) is None  # another home's
    undone = await learning.undo(device, first["id"])
    assert undone is not None and [a.id for a in undone] == [first["id"], second["id"]]
    assert await fire_threshold(learning, device) == 0.5
    assert await learning.undo(device, first["id"]) == []  # again: nothing more to undo
    (entry,) = await audit(db, "threshold_undone")
    assert entry.detail["adjustments"] == [first["id"], second["id"]] and entry.detail["threshold"] == 0.5

    await cancel(db, device, learning)  # the ten before the undo do not count again
    assert await fire_threshold(learning, device) == 0.5
    assert all(a["undone_at"] for a in (await fire_settings(learning, device))["adjustments"])


async def test_false_alarms_older_than_the_window_do_not_count(db: Database, learning: DeviceThresholds) -> None:
    device = await make_device(db)
    old = [await cancel(db, device, learning) for _ in range(4)]
    async with db.session() as session:
        for incident_id in old:
            row = await session.get_one(Incident, incident_id)
            await session.execute(update(Incident).where(Incident.id == incident_id).values(
                detected_at=row.detected_at.replace(year=row.detected_at.year - 1)))  # fmt: skip
    await cancel(db, device, learning)
    assert await fire_threshold(learning, device) == 0.5


async def test_the_summary_says_what_was_heard_cancelled_and_changed(db: Database, learning: DeviceThresholds) -> None:
    device = await make_device(db)
    for _ in range(5):
        await cancel(db, device, learning)
    await cancel(db, device, learning, class_key="crime", kind=CancelKind.HANDLED)
    await open_incident(db, device_id=device, class_key="help", confidence=0.9)  # still counting down
    summary = (await device_summary(db, device)).to_json()
    heard = {c["class"]: c for c in summary["heard"]["classes"]}
    assert list(heard) == ["crime", "fire", "help"]
    assert heard["fire"]["incidents"] == 5 and heard["fire"]["states"] == {"cancelled": 5}
    assert heard["help"]["states"] == {"pending": 1}
    assert summary["cancelled"] == {"total": 6, "by_kind": {"false_alarm": 5, "handled": 1, "not_sure": 0, "unspecified": 0}}
    (change,) = summary["threshold_changes"]
    assert (change["class"], change["threshold_from"], change["threshold_to"]) == ("fire", 0.5, 0.55)
    assert "0.50 → 0.55" in summary["text"]["en"] and "5 similar false alarms" in summary["text"]["en"]
    assert "오경보 5건" in summary["text"]["ko"]

    await learning.undo(device, change["id"])
    again = (await device_summary(db, device)).to_json()
    assert "was undone" in again["text"]["en"] and again["threshold_changes"][0]["undone_at"] is not None
    until = datetime.fromisoformat(summary["window"]["until"])
    with pytest.raises(ValueError):
        await device_summary(db, device, since=until, until=until)


async def test_a_session_cancelled_while_reading_its_thresholds_leaves_the_pool_clean(
    postgres_db: Database, caplog: pytest.LogCaptureFixture
) -> None:
    """A session reads its device's learned thresholds as it starts, and a newer session of the
    device may end it meanwhile: the read runs to its end, so no cancellation lands inside an
    asyncpg call (the pool would log "Exception closing connection" and lose the connection)."""
    learning = DeviceThresholds(postgres_db, LearningPolicy(), lambda: BASE, LocalChannel())
    device = await make_device(postgres_db)
    caplog.set_level(logging.WARNING, logger="sqlalchemy")
    for turns in range(30):  # cancelled at every point of the read, one loop turn later each time
        reading = asyncio.create_task(learning.learned([device]))
        for _ in range(turns):
            await asyncio.sleep(0)
        reading.cancel()
        await asyncio.wait({reading})
    assert await learning.learned([device]) == {}
    assert [r.getMessage() for r in caplog.records if r.levelno >= logging.WARNING] == []
