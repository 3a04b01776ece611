"""The chaos tests' world in one object (:class:`Chaos`); the fixture is ``chaos`` in
``tests/chaos/conftest.py``."""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from shared.db import Database
from tests.alerting_support import (
    FAST,
    AgencyServer,
    WorkerSupervisor,
    assert_exactly_once,
    open_incidents,
    settled,
    worker_env,
)


@dataclass
class Chaos:
    """One chaos test's world: the database, the agency, the broker, and where workers keep
    their data and logs."""

    db: Database
    agency: AgencyServer
    broker_url: str
    data_dir: Path
    log_dir: Path

    def workers(self, count: int = 1, *, broker_url: str | None = None, **settings: str) -> WorkerSupervisor:
        """``count`` supervised workers with the ``FAST`` timings, ``settings`` (alerting
        settings, e.g. ``fault_kill_at``) over them; use it as a context manager."""
        env = worker_env(
            self.db.url, self.data_dir, self.agency, broker_url=broker_url or self.broker_url, **{**FAST, **settings}
        )
        return WorkerSupervisor(env, self.log_dir, count=count)

    async def open_incidents(self, count: int, **options: Any) -> list[uuid.UUID]:
        """``count`` pending incidents (``tests.alerting_support.open_incidents``)."""
        return await open_incidents(self.db, count, **options)

    async def settle(self, workers: WorkerSupervisor, timeout_s: float) -> None:
        """Every incident and delivery final within ``timeout_s``, else fail with the workers' logs."""
        assert await settled(self.db, timeout_s=timeout_s), workers.logs()

    async def exactly_once(self) -> dict[str, int]:
        """The suite's invariant, counted at the agency (``assert_exactly_once``); its figures."""
        return await assert_exactly_once(self.db, self.agency)
