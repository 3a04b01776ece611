"""Incident updates over real Redis pub/sub, and a watcher that survives their loss."""

from __future__ import annotations

import asyncio

import pytest

from shared.db import Database
from shared.incident_events import IncidentUpdate, RedisIncidentEvents
from shared.incident_state import IncidentAction, IncidentState
from shared.incident_watcher import IncidentWatcher
from shared.incidents import act_on_incident, open_incident
from tests.alerting_support import alerting_pg, make_device, redis_broker_url  # noqa: F401 (fixtures)

pytestmark = [pytest.mark.postgres, pytest.mark.redis]


async def test_an_update_published_on_one_gateway_reaches_another(redis_broker_url: str) -> None:
    publisher, subscriber = RedisIncidentEvents(redis_broker_url), RedisIncidentEvents(redis_broker_url)
    update = IncidentUpdate("i-1", "d-1", IncidentState.CANCELLED, "2026-11-22T00:01:00+00:00",
                            "2026-11-22T00:00:30+00:00", {"reason": "화재경보 오작동"})
    try:
        async with subscriber.subscribe() as updates:
            await publisher.publish(update)
            received = await asyncio.wait_for(anext(updates), 3)
        assert received == update
    finally:
        await publisher.close()
        await subscriber.close()


async def test_publishing_without_redis_does_not_raise() -> None:
    events = RedisIncidentEvents("redis://127.0.0.1:1/0")
    await events.publish(IncidentUpdate("i", "d", IncidentState.PENDING, "t", "t"))
    await events.close()


async def test_watcher_on_redis_sees_confirm_then_cancel_outcome(alerting_pg: Database, redis_broker_url: str) -> None:
    events = RedisIncidentEvents(redis_broker_url)
    watcher = IncidentWatcher(alerting_pg, events, poll_interval_s=5)
    await watcher.start()
    try:
        device = await make_device(alerting_pg)
        incident = (await open_incident(alerting_pg, device_id=device, class_key="fire", confidence=0.9)).incident
        seen: list[str] = []

        async def follow() -> None:
            async for update in watcher.watch(incident.id, known=(IncidentState.PENDING, incident.deadline_at.isoformat())):
                seen.append(update.state)

        task = asyncio.create_task(follow())
        await asyncio.sleep(0.1)
        other_gateway = RedisIncidentEvents(redis_broker_url)
        await act_on_incident(alerting_pg, incident.id, IncidentAction.CONFIRM, events=other_gateway)
        await asyncio.sleep(0.2)
        await act_on_incident(alerting_pg, incident.id, IncidentAction.CANCEL, events=other_gateway)  # too late? no: still pending
        await asyncio.wait_for(task, 3)  # well before the 5 s poll: the push carried it
        await other_gateway.close()
        assert seen == ["pending", "cancelled"]
    finally:
        await watcher.close()
        await events.close()
