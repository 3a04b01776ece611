"""From a streamed alarm to a report in the agency's hands, with every real piece: the
inference service (mn04) and the gateway under uvicorn, the alerting worker as a separate
process on the embedded defaults (SQLite file, filesystem broker, local clips served by the
gateway's signed links) and ``hearo agency`` counting what arrives over HTTP.

The countdown is 3 s instead of 60 (``incident_countdown_s``), and the worker sweeps fast.
Each test uses its own device (a device has at most one open incident).
"""

from __future__ import annotations

import asyncio
import hashlib
import io
import json
import time
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

import httpx
import pytest
import soundfile
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed

from hearo.incident_client import EXIT_REFUSED, IncidentApiError, IncidentClient, cancel_command
from hearo.stream_client import EXIT_OK, run_stream
from tests.alerting_support import AgencyServer, WorkerSupervisor
from tests.gateway_support import pcm16, smoke_alarm
from tests.model_stack import model_stack

pytestmark = pytest.mark.slow

COUNTDOWN_S = 3.0
CLIP_SECRET = "incident-flow-clip-secret"
ALARM = pcm16(smoke_alarm(16000, 12.0, seed=4))


@dataclass
class System:
    url: str  # the gateway's /v1/stream
    http: str
    agency: AgencyServer
    workers: WorkerSupervisor

    def register(self) -> str:
        """A new device (consenting to location, with a registered one); its token."""
        response = httpx.post(
            f"{self.http}/v1/devices",
            json={
                "profile": {"name": "Yoon Bok-nam", "birth_year": 1944},
                "consent_recording": True, "consent_location": True, "consent_share_profile": True,
                "location": {"latitude": 37.5665, "longitude": 126.978, "accuracy_m": 30},
            },
            timeout=10,
        )  # fmt: skip
        assert response.status_code == 201, response.text
        token: str = response.json()["token"]
        return token

    def reports(self, incident_id: str) -> list[dict[str, Any]]:
        return [r["payload"]["data"] for r in self.agency.reports() if r["payload"]["data"]["incident_id"] == incident_id]

    def wait_for_report(self, incident_id: str, timeout_s: float = 20.0) -> dict[str, Any]:
        deadline = time.monotonic() + timeout_s
        while not (reports := self.reports(incident_id)):
            assert time.monotonic() < deadline, f"no report for {incident_id}\n{self.workers.logs()}"
            time.sleep(0.1)
        time.sleep(1.0)  # a duplicate would arrive within the worker's retry timings
        assert len(self.reports(incident_id)) == 1
        return reports[0]


@pytest.fixture(scope="module")
def system(tmp_path_factory: pytest.TempPathFactory) -> Iterator[System]:
    # The clip wait lets a report due right after the stream ends still carry a ready clip.
    with model_stack(tmp_path_factory.mktemp("incident-flow"), clip_secret=CLIP_SECRET, worker_timings={"clip_wait_s": "3"},
                     max_stream_speed=20.0, incident_countdown_s=COUNTDOWN_S) as stack:
        yield System(stack.url, stack.http, stack.agency, stack.workers)


async def open_stream(system: System, token: str) -> ClientConnection:
    ws = await connect(system.url, compression=None)
    await ws.send(json.dumps({"type": "start", "token": token, "encoding": "pcm_s16le", "sample_rate": 16000,
                              "channels": 1, "location": {"lat": 37.55, "lon": 126.99, "accuracy_m": 8}}))  # fmt: skip
    assert json.loads(await ws.recv())["type"] == "ready"
    return ws


async def send_alarm(ws: ClientConnection) -> None:
    for i in range(0, len(ALARM), 3200):
        await ws.send(ALARM[i : i + 3200])


async def next_of(ws: ClientConnection, kind: str) -> dict[str, Any]:
    async with asyncio.timeout(30):
        while True:
            message: dict[str, Any] = json.loads(await ws.recv())
            if message["type"] == kind:
                return message


