"""Cancels fired right at the deadline, against a live worker: one winner, and the truth.

A cancel answered ``cancelled`` must mean nothing ever reaches an agency; a cancel
answered ``already_reported`` must mean the report arrives, exactly once.
"""

from __future__ import annotations

import asyncio
import random
import uuid

import pytest

from shared.incident_state import ActionOutcome, IncidentAction
from shared.incidents import ActionResult, act_on_incident, get_incident
from tests.chaos_support import Chaos

pytestmark = [pytest.mark.slow, pytest.mark.postgres, pytest.mark.redis]


async def test_cancel_racing_the_deadline(chaos: Chaos) -> None:
    rng = random.Random(7)
    with chaos.workers() as workers:
        await asyncio.sleep(1.5)  # worker up: its sweeper fires right at each deadline
        ids = await chaos.open_incidents(24, countdown_s=1.0, spread_s=2.0)

        async def cancel_at_deadline(incident_id: uuid.UUID) -> tuple[uuid.UUID, ActionResult]:
            view = await get_incident(chaos.db, incident_id)
            assert view is not None
            await asyncio.sleep(max(0.0, view.seconds_left + rng.uniform(-0.1, 0.4)))
            return incident_id, await act_on_incident(chaos.db, incident_id, IncidentAction.CANCEL, reason="race")

        results = await asyncio.gather(*(cancel_at_deadline(i) for i in ids))
        await chaos.settle(workers, timeout_s=30)
    figures = await chaos.exactly_once()
    reported = {(d["payload"]["data"]["incident_id"]) for d in chaos.agency.reports()}
    outcomes = {o.outcome for _, o in results}
    for incident_id, result in results:
        if result.outcome is ActionOutcome.CANCELLED:
            assert str(incident_id) not in reported
        else:
            assert result.outcome is ActionOutcome.ALREADY_REPORTED and str(incident_id) in reported
    won = sum(1 for _, r in results if r.outcome is ActionOutcome.CANCELLED)
    print(f"\ncancel race: {won} cancels won, {len(results) - won} lost; {figures}")
    assert outcomes == {ActionOutcome.CANCELLED, ActionOutcome.ALREADY_REPORTED}
