"""The countdown keeps listening, through every real piece: the inference service (mn04) and
the gateway under uvicorn, the alerting worker as a separate process on the embedded defaults
(SQLite file, filesystem broker) and ``hearo agency`` receiving over HTTP.

The countdown is 16 s instead of 60 and the policy is the default one, which is expressed as
shares of the countdown (fire: its alarm pattern confirmed and fire detected again → the report
at 50 % of it), so the shortened deadline is 8 s after the detection. The client streams live
(real time), as a microphone does, for as long as the countdown runs.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import httpx
import numpy as np
import pytest
from websockets.asyncio.client import ClientConnection, connect

from shared.incidents import EvidencePolicy
from tests.alerting_support import AgencyServer, WorkerSupervisor
from tests.gateway_support import pcm16, smoke_alarm
from tests.model_stack import model_stack

pytestmark = pytest.mark.slow

COUNTDOWN_S = 16.0
SHORTENED_S = 0.5 * COUNTDOWN_S  # the default fire rule's share of the countdown
RATE = 16000
FRAME_S = 0.1
FINAL = {"cancelled", "dispatched", "failed"}


@dataclass
class System:
    url: str
    http: str
    agency: AgencyServer
    workers: WorkerSupervisor

    def register(self) -> str:
        response = httpx.post(
            f"{self.http}/v1/devices",
            json={
                "profile": {"name": "Yoon Bok-nam", "birth_year": 1944},
                "consent_recording": True, "consent_location": True, "consent_share_profile": True,
            },
            timeout=10,
        )  # fmt: skip
        assert response.status_code == 201, response.text
        token: str = response.json()["token"]
        return token

    def report(self, incident_id: str, timeout_s: float = 30.0) -> dict[str, Any]:
        deadline = time.monotonic() + timeout_s
        while True:
            found = [r["payload"]["data"] for r in self.agency.reports() if r["payload"]["data"]["incident_id"] == incident_id]
            if found:
                assert len(found) == 1
                return found[0]
            assert time.monotonic() < deadline, f"no report for {incident_id}\n{self.workers.logs()}"
            time.sleep(0.1)


@pytest.fixture(scope="module")
def system(tmp_path_factory: pytest.TempPathFactory) -> Iterator[System]:
    with model_stack(tmp_path_factory.mktemp("countdown-evidence"), incident_countdown_s=COUNTDOWN_S,
                     evidence=EvidencePolicy(flush_s=1.0)) as stack:  # the default rules; a write per second of audio
        yield System(stack.url, stack.http, stack.agency, stack.workers)


def room(seconds: float, seed: int) -> np.ndarray:
    """Ordinary quiet room sound (about -40 dBFS), as between the alarm's beeps."""
    return (0.01 * np.random.default_rng(seed).standard_normal(round(RATE * seconds))).astype(np.float32)


async def live(ws: ClientConnection, audio: np.ndarray) -> None:
    """Send ``audio`` at real time, as a microphone would."""
    pcm, step, started = pcm16(audio), round(RATE * FRAME_S) * 2, time.monotonic()
    for n, i in enumerate(range(0, len(pcm), step)):
        await ws.send(pcm[i : i + step])
        await asyncio.sleep(max(0.0, started + (n + 1) * FRAME_S - time.monotonic()))


def settled(messages: list[dict[str, Any]]) -> bool:
    return bool(messages) and messages[-1]["type"] == "incident" and messages[-1]["state"] in FINAL


async def follow(
    system: System, audio: np.ndarray, done: Callable[[list[dict[str, Any]]], bool] = settled
) -> list[dict[str, Any]]:
    """Stream ``audio`` live on a new device; every message (but scores) until ``done`` says so:
    by default, until its incident is final."""
    ws = await connect(system.url, compression=None)
    await ws.send(json.dumps({"type": "start", "token": system.register(), "encoding": "pcm_s16le",
                              "sample_rate": RATE, "channels": 1}))  # fmt: skip
    assert json.loads(await ws.recv())["type"] == "ready"
    sender = asyncio.create_task(live(ws, audio))
    messages: list[dict[str, Any]] = []
    try:
        async with asyncio.timeout(len(audio) / RATE + 30):
            while not done(messages):
                message = json.loads(await ws.recv())
                if message["type"] != "scores":
                    messages.append(message)
    finally:
        sender.cancel()
        await ws.close()
    return messages


def seconds(later: str, earlier: str) -> float:
    return (datetime.fromisoformat(later) - datetime.fromisoformat(earlier)).total_seconds()


