"""Cancels fired right at the deadline, against a live worker: one winner, and the truth.

A cancel answered ``cancelled`` must mean nothing ever reaches an agency; a cancel
answered ``already_reported`` must mean the report arrives, exactly once.
"""

from __future__ import annotations

import asyncio
import random
from pathlib import Path

import pytest

from shared.db import Database
from shared.incident_state import ActionOutcome, IncidentAction
from shared.incidents import act_on_incident, get_incident
from tests.alerting_support import (
    FAST,
    AgencyServer,
    assert_exactly_once,
    open_incidents,
    settled,
    worker_env,
    WorkerSupervisor,
)

pytestmark = [pytest.mark.slow, pytest.mark.postgres, pytest.mark.redis]


async def test_cancel_racing_the_deadline(
    alerting_pg: Database, agency: AgencyServer, redis_broker_url: str, data_dir: Path, tmp_path: Path
) -> None:
    env = worker_env(alerting_pg.url, data_dir, agency, broker_url=redis_broker_url, **FAST)
    rng = random.Random(7)
    with WorkerSupervisor(env, tmp_path / "logs") as workers:
        await asyncio.sleep(1.5)  # worker up: its sweeper fires right at each deadline
        ids = await open_incidents(alerting_pg, 24, countdown_s=1.0, spread_s=2.0)

        async def cancel_at_deadline(incident_id):  # type: ignore[no-untyped-def]
            view = await get_incident(alerting_pg, incident_id)
            assert view is not None
            await asyncio.sleep(max(0.0, view.seconds_left + rng.uniform(-0.1, 0.4)))
            return incident_id, await act_on_incident(alerting_pg, incident_id, IncidentAction.CANCEL, reason="race")

        results = await asyncio.gather(*(cancel_at_deadline(i) for i in ids))
        assert await settled(alerting_pg, timeout_s=30), workers.logs()
    figures = await assert_exactly_once(alerting_pg, agency)
    reported = {(d["payload"]["data"]["incident_id"]) for d in agency.reports()}
    outcomes = {o.outcome for _, o in results}
    for incident_id, result in results:
        if result.outcome is ActionOutcome.CANCELLED:
            assert str(incident_id) not in reported
        else:
            assert result.outcome is ActionOutcome.ALREADY_REPORTED and str(incident_id) in reported
    won = sum(1 for _, r in results if r.outcome is ActionOutcome.CANCELLED)
    print(f"\ncancel race: {won} cancels won, {len(results) - won} lost; {figures}")
    assert outcomes == {ActionOutcome.CANCELLED, ActionOutcome.ALREADY_REPORTED}
