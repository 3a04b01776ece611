"""The gateway app's startup without an inference service: it serves, says so, and refuses streams."""

from __future__ import annotations

import socket
from pathlib import Path

import pytest
from starlette.testclient import TestClient
from starlette.websockets import WebSocketDisconnect

from services.gateway.app import create_app
from services.gateway.settings import GatewaySettings


def closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def test_starts_without_inference_and_refuses_streams_with_4503(tmp_path: Path) -> None:
    settings = GatewaySettings(
        database_url=f"sqlite+aiosqlite:///{tmp_path / 'hearo.db'}",
        migrate_on_start=True,
        inference_url=f"ws://127.0.0.1:{closed_port()}/v1/windows",
        inference_timeout_s=0.5,
    )
    with TestClient(create_app(settings)) as client:
        health = client.get("/healthz").json()
        assert health == {"status": "ok", "inference": {"connected": False, "model": None}, "sessions": 0}
        registered = client.post(
            "/v1/devices",
            json={
                "profile": {"name": "Lee Mal-soon", "birth_year": 1950},
                "consent_recording": True,
                "consent_location": False,
                "consent_share_profile": False,
            },
        )
        assert registered.status_code == 201, registered.text
        with client.websocket_connect("/v1/stream") as ws:
            ws.send_json(
                {"type": "start", "token": registered.json()["token"], "encoding": "pcm_s16le",
                 "sample_rate": 16000, "channels": 1}
            )  # fmt: skip
            error = ws.receive_json()
            assert (error["code"], error["fatal"]) == ("inference_unavailable", True)
            with pytest.raises(WebSocketDisconnect) as closed:
                ws.receive_json()
            assert closed.value.code == 4503
