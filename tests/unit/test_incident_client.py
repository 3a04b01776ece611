"""The `hearo incident` client against the real incident routes (Starlette's TestClient as its
HTTP client, a SQLite database)."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from fastapi import FastAPI
from starlette.testclient import TestClient

from hearo.incident_client import IncidentApiError, IncidentClient, describe, parse_time
from services.gateway import incidents_api
from services.gateway.auth import hash_token
from shared.clips import LocalClipStore
from shared.db import Database, Device, upgrade_database
from shared.incident_events import LocalIncidentEvents
from shared.incidents import open_incident

TOKEN, OTHER = "device-token", "other-device-token"


@pytest.fixture
def gateway(tmp_path: Path) -> Iterator[tuple[TestClient, str]]:
    """The incident routes, with one pending ``fire`` incident of the ``TOKEN`` device."""
    url = f"sqlite+aiosqlite:///{tmp_path / 'hearo.db'}"
    upgrade_database(url)
    db = Database(url)
    opened: list[str] = []

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        async with db.session() as session:
            devices = [
                Device(token_hash=hash_token(token), owner_name="Choi", birth_year=1939, consent_recording=True,
                       consent_location=False, consent_share_profile=False)
                for token in (TOKEN, OTHER)
            ]  # fmt: skip
            session.add_all(devices)
        incident = await open_incident(db, device_id=devices[0].id, class_key="fire", confidence=0.8)
        opened.append(str(incident.incident.id))
        app.state.db, app.state.incident_events = db, LocalIncidentEvents()
        app.state.clip_store = LocalClipStore(tmp_path / "clips", "secret", "http://testserver")
        yield
        await db.dispose()

    app = FastAPI(lifespan=lifespan)
    app.include_router(incidents_api.router)
    with TestClient(app) as client:
        yield client, opened[0]


def test_list_get_cancel_and_confirm(gateway: tuple[TestClient, str]) -> None:
    http, incident_id = gateway
    incidents = IncidentClient("http://testserver", TOKEN, client=http)
    listed = incidents.list()
    assert [i["incident_id"] for i in listed] == [incident_id]
    assert describe(listed[0]).startswith("Fire or smoke alarm (화재, 화재경보): pending, reported in 6")
    assert incidents.list(class_key="crime") == []
    assert incidents.list(since=datetime.now(UTC) + timedelta(hours=1)) == []
    assert incidents.get(incident_id)["state"] == "pending"

    assert incidents.cancel(incident_id, reason="toast")["outcome"] == "cancelled"
    again = incidents.cancel(incident_id)
    assert again["outcome"] == "already_cancelled" and again["incident"]["cancel_reason"] == "toast"
    with pytest.raises(IncidentApiError) as refused:
        incidents.confirm(incident_id)
    assert (refused.value.status, refused.value.code) == (409, "cancelled")


def test_another_devices_incident_is_not_found(gateway: tuple[TestClient, str]) -> None:
    http, incident_id = gateway
    with pytest.raises(IncidentApiError) as refused:
        IncidentClient("http://testserver", OTHER, client=http).cancel(incident_id)
    assert (refused.value.status, refused.value.code) == (404, "unknown_incident")
    with pytest.raises(IncidentApiError) as unknown:
        IncidentClient("http://testserver", TOKEN, client=http).get(str(uuid.uuid4()))
    assert unknown.value.status == 404


def test_bad_token_and_malformed_id(gateway: tuple[TestClient, str]) -> None:
    http, incident_id = gateway
    with pytest.raises(IncidentApiError) as refused:
        IncidentClient("http://testserver", "nope", client=http).cancel(incident_id)
    assert (refused.value.status, refused.value.code) == (401, "invalid_token")
    with pytest.raises(ValueError, match="not an incident id"):
        IncidentClient("http://testserver", TOKEN, client=http).cancel("12345")


def test_times_without_a_zone_are_local() -> None:
    assert parse_time("2026-11-22T09:00:00+09:00").utcoffset() == timedelta(hours=9)
    local = parse_time("2026-11-22T09:00:00")
    assert local.tzinfo is not None and local.replace(tzinfo=None) == datetime(2026, 11, 22, 9)
