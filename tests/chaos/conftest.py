"""The chaos harness: a migrated PostgreSQL database, a Redis broker database, the agency
server, and alerting workers as real subprocesses, all in the one ``chaos`` fixture
(:class:`tests.chaos_support.Chaos`).

Workers (``python -m services.alerting.worker``) run under a supervisor that restarts
whatever dies, as ``hearo run`` or Kubernetes would. Deadlines are 1-2 s and every timing
setting is scaled down to match (``FAST``), so the whole suite stays short. Each test opens
incidents, runs workers with its fault, and asserts what must still hold::

    async def test_something(chaos: Chaos) -> None:
        ids = await chaos.open_incidents(8, countdown_s=1.0, spread_s=1.0)
        with chaos.workers(count=2, fault_kill_at="after_send") as workers:
            await chaos.settle(workers, timeout_s=30)
        figures = await chaos.exactly_once()
"""

from __future__ import annotations

from pathlib import Path

import pytest

from shared.db import Database
from tests.alerting_support import AgencyServer, agency, alerting_pg, redis_broker_url  # noqa: F401 (fixtures)
from tests.chaos_support import Chaos


@pytest.fixture
def chaos(alerting_pg: Database, agency: AgencyServer, redis_broker_url: str, tmp_path: Path) -> Chaos:
    return Chaos(alerting_pg, agency, redis_broker_url, tmp_path / "var", tmp_path / "logs")
