"""The /v1/devices routes on SQLite: registration, bearer auth, isolation, rotation, validation."""

from __future__ import annotations

import hashlib
import uuid
from collections.abc import AsyncIterator
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import httpx
import pytest
from sqlalchemy import func, select
from sqlalchemy.engine import make_url

from services.gateway.auth import authenticate_token
from services.gateway.enrolment import ENROLMENT_KEY_HEADER
from services.gateway.rate_limit import RateLimit, RequestLimits
from shared.db import Database, Device, EmergencyContact
from tests.devices_support import devices_app, http_client


def registration(name: str = "Kim Soon-ja", **overrides: Any) -> dict[str, Any]:
    body: dict[str, Any] = {
        "profile": {"name": name, "birth_year": 1948, "medical_notes": "diabetes, insulin"},
        "address": "12 Sejong-daero, Jongno-gu, Seoul",
        "location": {"latitude": 37.5729, "longitude": 126.9794, "accuracy_m": 15.0},
        "contacts": [
            {
                "name": "Kim Min-ji",
                "relation": "daughter",
                "phone": "+82 10-1234-5678",
                "webhook_url": "https://example.org/hooks/hearo",
                "email": "minji@example.org",
            }
        ],
        "consent_recording": True,
        "consent_location": True,
        "consent_share_profile": True,
    }
    body.update(overrides)
    return body


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


@pytest.fixture
async def client(sqlite_db: Database) -> AsyncIterator[httpx.AsyncClient]:
    async with http_client(devices_app(sqlite_db)) as client:
        yield client


async def register(client: httpx.AsyncClient, **overrides: Any) -> tuple[str, str]:
    response = await client.post("/v1/devices", json=registration(**overrides))
    assert response.status_code == 201, response.text
    body = response.json()
    return body["device_id"], body["token"]


async def test_register_then_read_own_device(client: httpx.AsyncClient) -> None:
    response = await client.post("/v1/devices", json=registration())
    assert response.status_code == 201
    assert response.headers["cache-control"] == "no-store"
    credentials = response.json()
    assert set(credentials) == {"device_id", "token"}
    uuid.UUID(credentials["device_id"])
    assert len(credentials["token"]) >= 43  # 256 bits in URL-safe base64

    me = await client.get("/v1/devices/me", headers=bearer(credentials["token"]))
    assert me.status_code == 200
    device = me.json()
    assert device["id"] == credentials["device_id"]
    assert device["profile"] == {
        "name": "Kim Soon-ja",
        "birth_year": 1948,
        "medical_notes": "diabetes, insulin",
    }
    assert device["address"] == "12 Sejong-daero, Jongno-gu, Seoul"
    assert device["location"]["latitude"] == 37.5729
    assert device["location"]["accuracy_m"] == 15.0
    assert device["contacts"] == [
        {
            "name": "Kim Min-ji",
            "relation": "daughter",
            "phone": "+821012345678",  # stored as E.164
            "webhook_url": "https://example.org/hooks/hearo",
            "email": "minji@example.org",
        }
    ]
    assert (device["consent_recording"], device["consent_location"]) == (True, True)
    assert device["consent_share_profile"] is True
    created = datetime.fromisoformat(device["created_at"])
    assert created.utcoffset() is not None
    assert abs((datetime.now(timezone.utc) - created).total_seconds()) < 60
    assert "token" not in device and "token_hash" not in device


async def test_registration_with_minimum_fields(client: httpx.AsyncClient) -> None:
    body = {
        "profile": {"name": "Lee", "birth_year": 1990},
        "consent_recording": True,
        "consent_location": False,
        "consent_share_profile": False,
    }
    response = await client.post("/v1/devices", json=body)
    assert response.status_code == 201, response.text
    me = (await client.get("/v1/devices/me", headers=bearer(response.json()["token"]))).json()
    assert (me["address"], me["location"], me["contacts"]) == (None, None, [])


async def test_routes_require_a_token(client: httpx.AsyncClient) -> None:
    for method, path in [
        ("GET", "/v1/devices/me"),
        ("PATCH", "/v1/devices/me"),
        ("POST", "/v1/devices/me/token"),
        ("DELETE", "/v1/devices/me"),
    ]:
        response = await client.request(method, path, json={})
        assert response.status_code == 401, (method, path)
        assert response.json()["detail"]["code"] == "missing_token"
        assert response.headers["www-authenticate"] == "Bearer"


