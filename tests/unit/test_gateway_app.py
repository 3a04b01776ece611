"""The gateway app's startup without an inference service: it serves (devices and incidents),
says so, and refuses streams."""

from __future__ import annotations

import socket
from pathlib import Path

import pytest
from starlette.testclient import TestClient
from starlette.websockets import WebSocketDisconnect

from services.gateway.app import create_app
from services.gateway.settings import GatewaySettings
from shared.clips import ClipStorageSettings


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
        clips=ClipStorageSettings(dir=tmp_path / "clips"),
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
        token = registered.json()["token"]
        assert client.get("/v1/incidents").status_code == 401
        history = client.get("/v1/incidents", headers={"Authorization": f"Bearer {token}"})
        assert history.json() == {"incidents": []}
        with client.websocket_connect("/v1/stream") as ws:
            ws.send_json(
                {"type": "start", "token": token, "encoding": "pcm_s16le",
                 "sample_rate": 16000, "channels": 1}
            )  # fmt: skip
            error = ws.receive_json()
            assert (error["code"], error["fatal"]) == ("inference_unavailable", True)
            with pytest.raises(WebSocketDisconnect) as closed:
                ws.receive_json()
            assert closed.value.code == 4503
