"""The incident state machine on the real PostgreSQL server, under real concurrency."""

from __future__ import annotations

import asyncio
from collections import Counter
from datetime import timedelta

import pytest
from sqlalchemy import func, select

from shared.db import Database
from shared.db.models import DispatchOutbox, Incident
from shared.incident_state import ActionOutcome, IncidentAction, IncidentState
from shared.incidents import act_on_incident, open_incident
from tests.alerting_support import (  # noqa: F401 (fixture)
    alerting_pg,
    assert_states_enforced,
    make_device,
    open_incidents,
    sweeper,
)

pytestmark = pytest.mark.postgres


async def test_deadline_is_exact_on_the_database_clock(alerting_pg: Database) -> None:
    device = await make_device(alerting_pg)
    incident = (await open_incident(alerting_pg, device_id=device, class_key="gas", confidence=0.9, countdown_s=60)).incident
    assert incident.deadline_at - incident.detected_at == timedelta(seconds=60)
    assert 59.0 < incident.seconds_left <= 60.0


async def test_state_columns_take_the_enums_states_and_nothing_else(alerting_pg: Database) -> None:
    await assert_states_enforced(alerting_pg)


async def test_concurrent_sweepers_claim_each_incident_once(alerting_pg: Database) -> None:
    ids = await open_incidents(alerting_pg, 120, countdown_s=0)
    published: list[tuple[str, str]] = []
    sweepers = [sweeper(alerting_pg, published) for _ in range(4)]
    for s in sweepers:
        s.policy = type(s.policy)(0.1, 1, 7, 2, 1)  # small batches: many interleaved transactions
    claimed = await asyncio.gather(*(s.sweep_once() for s in sweepers))
    assert sum(stats.claimed for stats in claimed) == len(ids)
    assert sum(1 for stats in claimed if stats.claimed) >= 2  # they really shared the work
    async with alerting_pg.session() as session:
        per_incident = Counter((await session.scalars(select(DispatchOutbox.incident_id))).all())
        states = set((await session.scalars(select(Incident.state))).all())
    assert len(per_incident) == len(ids) and set(per_incident.values()) == {1}
    assert states == {"dispatching"}


async def test_cancel_racing_the_claim_has_one_winner(alerting_pg: Database) -> None:
    ids = await open_incidents(alerting_pg, 60, countdown_s=0.3, spread_s=0.3)
    outcomes: Counter[str] = Counter()
    claimer = sweeper(alerting_pg)

    async def keep_claiming() -> None:
        for _ in range(40):
            await claimer.claim_due_incidents()
            await asyncio.sleep(0.01)

    async def cancel(incident_id):  # type: ignore[no-untyped-def]
        await asyncio.sleep(0.3 + (hash(incident_id) % 60) / 200)
        outcomes[(await act_on_incident(alerting_pg, incident_id, IncidentAction.CANCEL)).outcome.value] += 1

    await asyncio.gather(keep_claiming(), *(cancel(i) for i in ids))
    async with alerting_pg.session() as session:
        rows = dict((await session.execute(
            select(Incident.state, func.count()).group_by(Incident.state)
        )).all())
        with_outbox = await session.scalar(select(func.count(func.distinct(DispatchOutbox.incident_id))))
    assert outcomes[ActionOutcome.CANCELLED.value] == rows.get(IncidentState.CANCELLED, 0)
    assert outcomes[ActionOutcome.ALREADY_REPORTED.value] == rows.get(IncidentState.DISPATCHING, 0) == with_outbox
    assert sum(outcomes.values()) == len(ids)
