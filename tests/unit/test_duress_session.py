"""A cancel under duress inside a stream session (Starlette's in-process WebSocket client, real
SQLite, the fake classifier hearing loud audio as ``crime``): the session hears "cancelled" and
stops following, nothing of the report reaches it, and a detection while the report goes out
opens no countdown."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import torch
from sqlalchemy import update

from services.gateway.inference_client import WindowResult
from shared.db import Device
from shared.db.models import Incident
from shared.incidents.duress import hash_code
from shared.taxonomy import by_key
from tests.gateway_support import FIRE, FakeClassifier, audio, send_audio, session, stop
from tests.unit.test_session_incidents import Harness, detect, is_type, make_harness, receive_until

CRIME = by_key("crime").id
CODE = "quiet harbour"


class CrimeClassifier(FakeClassifier):
    """The fake model, hearing a loud window as crime instead of fire."""

    async def classify(self, windows: torch.Tensor) -> list[WindowResult]:
        results = await super().classify(windows)
        for result in results:
            result.scores[CRIME], result.scores[FIRE] = result.scores[FIRE], 0.0
        return results


@pytest.fixture
def harness(tmp_path: Path) -> Iterator[Harness]:
    made = make_harness(tmp_path, CrimeClassifier(), detector_refractory_s=0.0)
    with made.client:
        made.client.portal.call(set_code, made)  # type: ignore[union-attr]
        yield made


async def set_code(harness: Harness) -> None:
    async with harness.db.session() as session:
        await session.execute(update(Device).values(duress_code_hash=hash_code(CODE)))


def as_worker(harness: Harness, incident_id: str, state: str) -> None:
    """What the alerting worker writes, without publishing (as it does under duress)."""
    harness.set_state(incident_id, state)


def stored(harness: Harness, incident_id: str) -> Incident:
    async def read() -> Incident:
        async with harness.db.session() as session:
            return await session.get_one(Incident, uuid.UUID(incident_id))

    result: Incident = harness.client.portal.call(read)  # type: ignore[union-attr]
    return result


def test_the_session_hears_cancelled_and_nothing_of_the_report(harness: Harness) -> None:
    with session(harness.client) as ws:
        detection, opened = detect(ws)
        incident_id = detection["incident_id"]
        assert detection["class"] == "crime" and opened["detail"]["event"] == "opened"
        ws.send_json({"type": "cancel", "incident_id": incident_id, "reason": "false alarm", "code": "Quiet  Harbour"})
        answer = receive_until(ws, is_type("incident"))[-1]
        assert (answer["state"], answer["detail"]["outcome"]) == ("cancelled", "cancelled")
        assert stored(harness, incident_id).duress_at is not None
        # The report goes out while the person is still streaming: a detection now opens no
        # countdown (the report holds the device's one open incident) and tells nothing more.
        as_worker(harness, incident_id, "dispatching")
        send_audio(ws, audio(4.0) + audio(3.0, loud=True))
        again = receive_until(ws, is_type("detection"))[-1]
        assert again["incident_id"] == incident_id and "seconds_left" not in again
        as_worker(harness, incident_id, "dispatched")
        messages = stop(ws)
    told = [m for m in messages if m["type"] == "incident"]
    assert told == []  # neither the claim, nor the settled report, nor the held detection
    assert stored(harness, incident_id).detections == 1
    assert harness.incident(incident_id)["state"] == "cancelled"


def test_once_the_report_is_out_a_detection_opens_a_new_countdown(harness: Harness) -> None:
    with session(harness.client) as ws:
        detection, _ = detect(ws)
        ws.send_json({"type": "cancel", "incident_id": detection["incident_id"], "code": CODE})
        receive_until(ws, is_type("incident"))
        as_worker(harness, detection["incident_id"], "dispatched")
        later, opened = detect(ws, audio(4.0) + audio(3.0, loud=True))
        ws.send_json({"type": "cancel", "incident_id": later["incident_id"]})  # else the session follows it
        receive_until(ws, is_type("incident", incident_id=later["incident_id"], state="cancelled"))
        stop(ws)
    assert later["incident_id"] != detection["incident_id"] and later["seconds_left"] > 0
    assert opened["state"] == "pending" and opened["detail"]["event"] == "opened"


def test_a_wrong_code_cancels(harness: Harness) -> None:
    with session(harness.client) as ws:
        detection, _ = detect(ws)
        ws.send_json({"type": "cancel", "incident_id": detection["incident_id"], "code": "loud harbour"})
        answer: dict[str, Any] = receive_until(ws, is_type("incident"))[-1]
        stop(ws)
    assert answer["state"] == "cancelled"
    row = stored(harness, detection["incident_id"])
    assert row.state == "cancelled" and row.duress_at is None
