"""The gateway app's startup without an inference service: it serves (devices and incidents),
says so, and refuses streams."""

from __future__ import annotations

import socket
from pathlib import Path

import pytest
from starlette.testclient import TestClient
from starlette.websockets import WebSocketDisconnect
from typer.testing import CliRunner

from hearo import cli

from services.gateway.app import create_app
from services.gateway.rate_limit import RateLimit
from services.gateway.settings import GatewaySettings
from shared.clips import ClipStorageSettings
from tests.gateway_support import ServerThread, free_port


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
        assert health.pop("spoken")["state"] == "off"  # until HEARO_GATEWAY_SPOKEN turns it on (docs/spoken.md)
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


def test_the_app_limits_rest_and_registration(tmp_path: Path) -> None:
    # Issue 12 (F2): the limits and the enrolment key as create_app wires them.
    settings = GatewaySettings(
        database_url=f"sqlite+aiosqlite:///{tmp_path / 'hearo.db'}",
        migrate_on_start=True,
        inference_url=f"ws://127.0.0.1:{closed_port()}/v1/windows",
        inference_timeout_s=0.5,
        clips=ClipStorageSettings(dir=tmp_path / "clips"),
        rest_per_ip=RateLimit(burst=5, per_minute=60),
        enrolment_keys=["the-enrolment-key-of-this-test"],
    )
    body = {
        "profile": {"name": "Lee Mal-soon", "birth_year": 1950},
        "consent_recording": True, "consent_location": False, "consent_share_profile": False,
    }  # fmt: skip
    with TestClient(create_app(settings)) as client:
        assert client.post("/v1/devices", json=body).status_code == 401
        registered = client.post("/v1/devices", json=body, headers={"X-Hearo-Enrolment-Key": settings.enrolment_keys[0]})
        assert registered.status_code == 201, registered.text
        statuses = [client.get("/v1/incidents").status_code for _ in range(4)]
        assert statuses == [401, 401, 401, 429]
        limited = client.get("/v1/incidents")
        assert limited.status_code == 429 and limited.headers["Retry-After"] == "1"
        assert limited.json()["detail"]["code"] == "rate_limited"
        assert client.get("/healthz").status_code == 200  # not a REST route of devices
        assert "429" in client.get("/openapi.json").json()["paths"]["/v1/incidents"]["get"]["responses"]


def test_hearo_device_register_sends_the_enrolment_key(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    settings = GatewaySettings(
        database_url=f"sqlite+aiosqlite:///{tmp_path / 'hearo.db'}",
        migrate_on_start=True,
        inference_url=f"ws://127.0.0.1:{closed_port()}/v1/windows",
        inference_timeout_s=0.5,
        clips=ClipStorageSettings(dir=tmp_path / "clips"),
        enrolment_keys=["the-enrolment-key-of-this-test"],
    )
    port = free_port()
    server = ServerThread(create_app(settings), port)
    try:
        register = ["device", "register", "--name", "Lee", "--birth-year", "1950", "--api", f"http://127.0.0.1:{port}"]
        refused = CliRunner().invoke(cli.app, register)
        assert refused.exit_code == 2 and "enrolment_key_required" in refused.output
        monkeypatch.setenv("HEARO_ENROLMENT_KEY", settings.enrolment_keys[0])
        registered = CliRunner().invoke(cli.app, register)
        assert registered.exit_code == 0, registered.output
        assert "token: " in registered.output
    finally:
        server.stop()
