"""F3 (issue 12): revoking a token ends its sessions at once, on every gateway.

Two gateway apps under uvicorn on one PostgreSQL database and one Redis, real WebSocket
clients: a rotation or a deletion on gateway A closes the device's session on gateway B with
``token_revoked`` and close 4001 (design bound 1 s; asserted with a generous timeout, the
measured time is printed). Behind a lost event: the periodic token check, and the check
before each incident, so a session of a deleted device never opens an incident and logs no
traceback.
"""

from __future__ import annotations

import asyncio
import logging
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from sqlalchemy import delete, func, select, update
from websockets.asyncio.client import ClientConnection, connect

from services.gateway.settings import GatewaySettings
from shared.clips import ClipStorageSettings
from shared.db import Database, Device
from shared.db.models import Incident
from shared.protocol import CloseCode, ErrorCode
from tests.alerting_support import redis_broker_url  # noqa: F401 (fixture)
from tests.gateway_apps import Gateway, open_session, run_gateways, send_audio, until_closed
from tests.gateway_support import audio

pytestmark = [pytest.mark.postgres, pytest.mark.redis, pytest.mark.slow]

# The bound the design promises is 1 s; the assertion leaves room for a loaded test machine.
GENEROUS_S = 10.0


def settings(database_url: str, redis_url: str, tmp_path: Path, **overrides: object) -> GatewaySettings:
    return GatewaySettings(
        database_url=database_url,
        redis_url=redis_url,
        clips=ClipStorageSettings(dir=tmp_path / "clips"),
        max_stream_speed=1000.0,
        **overrides,  # type: ignore[arg-type]
    )


@pytest.fixture
def two_gateways(
    postgres_db: Database, postgres_url: str, redis_broker_url: str, tmp_path: Path,  # noqa: F811
    monkeypatch: pytest.MonkeyPatch,
) -> Iterator[list[Gateway]]:
    monkeypatch.setenv("HEARO_DATA_DIR", str(tmp_path / "var"))
    # The periodic check is slow here, so that only the event can close the session in time.
    one = settings(postgres_url, redis_broker_url, tmp_path, token_check_interval_s=600.0)
    with run_gateways(monkeypatch, one, one) as gateways:
        yield gateways


async def revoked_close(ws: ClientConnection, since: float) -> float:
    """Wait for the gateway to close ``ws`` as revoked; the seconds since ``since``."""
    messages = await asyncio.wait_for(until_closed(ws), GENEROUS_S)
    elapsed = time.monotonic() - since
    assert messages[-1]["code"] == ErrorCode.TOKEN_REVOKED.value and messages[-1]["fatal"], messages
    assert ws.close_code == CloseCode.UNAUTHORIZED
    return elapsed


async def test_rotating_on_one_gateway_closes_the_session_on_another(two_gateways: list[Gateway]) -> None:
    a, b = two_gateways
    _, token = await asyncio.to_thread(a.register)
    async with connect(b.ws) as ws, connect(b.ws) as bystander:
        await open_session(ws, token)
        _, other_token = await asyncio.to_thread(a.register, "Bystander")
        await open_session(bystander, other_token)
        await send_audio(ws, audio(0.2))
        async with httpx.AsyncClient() as http:
            sent = time.monotonic()
            rotated = await http.post(f"{a.http}/v1/devices/me/token", headers={"Authorization": f"Bearer {token}"})
        assert rotated.status_code == 200
        elapsed = await revoked_close(ws, sent)
        print(f"rotation requested on A -> close 4001 on B: {elapsed * 1000:.0f} ms")
        # The new token opens a session on B at once; the other device never noticed.
        async with connect(b.ws) as fresh:
            await open_session(fresh, rotated.json()["token"])
        await send_audio(bystander, audio(0.2))
        assert bystander.close_code is None


async def test_deleting_on_one_gateway_closes_the_session_on_another(two_gateways: list[Gateway]) -> None:
    a, b = two_gateways
    _, token = await asyncio.to_thread(a.register)
    async with connect(b.ws) as ws:
        await open_session(ws, token)
        async with httpx.AsyncClient() as http:
            sent = time.monotonic()
            deleted = await http.delete(f"{a.http}/v1/devices/me", headers={"Authorization": f"Bearer {token}"})
        assert deleted.status_code == 200
        elapsed = await revoked_close(ws, sent)
        print(f"deletion requested on A -> close 4001 on B: {elapsed * 1000:.0f} ms")
    assert await asyncio.to_thread(b.sessions) == 0


async def test_the_periodic_check_closes_a_session_whose_revocation_was_lost(
    postgres_db: Database, postgres_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("HEARO_DATA_DIR", str(tmp_path / "var"))
    # No Redis: a rotation written to the database by another gateway is never heard here.
    one = settings(postgres_url, "", tmp_path, token_check_interval_s=0.5)
    with run_gateways(monkeypatch, one) as (gateway,):
        device_id, token = await asyncio.to_thread(gateway.register)
        async with connect(gateway.ws) as ws:
            await open_session(ws, token)
            async with postgres_db.session() as session:
                await session.execute(
                    update(Device).where(Device.id == uuid.UUID(device_id)).values(token_hash="rotated-elsewhere")
                )
            elapsed = await revoked_close(ws, time.monotonic())
            print(f"lost revocation -> closed by the token check: {elapsed * 1000:.0f} ms")


async def test_a_session_of_a_deleted_device_never_opens_an_incident(
    postgres_db: Database, postgres_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    monkeypatch.setenv("HEARO_DATA_DIR", str(tmp_path / "var"))
    one = settings(postgres_url, "", tmp_path, token_check_interval_s=600.0)
    with run_gateways(monkeypatch, one) as (gateway,):
        device_id, token = await asyncio.to_thread(gateway.register)
        async with connect(gateway.ws) as ws:
            await open_session(ws, token)
            # Deleted by another gateway whose event is lost: only the check before the incident is left.
            async with postgres_db.session() as session:
                await session.execute(delete(Device).where(Device.id == uuid.UUID(device_id)))
            with caplog.at_level(logging.INFO):
                await send_audio(ws, audio(4.0, loud=True))  # the fake model hears fire
                messages = await asyncio.wait_for(until_closed(ws), GENEROUS_S)
        assert messages[-1]["code"] == ErrorCode.TOKEN_REVOKED.value and ws.close_code == CloseCode.UNAUTHORIZED
        assert not [m for m in messages if m["type"] in ("detection", "incident")]
    async with postgres_db.session() as session:
        assert await session.scalar(select(func.count()).select_from(Incident)) == 0
    assert not [r for r in caplog.records if r.exc_info or r.levelno >= logging.ERROR], caplog.text
    assert any("token revoked; no incident opened" in r.getMessage() for r in caplog.records)
