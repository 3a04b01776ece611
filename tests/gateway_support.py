"""Helpers for the gateway tests: a fake classifier, audio, the WebSocket dialogue, and real
servers on loopback for the integration tests.

The fake classifier scores a window as ``fire`` when it holds a loud tone (its largest
log-mel value is high) and ``normal`` otherwise, so audio decides what is detected;
``deaf`` makes it hear nothing, so only the alarm pattern detector can fire.
"""

from __future__ import annotations

import asyncio
import socket
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

import numpy as np
import pytest
import torch
import uvicorn
from fastapi import FastAPI, WebSocket
from starlette.testclient import TestClient
from starlette.websockets import WebSocketDisconnect

from services.gateway.inference_client import InferenceUnavailable, WindowResult
from services.gateway.session_registry import SessionRegistry
from services.gateway.sessions import serve_stream
from services.gateway.settings import GatewaySettings
from shared.db import Device
from shared.features.spec import EFFICIENTAT_MEL
from shared.inference_wire import Ready
from shared.protocol import CloseCode, ErrorCode
from shared.taxonomy import CLASS_KEYS, NUM_CLASSES, by_key

TOKEN = "good-token"
FIRE = by_key("fire").id
RATE = 16000


class FakeClassifier:
    def __init__(self) -> None:
        self.ready: Ready | None = Ready("fake-model", EFFICIENTAT_MEL, CLASS_KEYS, 32, None)
        self.connected = True
        self.calls: list[int] = []
        self.fail = False
        self.deaf = False  # every window scores normal
        self.delay_s = 0.0
        self.gate: asyncio.Event | None = None  # when set, classify waits for it

    async def classify(self, windows: torch.Tensor) -> list[WindowResult]:
        self.calls.append(windows.shape[0])
        if self.gate is not None:
            await self.gate.wait()
        if self.delay_s:
            await asyncio.sleep(self.delay_s)
        if self.fail:
            raise InferenceUnavailable("the connection to inference was lost")
        scores = fake_scores(windows)
        if self.deaf:
            scores[:, FIRE], scores[:, 0] = 0.0, 0.9
        tags = (("Smoke detector, smoke alarm", 0.8),)
        return [WindowResult(row, tags if row[FIRE] else (), 1.0, 2.0) for row in scores]


def fake_scores(windows: torch.Tensor) -> torch.Tensor:
    """The fake model's class scores ``[B, 9]``: 0.9 ``fire`` for a window that holds a loud
    sound, else 0.9 ``normal``."""
    loud = windows.flatten(1).amax(dim=1) > 1.0
    scores = torch.zeros(len(windows), NUM_CLASSES)
    scores[loud, FIRE] = 0.9
    scores[~loud, 0] = 0.9
    return scores


# Tokens of two fixed devices; TOKEN names a new device at each session.
DEVICE_TOKENS = {"token-a": uuid.UUID(int=1), "token-b": uuid.UUID(int=2)}


async def authenticate(token: str) -> Device | None:
    if token in DEVICE_TOKENS:
        return Device(id=DEVICE_TOKENS[token])
    return Device(id=uuid.uuid4()) if token == TOKEN else None


def make_client(classifier: FakeClassifier, **overrides: Any) -> TestClient:
    """Sessions alone (no database: no incidents) on ``classifier``, over Starlette's in-process client."""
    settings = GatewaySettings(**{"max_stream_speed": 1000.0, **overrides})
    app = FastAPI()
    manager = SessionRegistry(settings, classifier, authenticate, EFFICIENTAT_MEL)
    app.state.sessions = manager

    @app.websocket("/v1/stream")
    async def stream(websocket: WebSocket) -> None:
        await serve_stream(manager, websocket)

    return TestClient(app)


def start(token: str | None = TOKEN, **fields: Any) -> dict[str, Any]:
    return {"type": "start", "token": token, "encoding": "pcm_s16le", "sample_rate": RATE, "channels": 1, **fields}


def audio(seconds: float, rate: int = RATE, loud: bool = False) -> bytes:
    t = np.arange(round(seconds * rate)) / rate
    amplitude = 0.5 if loud else 0.001
    return (amplitude * np.sin(2 * np.pi * 1000 * t) * 32767).astype("<i2").tobytes()


