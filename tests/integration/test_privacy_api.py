"""The owner's privacy over real connections: the gateway app under uvicorn, real WebSocket
clients, the fake classifier of tests/gateway_support.py (loud audio is a fire).

* Audio never leaves the ring buffer without a detection: a long run of normal audio stores
  nothing in the clip store and opens no incident; the same session's first loud second does.
* ``POST /v1/incidents/{id}/donate`` on a cancelled incident; refused on others.
* ``GET /v1/devices/me/export``: profile, contacts, consents, incidents with audit trail,
  deliveries and a working clip link.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import urlsplit

import httpx
import pytest
from sqlalchemy import func, select
from websockets.asyncio.client import connect

from services.gateway.settings import GatewaySettings
from shared.clips import ClipStorageSettings
from shared.db import Database
from shared.db.models import Incident, IncidentClip
from tests.gateway_apps import Gateway, open_session, run_gateways, send_audio, until_type
from tests.gateway_support import audio

pytestmark = pytest.mark.slow

# An hour of normal household audio, streamed as fast as the gateway takes it.
NORMAL_S = 3600.0
MEDICAL_NOTES = "pacemaker; allergic to penicillin"


@pytest.fixture
def gateway(sqlite_db: Database, sqlite_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Gateway]:
    settings = GatewaySettings(
        database_url=sqlite_url, max_stream_speed=10_000.0, incident_countdown_s=30.0, idle_timeout_s=120.0,
        clips=ClipStorageSettings(dir=tmp_path / "clips", secret_key="privacy-api-secret"),
    )  # fmt: skip
    with run_gateways(monkeypatch, settings) as (one,):
        yield one


def _register(gateway: Gateway) -> str:
    response = httpx.post(f"{gateway.http}/v1/devices", json={
        "profile": {"name": "Kang Mal-soon", "birth_year": 1939, "medical_notes": MEDICAL_NOTES},
        "consent_recording": True, "consent_location": True, "consent_share_profile": True,
        "location": {"latitude": 37.5, "longitude": 127.0, "accuracy_m": 20},
        "contacts": [{"name": "Kang Eun-ji", "relation": "granddaughter", "phone": "+821098765432"}],
    })  # fmt: skip
    assert response.status_code == 201, response.text
    token: str = response.json()["token"]
    return token


async def _count(db: Database, model: type) -> int:
    async with db.session() as session:
        return int(await session.scalar(select(func.count()).select_from(model)) or 0)


async def test_normal_audio_never_leaves_the_ring_buffer(gateway: Gateway, sqlite_db: Database, tmp_path: Path) -> None:
    token = await asyncio.to_thread(_register, gateway)
    clips = tmp_path / "clips"
    async with connect(gateway.ws, max_size=None) as ws:
        await open_session(ws, token)
        chunk = audio(10.0)
        for _ in range(int(NORMAL_S / 10)):
            await send_audio(ws, chunk, frame_bytes=32000)
        await ws.send(json.dumps({"type": "stop"}))
        messages = await until_type(ws, "stopped")
    assert not [m for m in messages if m["type"] in ("detection", "incident")]
    assert not clips.exists() or list(clips.iterdir()) == []  # nothing in the clip store
    assert (await _count(sqlite_db, Incident), await _count(sqlite_db, IncidentClip)) == (0, 0)

    # The control: the same path with a detection does store a clip.
    async with connect(gateway.ws) as ws:
        await open_session(ws, token)
        await send_audio(ws, audio(3.0, loud=True) + audio(22.0))
        await until_type(ws, "incident")
        await ws.send(json.dumps({"type": "stop"}))
        await until_type(ws, "stopped")
    for _ in range(100):
        if await _count(sqlite_db, IncidentClip):
            break
        await asyncio.sleep(0.1)
    assert await _count(sqlite_db, IncidentClip) == 1 and len(list(clips.iterdir())) == 1


async def test_donate_then_export_everything(gateway: Gateway, sqlite_db: Database) -> None:
    token = await asyncio.to_thread(_register, gateway)
    auth = {"Authorization": f"Bearer {token}"}
    async with httpx.AsyncClient(base_url=gateway.http, headers=auth) as http:
        async with connect(gateway.ws) as ws:
            await open_session(ws, token)
            await send_audio(ws, audio(3.0, loud=True) + audio(5.0))
            incident_id = (await until_type(ws, "incident"))[-1]["incident_id"]
            pending = await http.post(f"/v1/incidents/{incident_id}/donate")
            assert pending.status_code == 409 and pending.json()["detail"]["code"] == "not_cancelled"
            cancelled = await http.post(f"/v1/incidents/{incident_id}/cancel", json={"reason": "toaster"})
            assert cancelled.status_code == 200
            await ws.send(json.dumps({"type": "stop"}))  # the clip is cut from what the ring holds
            await until_type(ws, "stopped")
        for _ in range(100):
            if await _count(sqlite_db, IncidentClip):
                break
            await asyncio.sleep(0.1)
        donated = await http.post(f"/v1/incidents/{incident_id}/donate")
        assert donated.status_code == 200, donated.text
        assert donated.json()["outcome"] == "donated" and donated.json()["donated_at"]
        again = await http.post(f"/v1/incidents/{incident_id}/donate")
        assert again.json()["outcome"] == "already_donated" and again.json()["donated_at"] == donated.json()["donated_at"]
        other = await asyncio.to_thread(_register, gateway)
        stranger = await http.post(f"/v1/incidents/{incident_id}/donate", headers={"Authorization": f"Bearer {other}"})
        assert stranger.status_code == 404
        assert (await http.post(f"/v1/incidents/{incident_id}/donate", headers={"Authorization": "Bearer x"})).status_code == 401

        exported = await http.get("/v1/devices/me/export")
        assert exported.status_code == 200 and exported.headers["cache-control"] == "no-store"
        body = exported.json()
        device = body["device"]
        assert device["profile"]["medical_notes"] == MEDICAL_NOTES and device["contacts"][0]["name"] == "Kang Eun-ji"
        assert device["consent_recording"] and device["location"]["latitude"] == 37.5
        [incident] = body["incidents"]
        assert incident["incident_id"] == incident_id and incident["state"] == "cancelled"
        assert incident["cancel_reason"] == "toaster" and incident["clip_donated_at"] == donated.json()["donated_at"]
        events = [entry["event"] for entry in incident["audit"]]
        assert events[:1] == ["opened"] and "cancelled" in events and "clip_donated" in events and "clip" in events
        assert incident["contact_notifications"][0]["event"] == "detected" and incident["deliveries"] == []
        link = urlsplit(incident["clip"]["url"])  # signed for the public base URL; fetched from this gateway
        clip = await http.get(f"{link.path}?{link.query}")
        assert clip.status_code == 200 and clip.content[:4] == b"fLaC"

        # Another device's export holds none of it.
        theirs = (await http.get("/v1/devices/me/export", headers={"Authorization": f"Bearer {other}"})).json()
        assert theirs["incidents"] == [] and theirs["device"]["id"] != device["id"]
