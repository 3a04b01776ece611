"""kill -9 the worker at each step of a delivery, over many incidents: nothing lost, nothing twice.

The worker SIGKILLs itself (``HEARO_ALERTING_FAULT_KILL_AT``) with some probability each
time it reaches the step, and the supervisor restarts it. Deadlines are spread so that
kills land while other incidents are pending, claimed and in flight.
"""

from __future__ import annotations

import pytest

from services.alerting.faults import STEPS
from shared.incident_state import IncidentAction
from shared.incidents import act_on_incident
from tests.chaos_support import Chaos

pytestmark = [pytest.mark.slow, pytest.mark.postgres, pytest.mark.redis]


@pytest.mark.parametrize("step", STEPS)
async def test_kill_at_step(step: str, chaos: Chaos) -> None:
    ids = await chaos.open_incidents(12, countdown_s=1.5, spread_s=2.0, contacts_every=4)
    for incident_id in ids[1::5]:
        await act_on_incident(chaos.db, incident_id, IncidentAction.CANCEL, reason="chaos")
    with chaos.workers(count=2, fault_kill_at=step, fault_kill_probability="0.2", fault_kill_first="1") as workers:
        await chaos.settle(workers, timeout_s=60)
    figures = await chaos.exactly_once()
    print(f"\n{step}: kills={workers.kills} {figures}")
    assert workers.kills >= 1, f"the fault at {step} never fired:\n{workers.logs()}"
