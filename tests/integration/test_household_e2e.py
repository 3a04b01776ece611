"""Two household devices corroborate, through every real piece: the inference service (mn04) and
the gateway under uvicorn, the alerting worker as a separate process (SQLite file, filesystem
broker) and ``hearo agency`` receiving over HTTP (tests/model_stack.py).

The devices register, make a household over REST (one creates it, the other joins with its
code) and say where they listen (kitchen, bedroom). Both stream live, at real time, at the same
moment, as two microphones of one home do:

* a smoke alarm (the synthesised temporal-three pattern) heard by both, 6 dB quieter in the
  bedroom, after some quiet room sound: the kitchen's incident names the bedroom, and the
  agency's report says "heard in the kitchen and the bedroom";
* a smoke alarm in the kitchen while the bedroom hears only quiet room sound: "only this
  device heard it" reaches the kitchen device's client.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import dataclass
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
RATE = 16000
FRAME_S = 0.1
QUIET_S = 8.0  # room sound before the alarm: each device's usual level
FINAL = {"cancelled", "dispatched", "failed"}


@dataclass
class System:
    url: str
    http: str
    agency: AgencyServer
    workers: WorkerSupervisor

    def device(self, name: str, room: str) -> str:
        body = {
            "profile": {"name": name, "birth_year": 1950},
            "consent_recording": True, "consent_location": False, "consent_share_profile": True,
        }  # fmt: skip
        response = httpx.post(f"{self.http}/v1/devices", json=body, timeout=10)
        assert response.status_code == 201, response.text
        token: str = response.json()["token"]
        patched = httpx.patch(f"{self.http}/v1/devices/me", json={"room": room}, headers=_auth(token), timeout=10)
        assert patched.status_code == 200, patched.text
        return token

    def household(self, first: str, *others: str) -> None:
        created = httpx.post(f"{self.http}/v1/households", json={"name": "Yoon home"}, headers=_auth(first), timeout=10)
        assert created.status_code == 201, created.text
        for token in others:
            joined = httpx.post(
                f"{self.http}/v1/households/join", json={"join_code": created.json()["join_code"]},
                headers=_auth(token), timeout=10,
            )  # fmt: skip
            assert joined.status_code == 200, joined.text

    def report(self, incident_id: str, timeout_s: float = 30.0) -> dict[str, Any]:
        deadline = time.monotonic() + timeout_s
        while True:
            found = [r["payload"]["data"] for r in self.agency.reports() if r["payload"]["data"]["incident_id"] == incident_id]
            if found:
                return found[0]
            assert time.monotonic() < deadline, f"no report for {incident_id}\n{self.workers.logs()}"
            time.sleep(0.1)


def _auth(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


@pytest.fixture(scope="module")
def system(tmp_path_factory: pytest.TempPathFactory) -> Iterator[System]:
    with model_stack(tmp_path_factory.mktemp("household"), incident_countdown_s=COUNTDOWN_S,
                     evidence=EvidencePolicy(flush_s=1.0)) as stack:  # fmt: skip
        yield System(stack.url, stack.http, stack.agency, stack.workers)


def room(seconds: float, seed: int) -> np.ndarray:
    """Ordinary quiet room sound (about -40 dBFS)."""
    return (0.01 * np.random.default_rng(seed).standard_normal(round(RATE * seconds))).astype(np.float32)


async def live(ws: ClientConnection, audio: np.ndarray) -> None:
    """Send ``audio`` at real time, as a microphone would, then keep sending room sound."""
    pcm, step, started = pcm16(audio), round(RATE * FRAME_S) * 2, time.monotonic()
    n = 0
    while True:
        chunk = pcm[n * step : (n + 1) * step] or pcm16(room(FRAME_S, seed=n))
        await ws.send(chunk)
        n += 1
        await asyncio.sleep(max(0.0, started + n * FRAME_S - time.monotonic()))


Done = Callable[[ClientConnection, list[dict[str, Any]]], Awaitable[bool]]


async def listen(system: System, token: str, audio: np.ndarray, done: Done, for_s: float) -> list[dict[str, Any]]:
    """Stream ``audio`` live; every message (but scores) until ``done`` says so or ``for_s`` passes."""
    messages: list[dict[str, Any]] = []
    async with connect(system.url, compression=None) as ws:
        await ws.send(json.dumps({"type": "start", "token": token, "encoding": "pcm_s16le",
                                  "sample_rate": RATE, "channels": 1}))  # fmt: skip
        assert json.loads(await ws.recv())["type"] == "ready"
        sender = asyncio.create_task(live(ws, audio))
        try:
            async with asyncio.timeout(for_s):
                while True:
                    message = json.loads(await ws.recv())
                    if message["type"] == "scores":
                        continue
                    messages.append(message)
                    if await done(ws, messages):
                        break
        except TimeoutError:
            pass
        finally:
            sender.cancel()
    return messages


def corroborated(messages: list[dict[str, Any]]) -> dict[str, Any] | None:
    return next((m for m in messages if m["type"] == "incident" and m.get("detail", {}).get("event") == "corroboration"), None)


async def reported(ws: ClientConnection, messages: list[dict[str, Any]]) -> bool:
    incidents = [m for m in messages if m["type"] == "incident"]
    return bool(incidents) and incidents[-1]["state"] in FINAL


async def judged(ws: ClientConnection, messages: list[dict[str, Any]]) -> bool:
    return corroborated(messages) is not None or await reported(ws, messages)


async def cancelled_once_told(ws: ClientConnection, messages: list[dict[str, Any]]) -> bool:
    """Cancel the incident once its corroboration is told (the test needs no report)."""
    last = messages[-1]
    if corroborated([last]) is not None:
        await ws.send(json.dumps({"type": "cancel", "incident_id": last["incident_id"], "reason": "test over"}))
    return await reported(ws, messages)


async def never(ws: ClientConnection, messages: list[dict[str, Any]]) -> bool:
    return False


async def test_two_household_devices_corroborate(system: System) -> None:
    kitchen = await asyncio.to_thread(system.device, "Yoon Bok-nam", "kitchen")
    bedroom = await asyncio.to_thread(system.device, "Yoon Mi-ra", "bedroom")
    await asyncio.to_thread(system.household, kitchen, bedroom)
    alarm = smoke_alarm(RATE, 30.0, seed=7)
    in_kitchen = np.concatenate([room(QUIET_S, 1), alarm])
    in_bedroom = np.concatenate([room(QUIET_S, 2), 0.5 * alarm + room(30.0, 3)])  # 6 dB quieter through a wall

    heard_k, heard_b = await asyncio.gather(
        listen(system, kitchen, in_kitchen, reported, for_s=QUIET_S + COUNTDOWN_S + 30),
        listen(system, bedroom, in_bedroom, judged, for_s=QUIET_S + 30),
    )
    (detection,) = [m for m in heard_k if m["type"] == "detection"]
    assert detection["class"] == "fire"
    told = corroborated(heard_k)
    assert told is not None, heard_k
    corroboration = told["corroboration"]
    assert corroboration["peers_listening"] == 1 and corroboration["only_this_device"] is False
    assert [(s["room"], s["how"]) for s in corroboration["supporting"]] == [("bedroom", "same_class")], corroboration
    assert heard_k[-1]["state"] == "dispatched", heard_k[-1]
    # The bedroom detected it too, fainter: its own incident, reported on its own, names the kitchen's.
    linked = [m["incident_id"] for m in heard_b if m["type"] == "detection"]
    if linked:
        theirs = corroborated(heard_b)
        assert theirs is not None and theirs["corroboration"]["linked_incidents"] == [detection["incident_id"]]

    report = system.report(detection["incident_id"])
    assert report["corroboration"]["summary"] == "heard in the kitchen and the bedroom", report["corroboration"]
    assert report["corroboration"]["room"] == "kitchen" and report["corroboration"]["linked_incidents"] == linked


async def test_only_this_device_heard_it(system: System) -> None:
    kitchen = await asyncio.to_thread(system.device, "Kang Ok-ja", "kitchen")
    bedroom = await asyncio.to_thread(system.device, "Kang Min-su", "bedroom")
    await asyncio.to_thread(system.household, kitchen, bedroom)
    in_kitchen = np.concatenate([room(QUIET_S, 4), smoke_alarm(RATE, 20.0, seed=8)])

    heard_k, heard_b = await asyncio.gather(
        listen(system, kitchen, in_kitchen, cancelled_once_told, for_s=QUIET_S + COUNTDOWN_S + 20),
        listen(system, bedroom, room(QUIET_S + 16.0, 5), never, for_s=QUIET_S + 16.0),
    )
    assert [m["class"] for m in heard_k if m["type"] == "detection"] == ["fire"]
    told = corroborated(heard_k)
    assert told is not None, heard_k
    assert told["corroboration"]["only_this_device"] is True and told["corroboration"]["peers_listening"] == 1
    assert told["corroboration"]["supporting"] == []
    assert heard_k[-1]["state"] == "cancelled"
    assert not [m for m in heard_b if m["type"] in ("detection", "incident")]
