"""Chaos fixtures: a migrated PostgreSQL database, a Redis broker database, the agency server.

Workers are real subprocesses (``python -m services.alerting.worker``) under a supervisor
that restarts whatever dies, as ``hearo run`` or Kubernetes would. Deadlines are 1-2 s and
every timing setting is scaled down to match (``FAST``), so the whole suite stays short.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.alerting_support import agency, alerting_pg, redis_broker_url  # noqa: F401 (fixtures)


@pytest.fixture
def data_dir(tmp_path: Path) -> Path:
    return tmp_path / "var"
