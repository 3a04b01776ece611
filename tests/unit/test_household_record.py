"""Writing a household's corroboration (shared/household/record.py), on SQLite and PostgreSQL:
the judgement stored and audited, incidents of one home linked both ways and both kept, the
countdown shortened only by another device's detection, only earlier, only while pending."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import select, update

from shared.db import Database, Device
from shared.db.models import AuditEntry, Incident
from shared.household import (
    Corroboration,
    CorroborationRecorded,
    Peer,
    Support,
    household_peers,
    record_corroboration,
)
from shared.household.membership import create_household, join_household
from shared.incident_events import LocalIncidentEvents
from shared.incident_state import IncidentAction, IncidentState
from shared.incidents import EvidencePolicy, act_on_incident, open_incident
from tests.alerting_support import make_device

COUNTDOWN_S = 60.0
NOW = datetime(2027, 1, 1, tzinfo=UTC)


async def home(db: Database, rooms: list[str | None]) -> tuple[uuid.UUID, list[uuid.UUID]]:
    devices = [await make_device(db) for _ in rooms]
    view, code = await create_household(db, devices[0], "Hong family")
    for device in devices[1:]:
        await join_household(db, device, code)
    async with db.session() as session:
        for device, room in zip(devices, rooms):
            await session.execute(update(Device).where(Device.id == device).values(room=room))
    return view.id, devices


def judged(class_key: str, *supports: Support, quiet: tuple[uuid.UUID, ...] = ()) -> Corroboration:
    """Judged with ``supports``, and the ``quiet`` devices listening without supporting it."""
    listening = frozenset({s.device_id for s in supports} | {str(device) for device in quiet})
    return Corroboration(class_key, listening, supports, NOW)


def support(device: uuid.UUID, room: str, *, detected: bool, how: str = "same_class") -> Support:
    return Support(str(device), room, None, "fire", 0.5 if detected else 0.25, 3.0, how, detected)  # type: ignore[arg-type]


async def opened(db: Database, device: uuid.UUID, class_key: str = "fire") -> uuid.UUID:
    return (await open_incident(db, device_id=device, class_key=class_key, confidence=0.9, countdown_s=COUNTDOWN_S)).incident.id


async def record(db: Database, incident: uuid.UUID, household: uuid.UUID, corroboration: Corroboration,
                 policy: EvidencePolicy = EvidencePolicy(),
                 events: LocalIncidentEvents | None = None) -> CorroborationRecorded | None:  # fmt: skip
    return await record_corroboration(db, incident, household, corroboration, span_s=3.0, policy=policy,
                                      countdown_s=COUNTDOWN_S, events=events)  # fmt: skip


async def test_peers_are_the_other_devices_of_the_household_now(db: Database) -> None:
    household, (kitchen, bedroom) = await home(db, ["kitchen", "bedroom"])
    assert await household_peers(db, kitchen) == (household, [Peer(bedroom, "bedroom", "홍길동")])
    alone = await make_device(db, consent_share_profile=False)
    assert await household_peers(db, alone) == (None, [])


async def test_another_devices_detection_shortens_fire_and_both_incidents_are_linked(db: Database) -> None:
    household, (kitchen, bedroom) = await home(db, ["kitchen", "bedroom"])
    first, second = await opened(db, kitchen), await opened(db, bedroom)
    events = LocalIncidentEvents()
    async with events.subscribe() as updates:
        recorded = await record(db, first, household, judged("fire", support(bedroom, "bedroom", detected=True)),
                                events=events)  # fmt: skip
        update_pushed = await anext(updates)
    assert recorded is not None and recorded.shortening is not None
    assert recorded.shortening.reason == "fire: detected in the bedroom too; report at 50% of the countdown"
    assert update_pushed.detail == {"shortened": recorded.shortening.reason}
    view = recorded.incident
    assert (view.deadline_at - view.detected_at).total_seconds() == pytest.approx(COUNTDOWN_S / 2)
    assert view.corroboration is not None and view.corroboration["linked_incidents"] == [str(second)]
    assert view.corroboration["supporting"][0]["incident_id"] == str(second)
    assert view.evidence_summary is not None and view.evidence_summary["shortened"]["reason"] == recorded.shortening.reason

    # The bedroom's own judgement: the kitchen heard it first; it links back, and both stay pending.
    back = await record(db, second, household, judged("fire", support(kitchen, "kitchen", detected=True)))
    assert back is not None and back.corroboration.linked_incidents == (str(first),)
    async with db.session() as session:
        rows = {i.id: i for i in await session.scalars(select(Incident).where(Incident.id.in_([first, second])))}
        audit = [e.event for e in await session.scalars(select(AuditEntry).where(AuditEntry.incident_id == first))]
    assert {row.state for row in rows.values()} == {IncidentState.PENDING}
    assert (rows[first].corroboration or {})["linked_incidents"] == [str(second)]
    assert "corroborated" in audit and "deadline_shortened" in audit


async def test_a_later_incident_of_the_home_is_named_in_one_already_judged(db: Database) -> None:
    household, (kitchen, bedroom) = await home(db, ["kitchen", "bedroom"])
    first = await opened(db, kitchen)
    # Judged before the bedroom's own detection was written: only this device so far.
    alone = await record(db, first, household, judged("fire", quiet=(bedroom,)))
    assert alone is not None and alone.corroboration.only_this_device and alone.shortening is None
    second = await opened(db, bedroom)
    await record(db, second, household, judged("fire", support(kitchen, "kitchen", detected=True)))
    async with db.session() as session:
        kitchen_row = await session.get_one(Incident, first)
    assert kitchen_row.corroboration is not None
    assert kitchen_row.corroboration["linked_incidents"] == [str(second)]
    assert kitchen_row.corroboration["only_this_device"] is False and kitchen_row.corroboration["peers_listening"] == 1
    assert kitchen_row.corroboration["supporting"][0]["room"] == "bedroom"


@pytest.mark.parametrize(
    ("class_key", "corroborating", "policy", "shortened"),
    [
        ("fire", support(uuid.UUID(int=7), "bedroom", detected=False), EvidencePolicy(), False),  # half its threshold
        ("fire", support(uuid.UUID(int=7), "bedroom", detected=True, how="loud"), EvidencePolicy(), True),
        ("gas", support(uuid.UUID(int=7), "bedroom", detected=True), EvidencePolicy(), False),  # no rule for gas
        ("fire", support(uuid.UUID(int=7), "bedroom", detected=True), EvidencePolicy(shortening={}), False),
        ("fire", support(uuid.UUID(int=7), "bedroom", detected=True),
         EvidencePolicy.model_validate({"shortening": {"fire": {"countdown_share": 0.5, "corroborated": False}}}), False),
    ],
)
async def test_what_shortens_a_countdown(
    db: Database, class_key: str, corroborating: Support, policy: EvidencePolicy, shortened: bool
) -> None:
    household, (kitchen,) = await home(db, ["kitchen"])
    incident = await opened(db, kitchen, class_key)
    recorded = await record(db, incident, household, judged(class_key, corroborating), policy)
    assert recorded is not None and (recorded.shortening is not None) is shortened


async def test_a_cancelled_incident_is_judged_but_never_shortened(db: Database) -> None:
    household, (kitchen, bedroom) = await home(db, ["kitchen", "bedroom"])
    incident = await opened(db, kitchen)
    await act_on_incident(db, incident, IncidentAction.CANCEL, device_id=kitchen, reason="toast")
    recorded = await record(db, incident, household, judged("fire", support(bedroom, "bedroom", detected=True)))
    assert recorded is not None and recorded.shortening is None
    assert recorded.incident.state is IncidentState.CANCELLED and recorded.incident.corroboration is not None


async def test_a_cancelled_peer_incident_is_not_linked_and_far_ones_neither(db: Database) -> None:
    household, (kitchen, bedroom, hall) = await home(db, ["kitchen", "bedroom", "hall"])
    mine = await opened(db, kitchen)
    cancelled = await opened(db, bedroom)
    await act_on_incident(db, cancelled, IncidentAction.CANCEL, device_id=bedroom)
    far = await opened(db, hall)
    async with db.session() as session:
        detected = (await session.get_one(Incident, mine)).detected_at
        await session.execute(update(Incident).where(Incident.id == far).values(detected_at=detected + timedelta(seconds=10)))
    recorded = await record(db, mine, household, judged("fire", quiet=(bedroom, hall)))
    assert recorded is not None and recorded.corroboration.linked_incidents == ()


async def test_nothing_is_written_once_the_household_is_gone(db: Database) -> None:
    _, (kitchen,) = await home(db, ["kitchen"])
    incident = await opened(db, kitchen)
    assert await record(db, incident, uuid.uuid4(), judged("fire")) is None
    async with db.session() as session:
        assert (await session.get_one(Incident, incident)).corroboration is None