async def test_wrong_token_is_401(client: httpx.AsyncClient) -> None:
    _, token = await register(client)
    for headers in [
        bearer(token[:-1] + ("A" if token[-1] != "A" else "B")),
        bearer("x" * 5000),
        {"Authorization": f"Basic {token}"},
        {"Authorization": token},
    ]:
        response = await client.get("/v1/devices/me", headers=headers)
        assert response.status_code == 401
        assert response.json()["detail"]["code"] in {"invalid_token", "missing_token"}
        assert response.json()["detail"]["message"]


async def test_devices_see_only_their_own_data(client: httpx.AsyncClient) -> None:
    id_a, token_a = await register(client, name="Alice")
    id_b, token_b = await register(client, name="Bob")
    assert id_a != id_b and token_a != token_b

    me_a = (await client.get("/v1/devices/me", headers=bearer(token_a))).json()
    me_b = (await client.get("/v1/devices/me", headers=bearer(token_b))).json()
    assert (me_a["id"], me_a["profile"]["name"]) == (id_a, "Alice")
    assert (me_b["id"], me_b["profile"]["name"]) == (id_b, "Bob")

    patched = await client.patch(
        "/v1/devices/me",
        headers=bearer(token_a),
        json={"profile": {"name": "Alice K", "birth_year": 1950}, "contacts": []},
    )
    assert patched.status_code == 200
    me_b = (await client.get("/v1/devices/me", headers=bearer(token_b))).json()
    assert me_b["profile"]["name"] == "Bob"
    assert len(me_b["contacts"]) == 1

    assert (await client.delete("/v1/devices/me", headers=bearer(token_a))).status_code == 200
    assert (await client.get("/v1/devices/me", headers=bearer(token_b))).status_code == 200


async def test_token_rotation_retires_the_old_token(client: httpx.AsyncClient) -> None:
    device_id, old = await register(client)
    response = await client.post("/v1/devices/me/token", headers=bearer(old))
    assert response.status_code == 200
    assert response.headers["cache-control"] == "no-store"
    rotated = response.json()
    assert rotated["device_id"] == device_id
    new = rotated["token"]
    assert new != old

    assert (await client.get("/v1/devices/me", headers=bearer(old))).status_code == 401
    me = await client.get("/v1/devices/me", headers=bearer(new))
    assert me.status_code == 200
    assert me.json()["id"] == device_id
    assert (await client.post("/v1/devices/me/token", headers=bearer(old))).status_code == 401


@pytest.mark.parametrize(
    ("overrides", "field", "message"),
    [
        ({"profile": {"name": "X", "birth_year": 1850}}, "birth_year", "birth_year must be"),
        ({"profile": {"name": "X", "birth_year": 2999}}, "birth_year", "birth_year must be"),
        ({"profile": {"name": "", "birth_year": 1950}}, "name", ""),
        ({"consent_recording": False}, "consent_recording", "cannot listen without"),
        ({"consent_recording": "yes"}, "consent_recording", ""),
        ({"consent_location": False}, "body", "needs consent_location"),
        ({"location": {"latitude": 91, "longitude": 0, "accuracy_m": 5}}, "latitude", ""),
        ({"location": {"latitude": 0, "longitude": 181, "accuracy_m": 5}}, "longitude", ""),
        ({"location": {"latitude": 0, "longitude": 0, "accuracy_m": -1}}, "accuracy_m", ""),
        (
            {"contacts": [{"name": "A", "relation": "son", "phone": "010-1234-5678"}]},
            "phone",
            "international number",
        ),
        (
            {"contacts": [{"name": "A", "relation": "son", "phone": "+82 10 12ab"}]},
            "phone",
            "international number",
        ),
        (
            {
                "contacts": [
                    {"name": "A", "relation": "son", "phone": "+821012345678", "email": "no"}
                ]
            },
            "email",
            "email must",
        ),
        (
            {
                "contacts": [
                    {"name": "A", "relation": "son", "phone": "+821012345678", "webhook_url": "ftp://x"}
                ]
            },
            "webhook_url",
            "",
        ),
        (
            {"contacts": [{"name": "C", "relation": "friend", "phone": "+821012345678"}] * 11},
            "contacts",
            "at most 10",
        ),
        ({"consent_to_everything": True}, "consent_to_everything", ""),
    ],
)
async def test_registration_validation(
    client: httpx.AsyncClient, overrides: dict[str, Any], field: str, message: str
) -> None:
    response = await client.post("/v1/devices", json=registration(**overrides))
    assert response.status_code == 422, response.text
    errors = response.json()["detail"]
    assert any(field in error["loc"] and message in error["msg"] for error in errors), errors


