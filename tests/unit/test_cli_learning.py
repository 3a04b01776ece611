"""`hearo incident cancel --kind`, `hearo device thresholds [--undo ID]` and `hearo device
summary` against the real routes (Starlette's TestClient as the HTTP client, SQLite)."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Callable, Iterator
from contextlib import asynccontextmanager
from pathlib import Path

import pytest
from fastapi import FastAPI
from starlette.testclient import TestClient
from typer.testing import CliRunner

from hearo import incident_client
from hearo.cli import app as cli
from hearo.incident_client import IncidentClient
from services.gateway import incidents_api, thresholds_api
from services.gateway.auth import hash_token
from services.gateway.device_thresholds import DeviceThresholds
from shared.db import Database, Device, upgrade_database
from shared.detector import DetectorConfig
from shared.incident_events import LocalIncidentEvents
from shared.incidents import open_incident
from shared.incidents.threshold_learning import LearningPolicy
from shared.pubsub import LocalChannel

TOKEN = "device-token"
BEEP = [1.0, 0.5, 0.0, -0.5, -1.0, 0.0]


class KeptOpen(IncidentClient):
    """The CLI's client on the test's HTTP client, which each command must not close."""

    def close(self) -> None:
        pass


@pytest.fixture
def detect(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Callable[[], str]]:
    """Opens a pending fire incident of the ``TOKEN`` device (the same sound each time) and
    returns its id; the commands reach the routes through the test client."""
    url = f"sqlite+aiosqlite:///{tmp_path / 'hearo.db'}"
    upgrade_database(url)
    db = Database(url)
    devices: list[Device] = []

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        async with db.session() as session:
            device = Device(token_hash=hash_token(TOKEN), owner_name="Choi", birth_year=1939, consent_recording=True,
                            consent_location=False, consent_share_profile=False)  # fmt: skip
            session.add(device)
        devices.append(device)
        app.state.db, app.state.incident_events = db, LocalIncidentEvents()
        app.state.device_thresholds = DeviceThresholds(
            db, LearningPolicy(), lambda: DetectorConfig.build(0.5).thresholds, LocalChannel()
        )
        yield
        await db.dispose()

    app = FastAPI(lifespan=lifespan)
    app.include_router(incidents_api.router)
    app.include_router(thresholds_api.router)
    async def open_one() -> str:
        opened = await open_incident(db, device_id=devices[0].id, class_key="fire", confidence=0.6, sound_signature=BEEP)
        return str(opened.incident.id)

    with TestClient(app) as http:
        monkeypatch.setattr(incident_client, "IncidentClient", lambda api, token: KeptOpen(api, token, client=http))  # type: ignore[arg-type]
        yield lambda: http.portal.call(open_one)  # type: ignore[union-attr]


def run(*args: str) -> tuple[int, str]:
    result = CliRunner().invoke(cli, [*args, "--api", "http://testserver", "--token", TOKEN])
    return result.exit_code, result.output


def test_cancels_with_a_kind_teach_and_the_owner_sees_and_undoes_it(detect: Callable[[], str]) -> None:
    for _ in range(5):  # a device has one open incident at a time: each is cancelled before the next
        code, out = run("incident", "cancel", detect(), "--kind", "false_alarm", "--reason", "microwave")
        assert code == 0 and out.startswith("cancelled"), out
    code, out = run("device", "thresholds")
    assert code == 0 and "0.550" in out and "#1 0.500 → 0.550" in out, out

    code, out = run("device", "thresholds", "--json")
    fire = next(c for c in json.loads(out)["classes"] if c["class"] == "fire")
    assert (fire["current"], fire["adjustments"][0]["evidence"]["rule"]["min_cancels"]) == (0.55, 5)

    code, out = run("device", "summary")
    assert code == 0 and "5 similar false alarms" in out and "false_alarm 5" in out, out

    code, out = run("device", "thresholds", "--undo", "1")
    assert code == 0 and "fire threshold is 0.500 again" in out, out
    code, out = run("device", "thresholds", "--undo", "1")
    assert code == 0 and "already undone" in out
    code, out = run("device", "thresholds", "--undo", "99")
    assert code == 3 and "unknown_adjustment" in out


def test_a_kind_outside_the_three_is_refused_before_any_request(detect: Callable[[], str]) -> None:
    code, out = run("incident", "cancel", detect(), "--kind", "bored")
    assert code == 2 and "bored" in out
