"""The duress code over REST: set with ``PATCH /v1/devices/me`` and never shown again (not
even whether one is set), refused without being echoed, and a cancel carrying it answered,
listed and detailed exactly as an ordinary cancel, its clip "deleted" for the device alone."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass

import httpx
import numpy as np
import pytest
from fastapi import Depends
from sqlalchemy import select

from services.gateway import incidents_api, privacy_api
from services.gateway.app import create_app
from services.gateway.rate_limit import limit_rest
from services.gateway.settings import GatewaySettings
from shared.db import Database, Device
from shared.incidents import archive_clip, open_incident
from tests.devices_support import devices_app, http_client
from tests.duress_support import masked

PROFILE = {"name": "Kim Young-ja", "birth_year": 1950}


@dataclass
class Owner:
    http: httpx.AsyncClient
    auth: dict[str, str]
    device_id: uuid.UUID


@pytest.fixture
async def http(sqlite_db: Database) -> AsyncIterator[httpx.AsyncClient]:
    app = devices_app(sqlite_db)
    app.include_router(incidents_api.router, dependencies=[Depends(limit_rest)])
    app.include_router(privacy_api.router, dependencies=[Depends(limit_rest)])
    async with http_client(app) as client:
        yield client


async def owner(http: httpx.AsyncClient, duress_code: str | None = None) -> Owner:
    body = {"profile": PROFILE, "consent_recording": True, "consent_location": False, "consent_share_profile": True}
    registered = await http.post("/v1/devices", json=body)
    assert registered.status_code == 201, registered.text
    auth = {"Authorization": f"Bearer {registered.json()['token']}"}
    if duress_code is not None:
        assert (await http.patch("/v1/devices/me", json={"duress_code": duress_code}, headers=auth)).status_code == 200
    return Owner(http, auth, uuid.UUID(registered.json()["device_id"]))


async def stored_hash(db: Database, device_id: uuid.UUID) -> str | None:
    async with db.session() as session:
        return await session.scalar(select(Device.duress_code_hash).where(Device.id == device_id))


async def test_the_code_is_stored_hashed_never_shown_and_cleared_with_null(http: httpx.AsyncClient, sqlite_db: Database) -> None:
    plain, coded = await owner(http), await owner(http)
    answer = await http.patch("/v1/devices/me", json={"duress_code": "Red Kettle"}, headers=coded.auth)
    assert answer.status_code == 200
    stored = await stored_hash(sqlite_db, coded.device_id)
    assert stored is not None and stored.startswith("scrypt$") and "kettle" not in stored.lower()
    # Nothing the owner can read says whether a code is set.
    for path in ("/v1/devices/me", "/v1/devices/me/export"):
        with_code = (await http.get(path, headers=coded.auth)).json()
        without = (await http.get(path, headers=plain.auth)).json()
        assert "kettle" not in str(with_code).lower() and "duress" not in str(with_code)
        assert masked(with_code).keys() == masked(without).keys()
    assert answer.json().keys() == (await http.get("/v1/devices/me", headers=plain.auth)).json().keys()
    # Other fields leave it alone; null removes it.
    assert (await http.patch("/v1/devices/me", json={"address": "Seoul"}, headers=coded.auth)).status_code == 200
    assert await stored_hash(sqlite_db, coded.device_id) == stored
    assert (await http.patch("/v1/devices/me", json={"duress_code": None}, headers=coded.auth)).status_code == 200
    assert await stored_hash(sqlite_db, coded.device_id) is None


@pytest.mark.parametrize("code", ["123", "kettle", "12345678901234", "nul\u0000 code", 1234])
async def test_a_refused_code_is_never_echoed(http: httpx.AsyncClient, code: object) -> None:
    coded = await owner(http)
    refused = await http.patch("/v1/devices/me", json={"duress_code": code}, headers=coded.auth)
    assert refused.status_code == 422
    [error] = refused.json()["detail"]
    assert error["loc"] == ["body", "duress_code"] and "input" not in error
    assert str(code) not in refused.text


async def test_a_cancel_with_the_duress_code_is_answered_listed_and_detailed_as_an_ordinary_one(
    http: httpx.AsyncClient, sqlite_db: Database
) -> None:
    plain, coded = await owner(http, duress_code="2580"), await owner(http, duress_code="2580")
    views = []
    for person, code in ((plain, None), (coded, "２５８０")):
        incident = (await open_incident(sqlite_db, device_id=person.device_id, class_key="crime", confidence=0.9)).incident
        await archive_clip(sqlite_db, http._transport.app.state.clip_store, incident.id, np.zeros(1600, np.float32), 16000)  # type: ignore[attr-defined]
        url = f"/v1/incidents/{incident.id}"
        answer = await http.post(f"{url}/cancel", json={"reason": "false alarm", "code": code}, headers=person.auth)
        assert answer.status_code == 200 and answer.json()["outcome"] == "cancelled"
        detail = (await http.get(url, headers=person.auth)).json()
        listed = (await http.get("/v1/incidents", headers=person.auth)).json()
        again = await http.post(f"{url}/cancel", json={"code": code}, headers=person.auth)
        confirm = await http.post(f"{url}/confirm", headers=person.auth)
        # The owner deletes the clip of what the device shows as a false alarm.
        deleted = await http.delete(f"{url}/clip", headers=person.auth)
        after = (await http.get(url, headers=person.auth)).json()
        deleted_again = await http.delete(f"{url}/clip", headers=person.auth)
        views.append([answer.json(), detail, listed, again.json(), confirm.status_code, confirm.json(), deleted.json(),
                      after, deleted_again.status_code, deleted_again.json()])  # fmt: skip
    assert masked(views[1]) == masked(views[0])
    assert views[1][1]["state"] == "cancelled" and views[1][1]["deliveries"] == [] and views[1][7]["clip"] is None
    # ... while the incident goes on to be reported, its clip kept for the police.
    incident_id = uuid.UUID(views[1][0]["incident"]["incident_id"])
    store = http._transport.app.state.clip_store  # type: ignore[attr-defined]
    assert store.path_for(f"{incident_id}.flac").is_file()
    assert not store.path_for(f"{views[0][0]['incident']['incident_id']}.flac").exists()


def test_the_schema_says_the_code_is_write_only_and_never_returned() -> None:
    schemas = create_app(GatewaySettings(database_url="sqlite+aiosqlite://")).openapi()["components"]["schemas"]
    code = schemas["DeviceUpdate"]["properties"]["duress_code"]
    assert code["writeOnly"] is True and {"type": "null"} in code["anyOf"]
    assert {"minLength": 4, "maxLength": 200}.items() <= code["anyOf"][0].items()
    assert schemas["CancelRequest"]["properties"]["code"]["writeOnly"] is True
    assert not any("duress" in name or "code" in name for name in schemas["DeviceOut"]["properties"])