def test_no_cancel_is_reported_once_with_a_playable_clip(system: System, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """The CLI streams the alarm and, by default, stays to see the report go out."""
    path = tmp_path / "alarm.wav"
    soundfile.write(path, smoke_alarm(16000, 12.0, seed=4), 16000)
    code = run_stream(source=path, mic=False, url=system.url, token=system.register(), fast=True, json_output=True)
    lines = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert code == EXIT_OK
    (detection,) = [m for m in lines if m["type"] == "detection"]
    assert detection["class"] == "fire" and 0 < detection["seconds_left"] <= COUNTDOWN_S
    incident_id = detection["incident_id"]
    states = [m["state"] for m in lines if m["type"] == "incident"]
    assert states[0] == "pending" and states[-1] == "dispatched", states
    assert lines[-1]["type"] == "incident"  # the gateway closed once the outcome was told

    report = system.wait_for_report(incident_id)
    assert report["class"]["key"] == "fire" and report["agency"]["id"] == "119"
    assert report["location"]["source"] == "registered"  # the CLI sends no position
    reported = datetime.fromisoformat(report["reported_at"])
    # Not before the deadline, the last one the client was told (growing evidence may bring it forward).
    deadlines = [m["deadline_at"] for m in lines if m["type"] == "incident" and m["state"] == "pending" and m.get("deadline_at")]
    deadline = min([detection["deadline_at"], *deadlines], key=datetime.fromisoformat)
    assert (reported - datetime.fromisoformat(deadline)).total_seconds() >= 0
    clip = report["clip"]
    assert clip["status"] == "ready" and clip["url"].startswith(f"{system.http}/v1/clips/")
    fetched = httpx.get(clip["url"], timeout=10)
    assert fetched.status_code == 200 and fetched.headers["content-type"] == "audio/flac"
    assert hashlib.sha256(fetched.content).hexdigest() == clip["sha256"]
    samples, rate = soundfile.read(io.BytesIO(fetched.content))
    # 10 s before the detection (the stream's start, here) to the end of the 12 s stream.
    assert rate == 16000 and len(samples) / rate == pytest.approx(min(12.0, detection["stream_time_s"] + 20), abs=0.01)


async def test_cancel_over_the_socket_means_nothing_is_ever_sent(system: System) -> None:
    ws = await open_stream(system, system.register())
    sender = asyncio.create_task(send_alarm(ws))
    detection = await next_of(ws, "detection")
    await ws.send(json.dumps({"type": "cancel", "incident_id": detection["incident_id"], "reason": "toast"}))
    answer = await next_of(ws, "incident")
    while answer["detail"]["event"] != "cancel":  # the "opened" message comes first
        answer = await next_of(ws, "incident")
    assert (answer["state"], answer["detail"]["outcome"], answer["detail"]["reason"]) == ("cancelled", "cancelled", "toast")
    await sender
    await ws.send(json.dumps({"type": "stop"}))
    stopped = await next_of(ws, "stopped")
    assert stopped["detections"] == 1
    with pytest.raises(ConnectionClosed):  # resolved: the gateway closes at once
        await next_of(ws, "incident")
    assert ws.close_code == 1000
    deadline = datetime.fromisoformat(detection["deadline_at"]).timestamp()
    await asyncio.sleep(max(0.0, deadline - time.time()) + 3.0)  # past the deadline and a few sweeps
    assert system.reports(detection["incident_id"]) == []


async def test_rest_cancel_of_another_devices_incident_is_not_found(system: System, capsys: pytest.CaptureFixture[str]) -> None:
    owner, stranger = system.register(), system.register()
    ws = await open_stream(system, owner)
    sender = asyncio.create_task(send_alarm(ws))
    incident_id = (await next_of(ws, "detection"))["incident_id"]
    with IncidentClient(system.http, stranger) as incidents, pytest.raises(IncidentApiError) as refused:
        await asyncio.to_thread(incidents.cancel, incident_id)
    assert (refused.value.status, refused.value.code) == (404, "unknown_incident")
    assert await asyncio.to_thread(cancel_command, system.http, stranger, incident_id, None) == EXIT_REFUSED
    assert "no such incident" in capsys.readouterr().err
    # The owner can, over REST, while the stream goes on; the session is told.
    with IncidentClient(system.http, owner) as incidents:
        cancelled = await asyncio.to_thread(incidents.cancel, incident_id, "not an emergency")
    assert cancelled["outcome"] == "cancelled"
    update = await next_of(ws, "incident")
    while update["state"] != "cancelled":
        update = await next_of(ws, "incident")
    assert update["detail"] == {"event": "update", "reason": "not an emergency"}
    await sender
    await ws.close()
    await asyncio.sleep(COUNTDOWN_S + 2.0)
    assert system.reports(incident_id) == []


async def test_a_disconnect_during_the_countdown_is_still_reported(system: System) -> None:
    ws = await open_stream(system, system.register())
    sender = asyncio.create_task(send_alarm(ws))
    detection = await next_of(ws, "detection")
    sender.cancel()
    await ws.close()  # mid-stream, mid-countdown: the person could not react
    report = await asyncio.to_thread(system.wait_for_report, detection["incident_id"])
    assert report["location"]["source"] == "session" and report["location"]["accuracy_m"] == 8.0
    assert report["clip"]["status"] == "ready"  # cut from what the gateway held when the client left
    assert httpx.get(report["clip"]["url"], timeout=10).status_code == 200