async def test_consent_flags_are_required(client: httpx.AsyncClient) -> None:
    body = registration()
    del body["consent_share_profile"]
    response = await client.post("/v1/devices", json=body)
    assert response.status_code == 422
    assert ["body", "consent_share_profile"] in [e["loc"] for e in response.json()["detail"]]


async def test_ten_contacts_are_allowed(client: httpx.AsyncClient) -> None:
    contacts = [
        {"name": f"Contact {i}", "relation": "friend", "phone": f"+8210000000{i:02d}"} for i in range(10)
    ]
    _, token = await register(client, contacts=contacts)
    me = (await client.get("/v1/devices/me", headers=bearer(token))).json()
    assert [c["name"] for c in me["contacts"]] == [f"Contact {i}" for i in range(10)]


async def test_patch_replaces_only_the_fields_given(client: httpx.AsyncClient) -> None:
    _, token = await register(client)
    new_contacts = [
        {"name": "Park", "relation": "neighbour", "phone": "+82 2 123 4567"},
        {"name": "Choi", "relation": "son", "phone": "+1 (415) 555-0100", "email": "choi@example.org"},
    ]
    response = await client.patch(
        "/v1/devices/me",
        headers=bearer(token),
        json={"address": None, "contacts": new_contacts, "consent_share_profile": False},
    )
    assert response.status_code == 200, response.text
    device = response.json()
    assert device["address"] is None
    assert [(c["name"], c["phone"]) for c in device["contacts"]] == [
        ("Park", "+8221234567"),
        ("Choi", "+14155550100"),
    ]
    assert device["consent_share_profile"] is False
    assert device["profile"]["name"] == "Kim Soon-ja"
    assert device["location"]["latitude"] == 37.5729
    assert (await client.get("/v1/devices/me", headers=bearer(token))).json() == device

    moved = await client.patch(
        "/v1/devices/me",
        headers=bearer(token),
        json={"location": {"latitude": 35.1796, "longitude": 129.0756, "accuracy_m": 40}},
    )
    assert moved.json()["location"]["longitude"] == 129.0756
    assert moved.json()["contacts"] == device["contacts"]


async def test_withdrawing_location_consent_forgets_the_location(client: httpx.AsyncClient) -> None:
    _, token = await register(client)
    response = await client.patch(
        "/v1/devices/me", headers=bearer(token), json={"consent_location": False}
    )
    assert response.status_code == 200
    assert response.json()["location"] is None
    assert response.json()["consent_location"] is False

    refused = await client.patch(
        "/v1/devices/me",
        headers=bearer(token),
        json={"location": {"latitude": 1, "longitude": 2, "accuracy_m": 3}},
    )
    assert refused.status_code == 422
    assert "consent_location" in refused.json()["detail"][0]["msg"]

    both = await client.patch(
        "/v1/devices/me",
        headers=bearer(token),
        json={"consent_location": True, "location": {"latitude": 1, "longitude": 2, "accuracy_m": 3}},
    )
    assert both.status_code == 200
    assert both.json()["location"]["latitude"] == 1


@pytest.mark.parametrize(
    ("body", "message"),
    [
        ({"consent_recording": False}, "DELETE /v1/devices/me"),
        ({"profile": None}, "profile cannot be null"),
        ({"contacts": None}, "contacts cannot be null"),
        ({"profile": {"name": "X", "birth_year": 1700}}, "birth_year must be"),
        ({"token_hash": "0" * 64}, ""),
    ],
)
async def test_patch_validation(client: httpx.AsyncClient, body: dict[str, Any], message: str) -> None:
    _, token = await register(client)
    response = await client.patch("/v1/devices/me", headers=bearer(token), json=body)
    assert response.status_code == 422, response.text
    assert any(message in error["msg"] for error in response.json()["detail"])


async def test_deregistration_deletes_device_and_contacts(
    client: httpx.AsyncClient, sqlite_db: Database
) -> None:
    _, token = await register(client)
    response = await client.delete("/v1/devices/me", headers=bearer(token))
    assert response.status_code == 200
    statement = response.json()
    assert statement["deleted"]["contacts"] >= 1 and statement["kept"]
    assert (await client.get("/v1/devices/me", headers=bearer(token))).status_code == 401
    async with sqlite_db.session() as session:
        assert await session.scalar(select(func.count()).select_from(Device)) == 0
        assert await session.scalar(select(func.count()).select_from(EmergencyContact)) == 0


