"""Household fusion across gateways: two gateway apps under uvicorn on one PostgreSQL database
and one Redis (the activity board), real WebSocket clients, the fake classifier of
tests/gateway_support.py (a loud window is fire). Devices of one home on different gateways
corroborate each other through Redis; a device that alone heard it is told so; a device
without a household is judged as before (nothing). The mn04 end-to-end test is
tests/integration/test_household_e2e.py.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path
from typing import Any

import httpx
import pytest
from sqlalchemy import select
from websockets.asyncio.client import ClientConnection, connect

from services.gateway.settings import GatewaySettings
from shared.clips import ClipStorageSettings
from shared.db import Database
from shared.db.models import Incident
from tests.alerting_support import redis_broker_url  # noqa: F401 (fixture)
from tests.gateway_apps import Gateway, open_session, run_gateways, send_audio
from tests.gateway_support import audio

pytestmark = [pytest.mark.postgres, pytest.mark.redis, pytest.mark.slow]

COUNTDOWN_S = 60.0


@pytest.fixture
def two_gateways(
    postgres_db: Database, postgres_url: str, redis_broker_url: str, tmp_path: Path,  # noqa: F811
    monkeypatch: pytest.MonkeyPatch,
) -> Iterator[list[Gateway]]:
    monkeypatch.setenv("HEARO_DATA_DIR", str(tmp_path / "var"))
    settings = GatewaySettings(
        database_url=postgres_url, redis_url=redis_broker_url, clips=ClipStorageSettings(dir=tmp_path / "clips"),
        max_stream_speed=1000.0, incident_countdown_s=COUNTDOWN_S, household_join_per_ip=None,
    )  # fmt: skip
    with run_gateways(monkeypatch, settings, settings) as gateways:
        yield gateways


def home(gateways: list[Gateway], rooms: list[str]) -> list[str]:
    """A household of one device per room, each registered on the next gateway; their tokens."""
    tokens = []
    for i, room in enumerate(rooms):
        gateway = gateways[i % len(gateways)]
        _, token = gateway.register(f"Owner of the {room}")
        auth = {"Authorization": f"Bearer {token}"}
        assert httpx.patch(f"{gateway.http}/v1/devices/me", json={"room": room}, headers=auth).status_code == 200
        if i == 0:
            code = httpx.post(f"{gateway.http}/v1/households", json={"name": "Home"}, headers=auth).json()["join_code"]
        else:
            joined = httpx.post(f"{gateway.http}/v1/households/join", json={"join_code": code}, headers=auth)
            assert joined.status_code == 200, joined.text
        tokens.append(token)
    return tokens


async def stream(url: str, token: str, pcm: bytes, *, want_corroboration: bool, wait_s: float = 12.0) -> list[dict[str, Any]]:
    """Stream ``pcm`` on a session; read until a corroboration arrives (or ``wait_s`` passes)."""
    messages: list[dict[str, Any]] = []
    async with connect(url) as ws:
        await open_session(ws, token)
        await send_audio(ws, pcm)
        try:
            async with asyncio.timeout(wait_s):
                while True:
                    message = json.loads(await ws.recv())
                    messages.append(message)
                    if want_corroboration and message.get("detail", {}).get("event") == "corroboration":
                        break
        except TimeoutError:
            pass
        await _stop(ws)
    return messages


async def _stop(ws: ClientConnection) -> None:
    await ws.send(json.dumps({"type": "stop"}))


def corroborations(messages: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [m for m in messages if m["type"] == "incident" and m.get("detail", {}).get("event") == "corroboration"]


async def test_two_household_devices_on_two_gateways_corroborate(two_gateways: list[Gateway], postgres_db: Database) -> None:
    a, b = two_gateways
    kitchen, bedroom = await asyncio.to_thread(home, two_gateways, ["kitchen", "bedroom"])
    started = time.monotonic()
    heard_k, heard_b = await asyncio.gather(
        stream(a.ws, kitchen, audio(4.0, loud=True), want_corroboration=True),
        stream(b.ws, bedroom, audio(4.0, loud=True), want_corroboration=True),
    )
    for mine, other_room, messages in (("kitchen", "bedroom", heard_k), ("bedroom", "kitchen", heard_b)):
        (detection,) = [m for m in messages if m["type"] == "detection"]
        (told,) = corroborations(messages)
        judged = told["corroboration"]
        assert judged["peers_listening"] == 1 and not judged["only_this_device"], (mine, judged)
        (support,) = judged["supporting"]
        assert (support["room"], support["how"], support["detected"]) == (other_room, "same_class", True)
        # Another device's detection of fire brings the report forward to half the countdown.
        moved = (datetime.fromisoformat(told["deadline_at"]) - datetime.fromisoformat(detection["deadline_at"]))
        assert moved.total_seconds() == pytest.approx(-COUNTDOWN_S / 2, abs=2.0), mine
    assert time.monotonic() - started < 12.0
    # Each incident names the other: one event of one home, two reports.
    async with postgres_db.session() as session:
        incidents = {str(i.id): i for i in await session.scalars(select(Incident))}
    assert len(incidents) == 2
    for incident_id, incident in incidents.items():
        (other,) = set(incidents) - {incident_id}
        assert (incident.corroboration or {})["linked_incidents"] == [other]


async def test_only_this_device_heard_it_and_a_device_without_household_is_not_judged(
    two_gateways: list[Gateway], postgres_db: Database
) -> None:
    a, b = two_gateways
    kitchen, bedroom = await asyncio.to_thread(home, two_gateways, ["kitchen", "bedroom"])
    _, alone = await asyncio.to_thread(a.register, "Lives alone")
    heard_k, heard_b, heard_alone = await asyncio.gather(
        stream(a.ws, kitchen, audio(4.0, loud=True), want_corroboration=True),
        stream(b.ws, bedroom, audio(4.0), want_corroboration=False, wait_s=6.0),  # quiet: nothing to detect
        stream(a.ws, alone, audio(4.0, loud=True), want_corroboration=False, wait_s=8.0),
    )
    (told,) = corroborations(heard_k)
    assert told["corroboration"]["only_this_device"] is True and told["corroboration"]["peers_listening"] == 1
    assert told["deadline_at"] == next(m for m in heard_k if m["type"] == "detection")["deadline_at"]  # not shortened
    assert not [m for m in heard_b if m["type"] == "detection"]
    # No household: the detection, its incident and its countdown, and nothing about other devices.
    assert [m["type"] for m in heard_alone if m["type"] in ("detection", "incident")] == ["detection", "incident"]
    assert not any("corroboration" in m for m in heard_alone)
    async with postgres_db.session() as session:
        judged = {str(i.device_id): i.corroboration for i in await session.scalars(select(Incident))}
    assert len(judged) == 2 and sorted(v is None for v in judged.values()) == [False, True]
