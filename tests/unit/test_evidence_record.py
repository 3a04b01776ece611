"""shared.incidents.evidence_record on SQLite and PostgreSQL: the timeline grows, the mark is
stored, and shortening only ever moves a pending incident's deadline earlier, audited."""

from __future__ import annotations

import asyncio
import uuid
from datetime import timedelta

from sqlalchemy import select

from shared.db import Database
from shared.db.models import AuditEntry
from shared.incident_events import IncidentUpdate, LocalIncidentEvents
from shared.incident_state import EvidenceMark, IncidentAction, IncidentState
from shared.incidents import (
    MAX_TIMELINE_POINTS,
    EvidenceFacts,
    EvidencePolicy,
    ScorePoint,
    act_on_incident,
    get_incident,
    open_incident,
    record_evidence,
)
from tests.alerting_support import make_device

POLICY = EvidencePolicy()
FIRE_GROWING = EvidenceFacts("fire", {"fire": 1}, frozenset({"fire"}), heard_s=4.0)
FIRE_STEADY = EvidenceFacts("fire", heard_s=4.0)


async def opened(db: Database, class_key: str = "fire") -> uuid.UUID:
    incident = (
        await open_incident(
            db, device_id=await make_device(db), class_key=class_key, confidence=0.8,
            scores=[ScorePoint(-0.5, 0.4), ScorePoint(0.0, 0.8)],
        )
    ).incident  # fmt: skip
    return incident.id


async def audit(db: Database, incident_id: uuid.UUID, event: str) -> list[AuditEntry]:
    async with db.session() as session:
        query = select(AuditEntry).where(AuditEntry.incident_id == incident_id, AuditEntry.event == event)
        return list((await session.scalars(query)).all())


async def test_points_join_the_timeline_and_the_mark_is_stored(db: Database) -> None:
    incident_id = await opened(db)
    points = [ScorePoint(0.5, 0.7, "fire"), ScorePoint(0.5, 0.3, "gas"), ScorePoint(1.0, 0.75, "fire")]
    recorded = await record_evidence(
        db, incident_id, points=points, facts=FIRE_STEADY, policy=POLICY, countdown_s=60.0
    )
    assert recorded is not None and not recorded.mark_changed and recorded.shortening is None
    view = recorded.incident
    assert [(p["t"], p["class"]) for p in view.score_timeline] == [
        (-0.5, "fire"), (0.0, "fire"), (0.5, "fire"), (0.5, "gas"), (1.0, "fire")
    ]
    assert view.evidence is EvidenceMark.STEADY
    assert view.evidence_summary == {**FIRE_STEADY.to_json(), "shortened": None}
    rest = view.to_json()
    assert rest["evidence"] == "steady" and rest["evidence_summary"]["classes_heard"] == ["fire"]

    faded = EvidenceFacts("fire", heard_s=20.0, quiet_s=18.0)
    events = LocalIncidentEvents()
    async with events.subscribe() as updates:
        again = await record_evidence(
            db, incident_id, points=[], facts=faded, policy=POLICY, countdown_s=60.0, events=events
        )
        update: IncidentUpdate = await asyncio.wait_for(anext(aiter(updates)), 2)
    assert again is not None and again.mark_changed and again.incident.evidence is EvidenceMark.FADED
    assert update.evidence is EvidenceMark.FADED and update.state is IncidentState.PENDING
    (entry,) = await audit(db, incident_id, "evidence")
    assert (entry.detail["from"], entry.detail["to"]) == ("steady", "faded")
    # Faded never cancels: the incident still counts down to its full deadline.
    assert again.incident.state is IncidentState.PENDING and again.incident.deadline_at == view.deadline_at


async def test_the_timeline_stays_bounded(db: Database) -> None:
    incident_id = await opened(db)
    points = [ScorePoint(0.5 * i, 0.6, "fire") for i in range(1, MAX_TIMELINE_POINTS + 50)]
    recorded = await record_evidence(db, incident_id, points=points, facts=FIRE_STEADY, policy=POLICY, countdown_s=60)
    assert recorded is not None
    timeline = recorded.incident.score_timeline
    assert len(timeline) == MAX_TIMELINE_POINTS and timeline[-1]["t"] == points[-1].t


