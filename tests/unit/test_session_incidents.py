"""A session's incidents over Starlette's in-process WebSocket client: a real SQLite database,
the in-process incident updates, a local clip store and the REST routes, with the fake
classifier of ``tests/gateway_support.py``. No alerting worker: a test plays its part by
writing the states it would write."""

from __future__ import annotations

import io
import time
import uuid
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import soundfile
from fastapi import FastAPI, WebSocket
from sqlalchemy import update
from starlette.testclient import TestClient

from services.gateway import incidents_api
from services.gateway.auth import authenticate_token, hash_token
from services.gateway.session_incidents import IncidentBackend
from services.gateway.session_registry import SessionRegistry
from services.gateway.sessions import serve_stream
from services.gateway.settings import GatewaySettings
from shared.clips import LocalClipStore
from shared.db import Database, Device, upgrade_database
from shared.db.clock import db_now
from shared.db.models import Incident
from shared.features.spec import EFFICIENTAT_MEL
from shared.incident_events import LocalIncidentEvents
from shared.incident_watcher import IncidentWatcher
from tests.gateway_support import (
    TOKEN,
    FakeClassifier,
    audio,
    expect_close,
    receive_until,
    send_audio,
    session,
    stop,
)

SILENT_TOKEN = "no-location-token"  # a device that did not consent to location
QUIET = 0.001 * 32767


@dataclass
class Harness:
    client: TestClient
    db: Database
    tmp_path: Path

    def incident(self, incident_id: str, token: str = TOKEN) -> dict[str, Any]:
        response = self.client.get(f"/v1/incidents/{incident_id}", headers={"Authorization": f"Bearer {token}"})
        assert response.status_code == 200, response.text
        body: dict[str, Any] = response.json()
        return body

    def wait_for_clip(self, incident_id: str) -> dict[str, Any]:
        deadline = time.monotonic() + 10
        while (clip := self.incident(incident_id)["clip"]) is None:
            assert time.monotonic() < deadline, "the clip was not archived"
            time.sleep(0.05)
        return clip

    def set_state(self, incident_id: str, state: str) -> None:
        """Do what the alerting worker does to a claimed incident."""
        async def write() -> None:
            async with self.db.session() as session:
                await session.execute(
                    update(Incident).where(Incident.id == uuid.UUID(incident_id)).values(state=state, state_changed_at=db_now())
                )

        self.client.portal.call(write)  # type: ignore[union-attr]


@pytest.fixture
def classifier() -> FakeClassifier:
    return FakeClassifier()


def make_harness(tmp_path: Path, classifier: FakeClassifier, **overrides: Any) -> Harness:
    url = f"sqlite+aiosqlite:///{tmp_path / 'hearo.db'}"
    upgrade_database(url)
    settings = GatewaySettings(**{"database_url": url, "max_stream_speed": 1000.0, **overrides})
    db = Database(url)

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        async with db.session() as s:
            for token, consent in ((TOKEN, True), (SILENT_TOKEN, False)):
                s.add(Device(
                    token_hash=hash_token(token), owner_name="Park", birth_year=1940, consent_recording=True,
                    consent_location=consent, consent_share_profile=True,
                    latitude=37.0 if consent else None, longitude=127.0 if consent else None,
                ))  # fmt: skip
        events = LocalIncidentEvents()
        watcher = IncidentWatcher(db, events, poll_interval_s=0.05)
        await watcher.start()
        store = LocalClipStore(tmp_path / "clips", "clip-secret", "http://testserver")
        backend = IncidentBackend(db, events, watcher, store, countdown_s=settings.incident_countdown_s)

        async def authenticate(token: str) -> Device | None:
            return await authenticate_token(db, token)

        app.state.db, app.state.incident_events, app.state.clip_store = db, events, store
        app.state.sessions = SessionRegistry(settings, classifier, authenticate, EFFICIENTAT_MEL, backend)
        yield
        await backend.drain(5)
        await watcher.close()
        await db.dispose()

    app = FastAPI(lifespan=lifespan)
    app.include_router(incidents_api.router)

    @app.websocket("/v1/stream")
    async def stream(websocket: WebSocket) -> None:
        await serve_stream(app.state.sessions, websocket)

    return Harness(TestClient(app), db, tmp_path)


@pytest.fixture
def harness(tmp_path: Path, classifier: FakeClassifier) -> Iterator[Harness]:
    made = make_harness(tmp_path, classifier)
    with made.client:
        yield made


def is_type(kind: str, **fields: Any) -> Any:
    return lambda m: m["type"] == kind and all(m.get(k) == v for k, v in fields.items())


def detect(ws: Any, pcm: bytes | None = None) -> tuple[dict[str, Any], dict[str, Any]]:
    """Stream an alarm; the detection and the ``incident`` message that follows it."""
    send_audio(ws, pcm if pcm is not None else audio(1.0) + audio(4.0, loud=True))
    detection = receive_until(ws, is_type("detection"))[-1]
    incident = receive_until(ws, is_type("incident"))[-1]
    return detection, incident


