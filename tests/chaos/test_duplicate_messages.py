"""Every Celery message delivered twice, to two workers at once: still one report each.

The sweeper publishes each send task twice (``HEARO_ALERTING_FAULT_DUPLICATE_MESSAGES``),
as a broker redelivery would; the second copy finds the row claimed or sent and does nothing.
"""

from __future__ import annotations

import pytest

from shared.incident_state import IncidentAction
from shared.incidents import act_on_incident
from tests.chaos_support import Chaos

pytestmark = [pytest.mark.slow, pytest.mark.postgres, pytest.mark.redis]


async def test_every_message_twice(chaos: Chaos) -> None:
    ids = await chaos.open_incidents(16, countdown_s=1.0, spread_s=1.0, contacts_every=2)
    for incident_id in ids[::4]:
        await act_on_incident(chaos.db, incident_id, IncidentAction.CANCEL)
    with chaos.workers(count=2, fault_duplicate_messages="1") as workers:
        await chaos.settle(workers, timeout_s=30)
    figures = await chaos.exactly_once()
    ignored = workers.logs().count("'not_claimable'")
    print(f"\nduplicate messages: {ignored} copies found nothing to do; {figures}")
    assert ignored >= 1