async def test_token_is_stored_only_as_its_hash(
    client: httpx.AsyncClient, sqlite_db: Database
) -> None:
    device_id, token = await register(client)
    async with sqlite_db.session() as session:
        device = await session.get(Device, uuid.UUID(device_id))
    assert device is not None
    assert device.token_hash == hashlib.sha256(token.encode()).hexdigest()
    # Nothing on disk (database file and its write-ahead log) holds the raw token.
    database_file = Path(make_url(sqlite_db.url).database or "")
    for path in database_file.parent.iterdir():
        assert token.encode() not in path.read_bytes(), path.name


async def test_authenticate_token_for_the_websocket(
    client: httpx.AsyncClient, sqlite_db: Database
) -> None:
    device_id, token = await register(client)
    device = await authenticate_token(sqlite_db, token)
    assert device is not None
    assert str(device.id) == device_id
    assert device.consent_recording is True
    assert [c.phone for c in device.contacts] == ["+821012345678"]  # loaded, usable detached
    assert await authenticate_token(sqlite_db, "") is None
    assert await authenticate_token(sqlite_db, token + "x") is None
    assert await authenticate_token(sqlite_db, "a" * 10_000) is None


# --- enrolment keys and rate limits (issue 12, F2) ----------------------------------------------

OLD_KEY, NEW_KEY = "enrolment-key-of-last-year", "enrolment-key-of-this-year"


async def test_registration_needs_one_of_the_enrolment_keys(sqlite_db: Database) -> None:
    async with http_client(devices_app(sqlite_db, enrolment_keys=[OLD_KEY, NEW_KEY])) as client:
        missing = await client.post("/v1/devices", json=registration())
        assert missing.status_code == 401
        assert missing.json()["detail"]["code"] == "enrolment_key_required"
        assert ENROLMENT_KEY_HEADER in missing.json()["detail"]["message"]
        wrong = await client.post("/v1/devices", json=registration(), headers={ENROLMENT_KEY_HEADER: "guess"})
        assert wrong.status_code == 403
        assert wrong.json()["detail"] == {
            "code": "invalid_enrolment_key", "message": "the enrolment key is not valid for this gateway"
        }
        for key in (OLD_KEY, NEW_KEY):  # both, while the old one is being replaced
            accepted = await client.post("/v1/devices", json=registration(), headers={ENROLMENT_KEY_HEADER: key})
            assert accepted.status_code == 201, accepted.text
    async with sqlite_db.session() as session:
        assert await session.scalar(select(func.count()).select_from(Device)) == 2


async def test_registration_is_rate_limited_per_address(sqlite_db: Database) -> None:
    limits = RequestLimits(None, None, RateLimit(burst=3, per_minute=1))
    app = devices_app(sqlite_db, limits)
    async with http_client(app, "192.0.2.1") as client:
        for _ in range(3):
            assert (await client.post("/v1/devices", json=registration())).status_code == 201
        refused = await client.post("/v1/devices", json=registration())
        assert refused.status_code == 429
        assert 1 <= int(refused.headers["Retry-After"]) <= 60
        assert refused.json()["detail"]["code"] == "rate_limited"
        assert "registrations from this address" in refused.json()["detail"]["message"]
    async with http_client(app, "192.0.2.2") as neighbour:  # another address is not affected
        assert (await neighbour.post("/v1/devices", json=registration())).status_code == 201


async def test_a_device_over_its_rest_limit_does_not_slow_another(sqlite_db: Database) -> None:
    limits = RequestLimits(None, RateLimit(burst=5, per_minute=60), None)
    async with http_client(devices_app(sqlite_db, limits)) as client:
        _, noisy = await register(client)
        _, quiet = await register(client)
        statuses = [(await client.get("/v1/devices/me", headers=bearer(noisy))).status_code for _ in range(8)]
        assert statuses == [200] * 5 + [429] * 3
        limited = await client.get("/v1/devices/me", headers=bearer(noisy))
        assert limited.headers["Retry-After"] == "1" and "from this device" in limited.json()["detail"]["message"]
        assert (await client.get("/v1/devices/me", headers=bearer(quiet))).status_code == 200


async def test_rest_is_rate_limited_per_address(sqlite_db: Database) -> None:
    limits = RequestLimits(RateLimit(burst=4, per_minute=60), None, None)
    async with http_client(devices_app(sqlite_db, limits), "198.51.100.7") as client:
        statuses = [(await client.get("/v1/devices/me", headers=bearer("made-up"))).status_code for _ in range(6)]
    assert statuses == [401] * 4 + [429] * 2  # made-up tokens do not get past it either
