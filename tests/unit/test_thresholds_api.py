"""The cancel's kind over REST, and the owner's thresholds, undo and summary routes, on SQLite
through ASGI."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest
from fastapi import FastAPI
from sqlalchemy import update

from services.gateway import incidents_api, privacy_api, thresholds_api
from services.gateway.auth import issue_token
from services.gateway.device_thresholds import DeviceThresholds
from shared.clips import LocalClipStore
from shared.db import Database, Device
from shared.detector import DetectorConfig
from shared.incident_events import LocalIncidentEvents
from shared.incidents import open_incident
from shared.incidents.threshold_learning import LearningPolicy
from shared.pubsub import LocalChannel
from tests.alerting_support import make_device

BEEP = [1.0, 0.5, 0.0, -0.5, -1.0, 0.0]
BASE = DetectorConfig.build(0.5).thresholds


class Client:
    def __init__(self, http: httpx.AsyncClient, db: Database) -> None:
        self.http, self.db = http, db

    async def device(self) -> tuple[uuid.UUID, dict[str, str]]:
        device_id = await make_device(self.db)
        token, token_hash = issue_token()
        async with self.db.session() as session:
            await session.execute(update(Device).where(Device.id == device_id).values(token_hash=token_hash))
        return device_id, {"Authorization": f"Bearer {token}"}

    async def false_alarm(self, device: uuid.UUID, auth: dict[str, str], class_key: str = "fire") -> dict[str, object]:
        opened = await open_incident(self.db, device_id=device, class_key=class_key, confidence=0.6, sound_signature=BEEP)
        response = await self.http.post(
            f"/v1/incidents/{opened.incident.id}/cancel", json={"reason": "the microwave", "kind": "false_alarm"},
            headers=auth,
        )
        assert response.status_code == 200, response.text
        incident: dict[str, object] = response.json()["incident"]
        return incident

    async def fire(self, auth: dict[str, str]) -> dict[str, object]:
        response = await self.http.get("/v1/devices/me/thresholds", headers=auth)
        assert response.status_code == 200, response.text
        fire: dict[str, object] = next(c for c in response.json()["classes"] if c["class"] == "fire")
        return fire


@pytest.fixture
async def client(sqlite_db: Database, tmp_path: Path) -> AsyncIterator[Client]:
    app = FastAPI()
    app.include_router(incidents_api.router)
    app.include_router(thresholds_api.router)
    app.include_router(privacy_api.router)
    app.state.db, app.state.incident_events = sqlite_db, LocalIncidentEvents()
    app.state.clip_store = LocalClipStore(tmp_path, "clip-secret", "http://gw")
    app.state.device_thresholds = DeviceThresholds(sqlite_db, LearningPolicy(), lambda: BASE, LocalChannel())
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://gw") as http:
        yield Client(http, sqlite_db)


async def test_the_cancel_keeps_its_kind(client: Client) -> None:
    device, auth = await client.device()
    incident = await client.false_alarm(device, auth)
    assert (incident["cancel_kind"], incident["cancel_reason"]) == ("false_alarm", "the microwave")
    listed = (await client.http.get("/v1/incidents", headers=auth)).json()["incidents"]
    assert listed[0]["cancel_kind"] == "false_alarm"
    opened = await open_incident(client.db, device_id=device, class_key="fire", confidence=0.6)
    bad = await client.http.post(f"/v1/incidents/{opened.incident.id}/cancel", json={"kind": "bored"}, headers=auth)
    assert bad.status_code == 422


async def test_five_false_alarm_cancels_show_in_the_settings_and_undo_restores(client: Client) -> None:
    device, auth = await client.device()
    assert (await client.fire(auth))["current"] == 0.5
    for _ in range(5):
        await client.false_alarm(device, auth)
    fire = await client.fire(auth)
    assert (fire["base"], fire["current"], fire["ceiling"]) == (0.5, 0.55, 0.6)
    adjustments = fire["adjustments"]
    assert isinstance(adjustments, list) and len(adjustments) == 1
    adjustment_id = adjustments[0]["id"]

    other_device, other_auth = await client.device()
    assert (await client.http.post(f"/v1/devices/me/thresholds/{adjustment_id}/undo", headers=other_auth)).status_code == 404
    undone = await client.http.post(f"/v1/devices/me/thresholds/{adjustment_id}/undo", headers=auth)
    assert undone.status_code == 200
    assert [a["id"] for a in undone.json()["undone"]] == [adjustment_id]
    assert next(c for c in undone.json()["thresholds"]["classes"] if c["class"] == "fire")["current"] == 0.5
    again = await client.http.post(f"/v1/devices/me/thresholds/{adjustment_id}/undo", headers=auth)
    assert again.status_code == 200 and again.json()["undone"] == []
    fire = await client.fire(auth)
    assert fire["current"] == 0.5 and fire["adjustments"][0]["undone_at"] is not None  # type: ignore[index]
    assert (await client.http.post("/v1/devices/me/thresholds/0/undo", headers=auth)).status_code == 422
    assert (await client.http.get("/v1/devices/me/thresholds")).status_code == 401


async def test_the_summary_of_the_week_and_of_a_chosen_period(client: Client) -> None:
    device, auth = await client.device()
    for _ in range(5):
        await client.false_alarm(device, auth)
    week = await client.http.get("/v1/devices/me/summary", headers=auth)
    assert week.status_code == 200, week.text
    body = week.json()
    assert body["heard"]["incidents"] == 5 and body["cancelled"]["by_kind"]["false_alarm"] == 5
    assert [c["threshold_to"] for c in body["threshold_changes"]] == [0.55]
    assert "5 similar false alarms" in body["text"]["en"]
    past = await client.http.get(
        "/v1/devices/me/summary", params={"since": "2020-01-01T00:00:00+09:00", "until": "2020-01-08T00:00:00+09:00"},
        headers=auth,
    )
    assert past.status_code == 200 and past.json()["heard"]["incidents"] == 0
    assert "no emergency sound" in past.json()["text"]["en"]
    backwards = await client.http.get(
        "/v1/devices/me/summary", params={"since": "2020-01-08T00:00:00+09:00", "until": "2020-01-01T00:00:00+09:00"},
        headers=auth,
    )
    assert backwards.status_code == 400 and backwards.json()["detail"]["code"] == "bad_period"
    naive = await client.http.get("/v1/devices/me/summary", params={"since": "2020-01-01T00:00:00"}, headers=auth)
    assert naive.status_code == 422


async def test_the_export_holds_the_signatures_and_every_adjustment(client: Client) -> None:
    device, auth = await client.device()
    for _ in range(5):
        await client.false_alarm(device, auth)
    adjustment_id = (await client.fire(auth))["adjustments"][0]["id"]  # type: ignore[index]
    await client.http.post(f"/v1/devices/me/thresholds/{adjustment_id}/undo", headers=auth)
    exported = (await client.http.get("/v1/devices/me/export", headers=auth)).json()
    assert [i["sound_signature"] for i in exported["incidents"]] == [BEEP] * 5
    (adjustment,) = exported["threshold_adjustments"]
    assert adjustment["id"] == adjustment_id and adjustment["undone_at"] is not None
    assert [e["event"] for e in exported["incidents"][-1]["audit"]][-2:] == ["threshold_raised", "threshold_undone"]