async def test_growing_evidence_moves_the_deadline_earlier_once_audited_and_published(db: Database) -> None:
    incident_id = await opened(db)
    before = await get_incident(db, incident_id)
    assert before is not None
    events = LocalIncidentEvents()
    async with events.subscribe() as updates:
        recorded = await record_evidence(
            db, incident_id, points=[], facts=FIRE_GROWING, policy=POLICY, countdown_s=60.0, events=events
        )
        update: IncidentUpdate = await asyncio.wait_for(anext(aiter(updates)), 2)
    assert recorded is not None and recorded.shortening is not None
    view = recorded.incident
    target = before.detected_at + timedelta(seconds=30)
    assert view.deadline_at == target and view.state is IncidentState.PENDING
    assert view.evidence is EvidenceMark.GROWING
    assert update.deadline_at == target.isoformat() and "fire" in update.detail["shortened"]
    (entry,) = await audit(db, incident_id, "deadline_shortened")
    assert entry.actor == "gateway" and entry.detail["to"] == target.isoformat()
    assert entry.detail["from"] == before.deadline_at.isoformat()
    assert view.evidence_summary is not None and view.evidence_summary["shortened"] == entry.detail

    # Growing again changes nothing more: the deadline is already there, the summary keeps why.
    again = await record_evidence(db, incident_id, points=[], facts=FIRE_GROWING, policy=POLICY, countdown_s=60)
    assert again is not None and again.shortening is None and again.incident.deadline_at == target
    assert again.incident.evidence_summary is not None and again.incident.evidence_summary["shortened"] == entry.detail
    assert len(await audit(db, incident_id, "deadline_shortened")) == 1


async def test_shortening_never_moves_a_deadline_later(db: Database) -> None:
    incident_id = await opened(db, "crime")
    confirmed = await act_on_incident(db, incident_id, IncidentAction.CONFIRM)  # deadline := now
    assert confirmed.incident is not None
    recorded = await record_evidence(
        db, incident_id, points=[], facts=EvidenceFacts("crime", {"crime": 1}), policy=POLICY, countdown_s=60.0
    )
    assert recorded is not None and recorded.shortening is None
    assert recorded.incident.deadline_at == confirmed.incident.deadline_at
    assert await audit(db, incident_id, "deadline_shortened") == []


async def test_a_cancelled_incident_is_never_touched(db: Database) -> None:
    incident_id = await opened(db)
    cancelled = await act_on_incident(db, incident_id, IncidentAction.CANCEL, reason="toast")
    assert cancelled.incident is not None
    recorded = await record_evidence(
        db, incident_id, points=[ScorePoint(1.0, 0.9, "fire")], facts=FIRE_GROWING, policy=POLICY, countdown_s=60
    )
    assert recorded is None
    after = await get_incident(db, incident_id)
    assert after is not None and after.state is IncidentState.CANCELLED
    assert after.deadline_at == cancelled.incident.deadline_at
    assert after.score_timeline == cancelled.incident.score_timeline and after.evidence is EvidenceMark.STEADY
    assert await audit(db, incident_id, "deadline_shortened") == []


async def test_a_cancel_racing_the_shortening_stays_cancelled(db: Database) -> None:
    for _ in range(5):
        incident_id = await opened(db)
        cancel, recorded = await asyncio.gather(
            act_on_incident(db, incident_id, IncidentAction.CANCEL),
            record_evidence(db, incident_id, points=[], facts=FIRE_GROWING, policy=POLICY, countdown_s=60.0),
        )
        after = await get_incident(db, incident_id)
        assert cancel.fulfilled and after is not None and after.state is IncidentState.CANCELLED
        shortened = await audit(db, incident_id, "deadline_shortened")
        # Either the shortening came first (and was audited) or it found the incident cancelled.
        assert len(shortened) == (0 if recorded is None else 1)


async def test_shortening_off_keeps_the_full_countdown(db: Database) -> None:
    incident_id = await opened(db)
    before = await get_incident(db, incident_id)
    off = EvidencePolicy.model_validate({"shortening": {}})
    recorded = await record_evidence(db, incident_id, points=[], facts=FIRE_GROWING, policy=off, countdown_s=60.0)
    assert recorded is not None and before is not None
    assert recorded.incident.deadline_at == before.deadline_at and recorded.incident.evidence is EvidenceMark.GROWING
