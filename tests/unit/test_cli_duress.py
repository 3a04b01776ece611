"""`hearo device duress-code` and `hearo incident cancel --code` against the real routes
(Starlette's TestClient as the HTTP client, a SQLite database): the code is asked for at a
hidden prompt, stored as a hash, never printed."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, cast

import httpx
import pytest
from fastapi import FastAPI
from sqlalchemy import select
from starlette.testclient import TestClient
from typer.testing import CliRunner

from hearo import cli_duress
from hearo.cli import app as hearo_app
from hearo.cli_duress import set_duress_code
from hearo.incident_client import EXIT_AUTH, EXIT_INPUT, EXIT_OK, IncidentClient
from services.gateway import devices, incidents_api
from services.gateway.auth import hash_token
from services.gateway.rate_limit import RequestLimits
from shared.clips import LocalClipStore
from shared.db import Database, Device, upgrade_database
from shared.db.models import Incident
from shared.incident_events import LocalIncidentEvents
from shared.incidents import open_incident
from shared.pubsub import LocalChannel

TOKEN = "duress-cli-token"


@dataclass
class Gateway:
    http: TestClient
    db: Database
    device_id: uuid.UUID
    incident_id: uuid.UUID

    @property
    def client(self) -> httpx.Client:
        return cast(httpx.Client, self.http)  # Starlette's TestClient is an httpx.Client

    async def stored(self) -> tuple[str | None, Incident]:
        async with self.db.session() as session:
            code_hash = await session.scalar(select(Device.duress_code_hash).where(Device.id == self.device_id))
            return code_hash, await session.get_one(Incident, self.incident_id)


@pytest.fixture
def gateway(tmp_path: Path) -> Iterator[Gateway]:
    url = f"sqlite+aiosqlite:///{tmp_path / 'hearo.db'}"
    upgrade_database(url)
    db = Database(url)
    made: list[uuid.UUID] = []

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        async with db.session() as session:
            device = Device(token_hash=hash_token(TOKEN), owner_name="Seo", birth_year=1952, consent_recording=True,
                            consent_location=False, consent_share_profile=False)  # fmt: skip
            session.add(device)
        made.extend([device.id, (await open_incident(db, device_id=device.id, class_key="crime", confidence=0.9)).incident.id])
        app.state.db, app.state.incident_events = db, LocalIncidentEvents()
        app.state.clip_store = LocalClipStore(tmp_path / "clips", "secret", "http://testserver")
        app.state.request_limits, app.state.revocations = RequestLimits(None, None, None), LocalChannel()
        app.state.settings_changes = LocalChannel()
        yield
        await db.dispose()

    app = FastAPI(lifespan=lifespan)
    app.include_router(devices.router)
    app.include_router(incidents_api.router)
    with TestClient(app) as client:
        yield Gateway(client, db, made[0], made[1])


def test_the_code_is_set_refused_and_removed_without_ever_being_printed(
    gateway: Gateway, capsys: pytest.CaptureFixture[str]
) -> None:
    assert set_duress_code("http://testserver", TOKEN, "Quiet Harbour", client=gateway.client) == EXIT_OK
    code_hash, _ = gateway.http.portal.call(gateway.stored)  # type: ignore[union-attr]
    assert code_hash is not None and code_hash.startswith("scrypt$")
    assert set_duress_code("http://testserver", TOKEN, "harbour", client=gateway.client) == EXIT_INPUT
    assert set_duress_code("http://testserver", "not-the-token", "Quiet Harbour", client=gateway.client) == EXIT_AUTH
    printed = capsys.readouterr()
    assert "saved" in printed.out and "phrase of at least two words" in printed.err
    assert "harbour" not in (printed.out + printed.err).lower()
    assert set_duress_code("http://testserver", TOKEN, None, client=gateway.client) == EXIT_OK
    assert gateway.http.portal.call(gateway.stored)[0] is None  # type: ignore[union-attr]


def test_a_cancel_with_the_code_is_answered_as_any_cancel_and_goes_to_the_police(gateway: Gateway) -> None:
    assert set_duress_code("http://testserver", TOKEN, "7351", client=gateway.client) == EXIT_OK
    answer = IncidentClient("http://testserver", TOKEN, client=gateway.client).cancel(str(gateway.incident_id), code="7351")
    assert answer["outcome"] == "cancelled" and answer["incident"]["state"] == "cancelled"
    _, incident = gateway.http.portal.call(gateway.stored)  # type: ignore[union-attr]
    assert incident.duress_at is not None and incident.trigger == "duress"


def test_the_commands_ask_for_the_code_at_a_hidden_prompt(monkeypatch: pytest.MonkeyPatch) -> None:
    sent: list[str | None] = []

    def set_code(api: str, token: str, code: str | None) -> int:
        sent.append(code)
        return EXIT_OK

    monkeypatch.setattr(cli_duress, "set_duress_code", set_code)
    runner = CliRunner()
    typed = runner.invoke(hearo_app, ["device", "duress-code", "--token", TOKEN], input="red kettle\nred kettle\n")
    assert typed.exit_code == 0 and sent == ["red kettle"] and "red kettle" not in typed.output
    removed = runner.invoke(hearo_app, ["device", "duress-code", "--remove", "--token", TOKEN])
    assert removed.exit_code == 0 and sent == ["red kettle", None]

    cancelled: list[tuple[Any, ...]] = []

    def cancel(*args: Any) -> int:
        cancelled.append(args)
        return EXIT_OK

    monkeypatch.setattr("hearo.incident_client.cancel_command", cancel)
    typed = runner.invoke(hearo_app, ["incident", "cancel", "some-id", "--code", "--token", TOKEN], input="7351\n")
    assert typed.exit_code == 0 and cancelled[0][-1] == "7351" and "7351" not in typed.output
