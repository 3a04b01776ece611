"""The routes the web app added, over real connections (the gateway under uvicorn, the fake
classifier of tests/gateway_support.py: loud audio is a fire), and the page's files.

* ``GET /`` is the page and ``/web/...`` its files, with the security headers;
* ``GET /v1/incidents/{id}/notices``: the contacts told of a detection;
* ``DELETE /v1/incidents/{id}/clip``: only a cancelled incident's, audited; the store is empty
  after it; a repeat is ``no_clip``; another device's incident is a 404.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from sqlalchemy import func, select
from websockets.asyncio.client import connect

from services.gateway.settings import GatewaySettings
from shared.clips import ClipStorageSettings
from shared.db import Database
from shared.db.models import AuditEntry, IncidentClip
from tests.gateway_apps import Gateway, open_session, run_gateways, send_audio, until_type
from tests.gateway_support import audio

pytestmark = pytest.mark.slow


@pytest.fixture
def gateway(sqlite_db: Database, sqlite_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Gateway]:
    settings = GatewaySettings(
        database_url=sqlite_url, max_stream_speed=10_000.0, incident_countdown_s=30.0,
        clips=ClipStorageSettings(dir=tmp_path / "clips", secret_key="web-api-secret"),
    )  # fmt: skip
    with run_gateways(monkeypatch, settings) as (one,):
        yield one


def _register(gateway: Gateway) -> str:
    response = httpx.post(f"{gateway.http}/v1/devices", json={
        "profile": {"name": "Choi Geum-ja", "birth_year": 1940},
        "consent_recording": True, "consent_location": False, "consent_share_profile": False,
        "contacts": [{"name": "Choi Ha-eun", "relation": "granddaughter", "phone": "+821011112222"}],
    })  # fmt: skip
    assert response.status_code == 201, response.text
    token: str = response.json()["token"]
    return token


def test_the_page_and_its_files(gateway: Gateway) -> None:
    page = httpx.get(f"{gateway.http}/")
    assert page.status_code == 200 and page.headers["content-type"].startswith("text/html")
    assert '<script type="module" src="/web/js/app.js">' in page.text
    assert "default-src 'self'" in page.headers["content-security-policy"]
    for path in ("/web/js/app.js", "/web/js/pcm-worklet.js", "/web/css/app.css", "/web/i18n/ko.json"):
        response = httpx.get(f"{gateway.http}{path}")
        assert response.status_code == 200, path
        assert response.headers["x-content-type-options"] == "nosniff"
    assert httpx.get(f"{gateway.http}/web/../app.py").status_code == 404
    # The page is not part of the API's schema (the contract test covers the API only).
    assert "/" not in httpx.get(f"{gateway.http}/openapi.json").json()["paths"]


async def test_notices_and_deleting_a_false_alarms_clip(gateway: Gateway, sqlite_db: Database, tmp_path: Path) -> None:
    token = await asyncio.to_thread(_register, gateway)
    async with httpx.AsyncClient(base_url=gateway.http, headers={"Authorization": f"Bearer {token}"}) as http:
        async with connect(gateway.ws) as ws:
            await open_session(ws, token)
            await send_audio(ws, audio(3.0, loud=True) + audio(5.0))
            incident_id = (await until_type(ws, "incident"))[-1]["incident_id"]
            notices = (await http.get(f"/v1/incidents/{incident_id}/notices")).json()["notices"]
            assert [(n["contact"]["name"], n["event"]) for n in notices] == [("Choi Ha-eun", "detected")]
            pending = await http.delete(f"/v1/incidents/{incident_id}/clip")
            assert pending.status_code == 409 and pending.json()["detail"]["code"] == "not_cancelled"
            assert (await http.post(f"/v1/incidents/{incident_id}/cancel", json={"reason": "false alarm"})).status_code == 200
            await ws.send(json.dumps({"type": "stop"}))  # the clip is cut from what the ring holds
            await until_type(ws, "stopped")
        for _ in range(100):
            async with sqlite_db.session() as session:
                if await session.scalar(select(func.count()).select_from(IncidentClip)):
                    break
            await asyncio.sleep(0.1)

        other = await asyncio.to_thread(_register, gateway)
        stranger = await http.delete(f"/v1/incidents/{incident_id}/clip", headers={"Authorization": f"Bearer {other}"})
        assert stranger.status_code == 404
        assert (await http.get(f"/v1/incidents/{incident_id}/notices", headers={"Authorization": f"Bearer {other}"})).status_code == 404

        stored = [p for p in (tmp_path / "clips").rglob("*") if p.is_file()]
        assert len(stored) == 1
        deleted = await http.delete(f"/v1/incidents/{incident_id}/clip")
        assert deleted.status_code == 200, deleted.text
        assert not stored[0].exists()
        assert (await http.get(f"/v1/incidents/{incident_id}")).json()["clip"] is None
        again = await http.delete(f"/v1/incidents/{incident_id}/clip")
        assert again.status_code == 409 and again.json()["detail"]["code"] == "no_clip"
    async with sqlite_db.session() as session:
        audit = (await session.scalars(select(AuditEntry).where(AuditEntry.event == "clip_deleted"))).all()
    assert [(a.actor, a.detail["reason"]) for a in audit] == [("owner", "deleted_by_owner")]