def test_a_detection_opens_an_incident_with_its_countdown(harness: Harness) -> None:
    with session(harness.client) as ws:
        detection, incident = detect(ws)
        ws.send_json({"type": "cancel", "incident_id": detection["incident_id"]})
        stop(ws)
    assert detection["class"] == "fire" and uuid.UUID(detection["incident_id"])
    assert 59.0 < detection["seconds_left"] <= 60.0
    deadline = datetime.fromisoformat(detection["deadline_at"])
    assert deadline.tzinfo is not None
    assert incident == {
        "type": "incident", "incident_id": detection["incident_id"], "state": "pending",
        "deadline_at": detection["deadline_at"], "seconds_left": incident["seconds_left"],
        "evidence": "steady", "detail": {"event": "opened", "class": "fire"}, "kind": "emergency",
    }  # fmt: skip
    stored = harness.incident(detection["incident_id"])
    assert stored["confidence"] == pytest.approx(detection["confidence"])
    # The timeline: the smoothed fire score of the windows up to the detection, the last at 0 s.
    timeline = stored["score_timeline"]
    assert timeline[-1]["t"] == 0.0 and timeline[-1]["score"] == pytest.approx(detection["confidence"], abs=1e-3)
    assert all(point["class"] == "fire" and point["t"] <= 0 for point in timeline)


def test_cancel_and_confirm_are_answered_truthfully(harness: Harness) -> None:
    with session(harness.client) as ws:
        detection, _ = detect(ws)
        incident_id = detection["incident_id"]
        for bad in ("not-a-uuid", str(uuid.uuid4())):
            ws.send_json({"type": "cancel", "incident_id": bad})
            # Late ``scores`` of the detecting audio may still come first.
            assert receive_until(ws, is_type("error"))[-1]["code"] == "unknown_incident"
        replies = []
        for message in (
            {"type": "cancel", "incident_id": incident_id, "reason": "I burnt the toast"},
            {"type": "cancel", "incident_id": incident_id},
            {"type": "confirm", "incident_id": incident_id},
        ):
            ws.send_json(message)
            replies.append(receive_until(ws, is_type("incident"))[-1])
        messages = stop(ws)  # resolved: the close follows ``stopped`` at once
    assert [(r["state"], r["detail"]["outcome"]) for r in replies] == [
        ("cancelled", "cancelled"), ("cancelled", "already_cancelled"), ("cancelled", "cancelled")
    ]
    assert replies[0]["detail"]["reason"] == "I burnt the toast" and "seconds_left" not in replies[0]
    assert not [m for m in messages if m["type"] == "incident"]  # the published update is not told twice
    assert harness.incident(incident_id)["state"] == "cancelled"


def test_another_devices_incident_is_unknown(harness: Harness) -> None:
    with session(harness.client) as ws:
        detection, _ = detect(ws)
        with session(harness.client, token=SILENT_TOKEN) as other:
            other.send_json({"type": "cancel", "incident_id": detection["incident_id"]})
            assert other.receive_json()["code"] == "unknown_incident"
            stop(other)
        ws.send_json({"type": "cancel", "incident_id": detection["incident_id"]})
        stop(ws)


def test_the_outcome_is_pushed_and_a_late_cancel_is_told_it_was_reported(harness: Harness) -> None:
    with session(harness.client) as ws:
        detection, _ = detect(ws)
        incident_id = detection["incident_id"]
        ws.send_json({"type": "confirm", "incident_id": incident_id})
        confirmed = receive_until(ws, is_type("incident"))[-1]
        assert (confirmed["state"], confirmed["detail"]["outcome"], confirmed["seconds_left"]) == ("pending", "confirmed", 0.0)
        harness.set_state(incident_id, "dispatching")
        assert receive_until(ws, is_type("incident"))[-1]["state"] == "dispatching"
        ws.send_json({"type": "cancel", "incident_id": incident_id})
        late = receive_until(ws, is_type("incident"))[-1]
        assert (late["state"], late["detail"]["outcome"]) == ("dispatching", "already_reported")
        harness.set_state(incident_id, "dispatched")
        pushed = receive_until(ws, is_type("incident"))[-1]
        assert (pushed["state"], pushed["detail"]["event"]) == ("dispatched", "update")
        stop(ws)


def test_after_stop_the_session_stays_until_the_incident_is_resolved(harness: Harness) -> None:
    with session(harness.client) as ws:
        detection, _ = detect(ws)
        ws.send_json({"type": "stop"})
        assert receive_until(ws, is_type("stopped"))[-1]["detections"] == 1
        ws.send_bytes(audio(0.1))  # ignored, and said so
        assert ws.receive_json()["code"] == "unexpected_message"
        ws.send_json({"type": "cancel", "incident_id": detection["incident_id"], "reason": "test"})
        messages = expect_close(ws, 1000)
    assert [(m["type"], m.get("state")) for m in messages] == [("incident", "cancelled")]


def test_following_after_stop_is_bounded(tmp_path: Path, classifier: FakeClassifier) -> None:
    made = make_harness(tmp_path, classifier, incident_follow_s=0.3)
    with made.client, session(made.client) as ws:
        detect(ws)
        ws.send_json({"type": "stop"})
        receive_until(ws, is_type("stopped"))
        expect_close(ws, 1000)


