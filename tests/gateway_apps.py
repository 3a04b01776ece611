"""The real gateway app (``create_app``: database, Redis, REST, sessions) under uvicorn on
loopback, with the fake classifier of ``tests/gateway_support.py`` in place of the inference
connection, for tests of what the gateway itself decides (sessions, limits, revocation)."""

from __future__ import annotations

import contextlib
import json
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import httpx
import pytest
from websockets.asyncio.client import ClientConnection
from websockets.exceptions import ConnectionClosed

from services.gateway import app as gateway_app
from services.gateway.settings import GatewaySettings
from shared.inference_wire import Ready
from tests.gateway_support import FakeClassifier, ServerThread, free_port, start


class FakeInferenceClient(FakeClassifier):
    """Stands where ``create_app`` builds its ``InferenceClient``; connects at once."""

    def __init__(self, url: str, *args: Any, **kwargs: Any) -> None:
        super().__init__()
        self.url = url
        self.on_ready: Callable[[Ready], None] | None = None

    async def connect(self) -> None:
        if self.on_ready is not None and self.ready is not None:
            self.on_ready(self.ready)

    async def close(self) -> None:
        pass


@dataclass
class Gateway:
    http: str
    ws: str

    def register(self, name: str = "Park Soon-ja") -> tuple[str, str]:
        """A new device's ``(device_id, token)``."""
        body = {
            "profile": {"name": name, "birth_year": 1944},
            "consent_recording": True, "consent_location": False, "consent_share_profile": False,
        }  # fmt: skip
        response = httpx.post(f"{self.http}/v1/devices", json=body)
        assert response.status_code == 201, response.text
        return response.json()["device_id"], response.json()["token"]

    def sessions(self) -> int:
        count: int = httpx.get(f"{self.http}/healthz").json()["sessions"]
        return count


@contextmanager
def run_gateways(monkeypatch: pytest.MonkeyPatch, *settings: GatewaySettings) -> Iterator[list[Gateway]]:
    """Each of ``settings`` served by its own gateway app on a free port."""
    monkeypatch.setattr(gateway_app, "InferenceClient", FakeInferenceClient)
    servers, gateways = [], []
    try:
        for one in settings:
            port = free_port()
            servers.append(ServerThread(gateway_app.create_app(one), port))
            gateways.append(Gateway(f"http://127.0.0.1:{port}", f"ws://127.0.0.1:{port}/v1/stream"))
            # FastAPI builds a router's routes at the first request that walks them, and these apps
            # share the module-level routers: two apps of one process building them at once race
            # in pydantic (a warning, an error here). A path no route answers walks them all: one
            # app at a time, before any test request. (A deployment runs one app per process.)
            assert httpx.get(f"{gateways[-1].http}/no-such-route").status_code == 404
        yield gateways
    finally:
        for server in servers:
            server.stop()


async def open_session(ws: ClientConnection, token: str) -> dict[str, Any]:
    """Send ``start``; return ``ready``."""
    await ws.send(json.dumps(start(token)))
    ready: dict[str, Any] = json.loads(await ws.recv())
    assert ready["type"] == "ready", ready
    return ready


async def until_closed(ws: ClientConnection) -> list[dict[str, Any]]:
    """Every message until the gateway closes the connection."""
    messages = []
    with contextlib.suppress(ConnectionClosed):  # any close but 1000 ends the iteration so
        async for raw in ws:
            messages.append(json.loads(raw))
    return messages


async def send_audio(ws: ClientConnection, pcm: bytes, frame_bytes: int = 3200) -> None:
    for i in range(0, len(pcm), frame_bytes):
        await ws.send(pcm[i : i + frame_bytes])


async def until_type(ws: ClientConnection, kind: str) -> list[dict[str, Any]]:
    """Messages up to and including the first of type ``kind``."""
    messages: list[dict[str, Any]] = []
    while not messages or messages[-1]["type"] != kind:
        messages.append(json.loads(await ws.recv()))
    return messages
