"""kill -9 the worker at each step of a delivery, over many incidents: nothing lost, nothing twice.

The worker SIGKILLs itself (``HEARO_ALERTING_FAULT_KILL_AT``) with some probability each
time it reaches the step, and the supervisor restarts it. Deadlines are spread so that
kills land while other incidents are pending, claimed and in flight.
"""

from __future__ import annotations

import pytest

from services.alerting.faults import STEPS
from shared.db import Database
from shared.incident_state import IncidentAction
from shared.incidents import act_on_incident
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


@pytest.mark.parametrize("step", STEPS)
async def test_kill_at_step(step: str, alerting_pg: Database, agency: AgencyServer, redis_broker_url: str, data_dir, tmp_path) -> None:  # type: ignore[no-untyped-def]
    env = worker_env(
        alerting_pg.url, data_dir, agency, broker_url=redis_broker_url,
        fault_kill_at=step, fault_kill_probability="0.2", fault_kill_first="1", **FAST,
    )
    ids = await open_incidents(alerting_pg, 12, countdown_s=1.5, spread_s=2.0, contacts_every=4)
    for incident_id in ids[1::5]:
        await act_on_incident(alerting_pg, incident_id, IncidentAction.CANCEL, reason="chaos")
    with WorkerSupervisor(env, tmp_path / "logs", count=2) as workers:
        ok = await settled(alerting_pg, timeout_s=60)
        assert ok, workers.logs()
    figures = await assert_exactly_once(alerting_pg, agency)
    print(f"\n{step}: kills={workers.kills} {figures}")
    assert workers.kills >= 1, f"the fault at {step} never fired:\n{workers.logs()}"