def temporal3_square(seconds: float, hz: float = 520.0, rate: int = RATE) -> bytes:
    """A low-frequency smoke alarm: a band-limited square wave in the ISO 8201 rhythm
    (three 0.5 s pulses 0.5 s apart, then 1.5 s off), over faint noise."""
    t = np.arange(round(seconds * rate)) / rate
    square = sum(np.sin(2 * np.pi * k * hz * t) / k for k in range(1, 200, 2) if k * hz < rate / 2)
    phase = t % 4.0
    on = (phase < 2.5) & (phase % 1.0 < 0.5)
    noise = 0.003 * np.random.default_rng(0).standard_normal(len(t))
    samples = 0.3 * square / np.max(np.abs(square)) * on + noise
    return (samples * 32767).astype("<i2").tobytes()


def smoke_alarm(rate: int, seconds: float, seed: int = 0) -> np.ndarray:
    """ISO 8201 temporal-three: 0.5 s on / 0.5 s off three times, then 1.5 s off, repeated.

    A 3.1 kHz tone with harmonics over quiet room noise (about -40 dBFS): mn04 hears pure
    digital silence between beeps as a test tone ("Beep, bleep", "Sine wave"), not as an alarm.
    """
    t = np.arange(round(rate * seconds)) / rate
    tone = sum(a * np.sin(2 * np.pi * 3100.0 * k * t) for k, a in ((1, 1.0), (2, 0.3), (3, 0.5), (4, 0.1)))
    phase = t % 4.0
    on = (phase < 2.5) & (phase % 1.0 < 0.5)
    noise = 0.01 * np.random.default_rng(seed).standard_normal(len(t))
    return (0.3 * tone / 1.9 * on + noise).astype(np.float32)


def pcm16(samples: np.ndarray) -> bytes:
    return (np.clip(samples, -1, 32767 / 32768) * 32768).astype("<i2").tobytes()


def send_audio(ws: Any, pcm: bytes, frame_bytes: int = 3200) -> None:
    for i in range(0, len(pcm), frame_bytes):
        ws.send_bytes(pcm[i : i + frame_bytes])


def expect_close(ws: Any, code: int) -> list[dict[str, Any]]:
    """Read messages until the server closes; assert the close code; return the messages."""
    messages = []
    with pytest.raises(WebSocketDisconnect) as info:
        while True:
            messages.append(ws.receive_json())
    assert info.value.code == code, messages
    return messages


def fatal_error(ws: Any, code: ErrorCode, close: CloseCode) -> dict[str, Any]:
    messages = expect_close(ws, close)
    assert messages[-1]["type"] == "error", messages
    assert messages[-1]["code"] == code.value and messages[-1]["fatal"] is True
    return messages[-1]


def receive_until(ws: Any, found: Callable[[dict[str, Any]], bool], limit: int = 500) -> list[dict[str, Any]]:
    """Read messages up to and including the first that ``found`` accepts."""
    messages = []
    for _ in range(limit):
        messages.append(ws.receive_json())
        if found(messages[-1]):
            return messages
    raise AssertionError(f"not found in {limit} messages: {messages[-5:]}")


@contextmanager
def session(client: TestClient, **start_fields: Any) -> Iterator[Any]:
    with client.websocket_connect("/v1/stream") as ws:
        ws.send_json(start(**start_fields))
        ready = ws.receive_json()
        assert ready["type"] == "ready", ready
        yield ws


def stop(ws: Any) -> list[dict[str, Any]]:
    ws.send_json({"type": "stop"})
    messages = expect_close(ws, 1000)
    assert messages[-1]["type"] == "stopped"
    return messages


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class ServerThread:
    """uvicorn serving ``app`` on 127.0.0.1:``port`` in a daemon thread, until ``stop``."""

    def __init__(self, app: FastAPI, port: int, **config: Any) -> None:
        self.server = uvicorn.Server(
            uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning", loop="asyncio", **config)
        )
        self.thread = threading.Thread(target=self.server.run, daemon=True)
        self.thread.start()
        deadline = time.monotonic() + 60
        while not self.server.started:
            assert self.thread.is_alive() and time.monotonic() < deadline, "server did not start"
            time.sleep(0.02)

    def stop(self) -> None:
        self.server.should_exit = True
        self.thread.join(15)
