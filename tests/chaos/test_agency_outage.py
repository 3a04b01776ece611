"""The agency endpoint answers 500, or hangs past the sender's timeout, then recovers.

Retries carry the same ``webhook-id`` and body; a hung request that the agency accepted
after the sender gave up makes the retry a duplicate, which the receiver de-duplicates.
Either way each incident is one report per agency, and none is lost.
"""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from shared.db import Database
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


@pytest.mark.parametrize("mode", ["500", "hang"])
async def test_agency_down_then_recovering(
    mode: str, alerting_pg: Database, agency: AgencyServer, redis_broker_url: str, data_dir: Path, tmp_path: Path
) -> None:
    agency.app.mode = mode
    agency.app.hang_s = 1.5  # longer than send_timeout_s = 1.0
    env = worker_env(alerting_pg.url, data_dir, agency, broker_url=redis_broker_url, **FAST)
    with WorkerSupervisor(env, tmp_path / "logs") as workers:
        await open_incidents(alerting_pg, 8, countdown_s=1.0, spread_s=1.0, contacts_every=4)
        await asyncio.sleep(4.0)  # every deadline passes while the agency misbehaves
        agency.app.mode = "ok"
        assert await settled(alerting_pg, timeout_s=40), workers.logs()
    figures = await assert_exactly_once(alerting_pg, agency)
    print(f"\nagency {mode} for 4 s: misbehaved={agency.app.misbehaved} {figures}")
    assert agency.app.misbehaved >= 8
    if mode == "hang":
        assert figures["duplicate_attempts"] >= 1  # the late-accepted requests, retried and de-duplicated
