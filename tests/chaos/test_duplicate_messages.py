"""Every Celery message delivered twice, to two workers at once: still one report each.

The sweeper publishes each send task twice (``HEARO_ALERTING_FAULT_DUPLICATE_MESSAGES``),
as a broker redelivery would; the second copy finds the row claimed or sent and does nothing.
"""

from __future__ import annotations

from pathlib import Path

import pytest

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


async def test_every_message_twice(
    alerting_pg: Database, agency: AgencyServer, redis_broker_url: str, data_dir: Path, tmp_path: Path
) -> None:
    env = worker_env(alerting_pg.url, data_dir, agency, broker_url=redis_broker_url, fault_duplicate_messages="1", **FAST)
    ids = await open_incidents(alerting_pg, 16, countdown_s=1.0, spread_s=1.0, contacts_every=2)
    for incident_id in ids[::4]:
        await act_on_incident(alerting_pg, incident_id, IncidentAction.CANCEL)
    with WorkerSupervisor(env, tmp_path / "logs", count=2) as workers:
        assert await settled(alerting_pg, timeout_s=30), workers.logs()
    figures = await assert_exactly_once(alerting_pg, agency)
    ignored = workers.logs().count("'not_claimable'")
    print(f"\nduplicate messages: {ignored} copies found nothing to do; {figures}")
    assert ignored >= 1
