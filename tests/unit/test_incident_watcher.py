"""shared.incident_watcher: pushed events first, database polls as the backstop (SQLite; the
shortened deadline's reason on PostgreSQL too)."""

from __future__ import annotations

import asyncio

from shared.db import Database
from shared.incident_events import IncidentUpdate, LocalIncidentEvents
from shared.incident_state import IncidentAction, IncidentState
from shared.incident_watcher import IncidentWatcher
from shared.incidents import EvidenceFacts, EvidencePolicy, act_on_incident, open_incident, record_evidence
from tests.alerting_support import make_device


async def test_watcher_follows_through_polls_when_no_event_arrives(sqlite_db: Database) -> None:
    device = await make_device(sqlite_db)
    incident = (await open_incident(sqlite_db, device_id=device, class_key="fire", confidence=0.9)).incident
    silent = LocalIncidentEvents()  # nobody publishes on it: only the poll can see the cancel
    watcher = IncidentWatcher(sqlite_db, silent, poll_interval_s=0.05)
    await watcher.start()
    try:
        seen: list[IncidentState] = []

        async def follow() -> None:
            async for update in watcher.watch(incident.id, known=(incident.state, incident.deadline_at.isoformat())):
                seen.append(update.state)

        task = asyncio.create_task(follow())
        await asyncio.sleep(0.1)
        await act_on_incident(sqlite_db, incident.id, IncidentAction.CANCEL)
        await asyncio.wait_for(task, 2)
        assert seen == [IncidentState.CANCELLED]
    finally:
        await watcher.close()


async def test_watcher_takes_pushed_events(sqlite_db: Database) -> None:
    events = LocalIncidentEvents()
    device = await make_device(sqlite_db)
    incident = (await open_incident(sqlite_db, device_id=device, class_key="fire", confidence=0.9)).incident
    watcher = IncidentWatcher(sqlite_db, events, poll_interval_s=30)
    await watcher.start()
    try:
        updates = watcher.watch(incident.id, known=(incident.state, incident.deadline_at.isoformat()))
        task = asyncio.ensure_future(anext(updates))
        await asyncio.sleep(0.05)
        await act_on_incident(sqlite_db, incident.id, IncidentAction.CONFIRM, events=events)
        update = await asyncio.wait_for(task, 1)
        assert update.state is IncidentState.PENDING and update.deadline_at != incident.deadline_at.isoformat()
        await updates.aclose()
    finally:
        await watcher.close()


async def test_watcher_drops_news_of_a_state_already_left(sqlite_db: Database) -> None:
    events = LocalIncidentEvents()
    device = await make_device(sqlite_db)
    incident = (await open_incident(sqlite_db, device_id=device, class_key="fire", confidence=0.9)).incident
    watcher = IncidentWatcher(sqlite_db, events, poll_interval_s=30)
    await watcher.start()
    try:
        updates = watcher.watch(incident.id, known=(IncidentState.DISPATCHING, incident.deadline_at.isoformat()))
        task = asyncio.ensure_future(anext(updates))
        await asyncio.sleep(0.05)
        late = incident.as_update()  # pending: an event that lost the race with the claim
        dispatched = IncidentUpdate(late.incident_id, late.device_id, IncidentState.DISPATCHED, late.deadline_at, late.at)
        await events.publish(late)
        await events.publish(dispatched)
        assert await asyncio.wait_for(task, 1) == dispatched
        await updates.aclose()
    finally:
        await watcher.close()


async def test_a_polled_earlier_deadline_says_why_it_moved(db: Database) -> None:
    # The poll can read the shortened deadline before the event that says why arrives; the
    # client must still be told why its countdown jumped (docs/protocol.md, detail.shortened).
    device = await make_device(db)
    incident = (await open_incident(db, device_id=device, class_key="fire", confidence=0.9)).incident
    watcher = IncidentWatcher(db, LocalIncidentEvents(), poll_interval_s=0.05)  # nobody publishes
    await watcher.start()
    try:
        updates = watcher.watch(incident.id, known=(incident.state, incident.deadline_at.isoformat()))
        task = asyncio.ensure_future(anext(updates))
        await asyncio.sleep(0.1)
        growing = EvidenceFacts("fire", {"fire": 1}, frozenset({"fire"}), heard_s=4.0)
        recorded = await record_evidence(
            db, incident.id, points=[], facts=growing, policy=EvidencePolicy(), countdown_s=60.0
        )
        assert recorded is not None and recorded.shortening is not None
        update = await asyncio.wait_for(task, 2)
        assert update.deadline_at == recorded.shortening.deadline_at.isoformat()
        assert update.detail == {"shortened": recorded.shortening.reason}
        await updates.aclose()
    finally:
        await watcher.close()