def test_a_second_event_is_evidence_without_a_new_countdown(tmp_path: Path, classifier: FakeClassifier) -> None:
    made = make_harness(tmp_path, classifier, detector_refractory_s=0.0)
    with made.client:
        with session(made.client) as ws:
            first, _ = detect(ws)
            second, evidence = detect(ws, audio(4.0) + audio(4.0, loud=True))
            ws.send_json({"type": "cancel", "incident_id": first["incident_id"]})
            stop(ws)
        assert made.incident(first["incident_id"])["detections"] == 2
    assert second["incident_id"] == first["incident_id"]
    assert "deadline_at" not in second and "seconds_left" not in second
    assert evidence["state"] == "pending" and evidence["detail"] == {"event": "evidence", "class": "fire", "detections": 2}


def test_the_clip_is_archived_20_s_after_the_detection_while_streaming(harness: Harness) -> None:
    with session(harness.client) as ws:
        detection, _ = detect(ws, audio(12.0) + audio(8.0, loud=True) + audio(4.0))
        send_audio(ws, audio(12.0))  # the stream goes on past detection + 20 s
        clip = harness.wait_for_clip(detection["incident_id"])  # before any stop
        ws.send_json({"type": "cancel", "incident_id": detection["incident_id"]})
        stop(ws)
    assert clip["duration_s"] == pytest.approx(30.0) and clip["content_type"] == "audio/flac"
    response = harness.client.get(clip["url"])
    assert response.status_code == 200
    samples, rate = soundfile.read(io.BytesIO(response.content), dtype="int16")
    assert rate == 16000 and len(samples) == 30 * 16000
    # 10 s before the detection to 20 s after: the tone (12-20 s of the stream) starts a
    # little under 10 s into the clip, since the detection follows its onset.
    start_s = detection["stream_time_s"] - 10.0
    loud = np.abs(samples) > 4 * QUIET
    onset_s = np.argmax(loud) / 16000
    assert onset_s == pytest.approx(12.0 - start_s, abs=0.05)
    assert not loud[round((20.0 - start_s + 0.1) * 16000) :].any()


def test_a_disconnect_is_not_a_cancel_and_the_clip_is_still_archived(harness: Harness) -> None:
    with session(harness.client) as ws:
        detection, _ = detect(ws)
    # The client left mid countdown, without ``stop``.
    clip = harness.wait_for_clip(detection["incident_id"])
    incident = harness.incident(detection["incident_id"])
    assert incident["state"] == "pending" and incident["cancel_reason"] is None
    assert clip["duration_s"] == pytest.approx(5.0, abs=0.1)  # all the audio there was


def test_an_alarm_just_before_a_disconnect_opens_its_incident_from_the_end(harness: Harness) -> None:
    """The phone drops right after the alarm: the session judges the end of the stream anyway,
    and the incident that opens counts down as any other. Leaving cancels nothing."""
    with session(harness.client) as ws:
        # 4.2 s quiet, 0.6 s loud: one window heard it before the end, too few to decide.
        send_audio(ws, audio(4.2) + audio(0.6, loud=True))
        ws.close()  # the disconnect, while the session runs on (as under uvicorn)
        deadline = time.monotonic() + 10
        headers = {"Authorization": f"Bearer {TOKEN}"}
        while not (found := harness.client.get("/v1/incidents", headers=headers).json()["incidents"]):
            assert time.monotonic() < deadline, "the end of the stream opened no incident"
            time.sleep(0.05)
    incident = harness.incident(found[0]["incident_id"])
    assert (incident["class"], incident["state"], incident["cancel_reason"]) == ("fire", "pending", None)
    countdown = datetime.fromisoformat(incident["deadline_at"]) - datetime.fromisoformat(incident["detected_at"])
    assert countdown.total_seconds() == pytest.approx(60.0, abs=1.0)
    # The clip is the audio heard, without the silence that ended it for the detector.
    assert harness.wait_for_clip(incident["incident_id"])["duration_s"] == pytest.approx(4.8, abs=0.05)


def test_the_sessions_location_goes_to_the_incident_with_consent_only(harness: Harness) -> None:
    with session(harness.client, location={"lat": 37.1, "lon": 127.1, "accuracy_m": 40}) as ws:
        ws.send_json({"type": "location", "lat": 37.5665, "lon": 126.978, "accuracy_m": 12})
        detection, _ = detect(ws)
        ws.send_json({"type": "cancel", "incident_id": detection["incident_id"]})
        stop(ws)
    assert harness.incident(detection["incident_id"])["location"] == {
        "latitude": 37.5665, "longitude": 126.978, "accuracy_m": 12.0
    }
    with session(harness.client, token=SILENT_TOKEN, location={"lat": 37.1, "lon": 127.1}) as ws:
        assert ws.receive_json()["code"] == "location_not_consented"
        detection, _ = detect(ws)
        ws.send_json({"type": "cancel", "incident_id": detection["incident_id"]})
        stop(ws)
    assert harness.incident(detection["incident_id"], SILENT_TOKEN)["location"] is None
