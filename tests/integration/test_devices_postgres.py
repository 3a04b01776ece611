"""Migrations and the /v1/devices flow against the real PostgreSQL server."""

from __future__ import annotations

import asyncio
import hashlib
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy import func, inspect, select, text
from sqlalchemy.engine import Connection

from services.gateway.auth import authenticate_token
from shared.db import Base, Database, Device, EmergencyContact, upgrade_database
from tests.devices_support import devices_app, http_client

pytestmark = pytest.mark.postgres


def registration(name: str) -> dict[str, Any]:
    return {
        "profile": {"name": name, "birth_year": 1952, "medical_notes": None},
        "address": "1 Jungang-ro, Busan",
        "location": {"latitude": 35.1796, "longitude": 129.0756, "accuracy_m": 8.5},
        "contacts": [
            {"name": f"{name}'s son", "relation": "son", "phone": "+82 10 9876 5432"},
            {"name": f"{name}'s doctor", "relation": "doctor", "phone": "+82 51 123 4567"},
        ],
        "consent_recording": True,
        "consent_location": True,
        "consent_share_profile": False,
    }


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


@pytest.fixture
async def client(postgres_db: Database) -> AsyncIterator[httpx.AsyncClient]:
    async with http_client(devices_app(postgres_db)) as client:
        yield client


def schema(connection: Connection) -> tuple[list[str], str | None, list[object]]:
    tables = sorted(inspect(connection).get_table_names())
    context = MigrationContext.configure(connection)
    return tables, context.get_current_revision(), compare_metadata(context, Base.metadata)


async def test_migrations_build_the_schema_on_postgres(postgres_url: str) -> None:
    await asyncio.to_thread(upgrade_database, postgres_url)
    db = Database(postgres_url)
    try:
        async with db.engine.connect() as connection:
            first = await connection.run_sync(schema)
            column_type = await connection.scalar(
                text(
                    "SELECT data_type FROM information_schema.columns "
                    "WHERE table_name = 'devices' AND column_name = 'created_at'"
                )
            )
        await asyncio.to_thread(upgrade_database, postgres_url)
        async with db.engine.connect() as connection:
            second = await connection.run_sync(schema)
    finally:
        await db.dispose()
    assert first == (
        [
            "alembic_version", "alerting_workers", "anomaly_activity", "anomaly_models", "anomaly_samples", "audit_log", "contact_notifications", "devices",
            "dispatch_outbox", "emergency_contacts", "households", "incident_clips", "incident_outcomes",
            "incidents", "segment_reviews", "threshold_adjustments",
        ],
        "0011",
        [],
    )
    assert second == first
    assert column_type == "timestamp with time zone"


async def test_register_read_isolate_rotate_delete(
    client: httpx.AsyncClient, postgres_db: Database
) -> None:
    registered = []
    for name in ("Alice", "Bob"):
        response = await client.post("/v1/devices", json=registration(name))
        assert response.status_code == 201, response.text
        registered.append(response.json())
    (id_a, token_a), (id_b, token_b) = [(r["device_id"], r["token"]) for r in registered]

    me_a = (await client.get("/v1/devices/me", headers=bearer(token_a))).json()
    me_b = (await client.get("/v1/devices/me", headers=bearer(token_b))).json()
    assert (me_a["id"], me_a["profile"]["name"]) == (id_a, "Alice")
    assert (me_b["id"], me_b["profile"]["name"]) == (id_b, "Bob")
    assert [c["phone"] for c in me_a["contacts"]] == ["+821098765432", "+82511234567"]
    assert me_a["location"] == {**registration("Alice")["location"], "updated_at": me_a["location"]["updated_at"]}

    patched = await client.patch(
        "/v1/devices/me", headers=bearer(token_a), json={"consent_location": False, "contacts": []}
    )
    assert patched.status_code == 200
    assert (patched.json()["location"], patched.json()["contacts"]) == (None, [])
    me_b = (await client.get("/v1/devices/me", headers=bearer(token_b))).json()
    assert me_b["location"] is not None and len(me_b["contacts"]) == 2

    assert (await client.get("/v1/devices/me", headers=bearer("not-a-token"))).status_code == 401

    rotated = (await client.post("/v1/devices/me/token", headers=bearer(token_a))).json()["token"]
    assert (await client.get("/v1/devices/me", headers=bearer(token_a))).status_code == 401
    device = await authenticate_token(postgres_db, rotated)
    assert device is not None and str(device.id) == id_a
    assert device.token_hash == hashlib.sha256(rotated.encode()).hexdigest()

    assert (await client.delete("/v1/devices/me", headers=bearer(rotated))).status_code == 200
    async with postgres_db.session() as session:
        assert await session.scalar(select(func.count()).select_from(Device)) == 1
        # Bob's two contacts remain; Alice's went with her device.
        assert await session.scalar(select(func.count()).select_from(EmergencyContact)) == 2