async def test_a_smoke_alarm_that_goes_on_is_growing_and_reported_before_the_full_countdown(system: System) -> None:
    messages = await follow(system, smoke_alarm(RATE, COUNTDOWN_S + 12.0, seed=4))
    (detection,) = [m for m in messages if m["type"] == "detection"]
    assert detection["class"] == "fire"
    incidents = [m for m in messages if m["type"] == "incident"]
    # The client's countdown followed the deadline that growing evidence brought forward.
    moved = [m for m in incidents if m["deadline_at"] != detection["deadline_at"] and m["state"] == "pending"]
    assert moved and moved[0]["evidence"] == "growing" and "fire" in moved[0]["detail"]["shortened"]
    assert incidents[-1]["state"] == "dispatched"

    report = system.report(detection["incident_id"])
    evidence = report["evidence"]
    assert evidence["mark"] == "growing" and evidence["alarm_patterns"] == ["fire"]
    assert evidence["renewals"]["fire"] >= 1 and evidence["classes_heard"][0] == "fire"
    assert evidence["shortened"] is not None and "50%" in evidence["shortened"]["reason"]
    assert seconds(report["deadline_at"], report["detected_at"]) == pytest.approx(SHORTENED_S, abs=0.01)
    took = seconds(report["reported_at"], report["detected_at"])
    assert SHORTENED_S <= took < COUNTDOWN_S - 3.0, took  # sooner than the full countdown, never before the rule
    # The whole countdown's scores came with it: from the detection (the alarm starts the stream,
    # so nothing is smoothed before it) until the report, one point per window.
    times = [p["t"] for p in report["score_timeline"] if p["class"] == "fire"]
    assert min(times) <= 0 and max(times) >= SHORTENED_S - 2.0 and len(times) >= 2 * (SHORTENED_S - 2.0)


async def test_a_short_alarm_then_room_sound_is_faded_and_reported_at_the_full_countdown(system: System) -> None:
    audio = np.concatenate([smoke_alarm(RATE, 4.0, seed=5), room(COUNTDOWN_S + 12.0, seed=6)])
    messages = await follow(system, audio)
    (detection,) = [m for m in messages if m["type"] == "detection"]
    assert detection["class"] == "fire"
    incidents = [m for m in messages if m["type"] == "incident"]
    assert any(m.get("evidence") == "faded" and m["state"] == "pending" for m in incidents)
    assert incidents[-1]["state"] == "dispatched"  # faded never cancels

    report = system.report(detection["incident_id"])
    evidence = report["evidence"]
    assert evidence["mark"] == "faded" and evidence["shortened"] is None and evidence["renewals"] == {}
    assert evidence["quiet_share"] >= 0.7
    assert seconds(report["deadline_at"], report["detected_at"]) == pytest.approx(COUNTDOWN_S, abs=0.01)
    assert seconds(report["reported_at"], report["detected_at"]) >= COUNTDOWN_S


async def test_the_alarm_heard_again_after_the_report_is_evidence_for_it_not_a_second_report(system: System) -> None:
    """The smoke alarm sounds again after the report went out (nobody reset it): the detection
    joins the report, the client is told it is the dispatched one, and 119 gets one report."""
    first_s, quiet_s = 6.0, 30.0  # the second onset comes after the detector's 30 s refractory period
    audio = np.concatenate([smoke_alarm(RATE, first_s, seed=7), room(quiet_s, seed=8),
                            smoke_alarm(RATE, 8.0, seed=9), room(3.0, seed=10)])  # fmt: skip
    reported_before = {r["payload"]["data"]["incident_id"] for r in system.agency.reports()}

    def told_after_the_second_detection(messages: list[dict[str, Any]]) -> bool:
        return len([m for m in messages if m["type"] == "detection"]) == 2 and messages[-1]["type"] == "incident"

    messages = await follow(system, audio, told_after_the_second_detection)
    first, again = [m for m in messages if m["type"] == "detection"]
    assert first["class"] == again["class"] == "fire"
    assert again["stream_time_s"] > first_s + quiet_s - 1.0
    assert again["incident_id"] == first["incident_id"] and again.get("seconds_left") is None  # no new countdown
    told = [m for m in messages if m["type"] == "incident"]
    finals = [m for m in told if m["state"] in FINAL]
    assert finals[0]["state"] == "dispatched" and finals[0] is not told[-1]  # reported before the alarm came back
    assert told[-1]["state"] == "dispatched" and told[-1]["detail"] == {"event": "evidence", "class": "fire", "detections": 2}
    system.report(first["incident_id"])  # exactly one report of it
    new = [r["payload"]["data"]["incident_id"] for r in system.agency.reports()
           if r["payload"]["data"]["incident_id"] not in reported_before]  # fmt: skip
    assert new == [first["incident_id"]]
