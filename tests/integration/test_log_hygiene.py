"""Logs never hold audio, tokens, secrets or medical notes (issue 12, item 6).

The whole path with every log at DEBUG: a device registers (with medical notes and a
guardian), streams an alarm to the real gateway app under uvicorn (access log on, as
``hearo serve gateway`` runs it), the detection opens an incident, the alerting worker (a
separate process, ``HEARO_ALERTING_LOG_LEVEL=DEBUG``) reports it to the agency and the
guardian, and the clip is fetched through the signed link in the report. Then the gateway's
and agency's captured logs and the worker's log file are searched for each secret.
"""

from __future__ import annotations

import asyncio
import json
import logging
import threading
import time
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

import httpx
import pytest
import uvicorn
from websockets.asyncio.client import connect

from services.gateway import app as gateway_app
from services.gateway.settings import GatewaySettings
from shared.clips import ClipStorageSettings
from shared.db import upgrade_database
from tests.alerting_support import FAST, SECRET, AgencyServer, WorkerSupervisor, agency, worker_env  # noqa: F401
from tests.gateway_apps import FakeInferenceClient, send_audio, until_type
from tests.gateway_support import audio, free_port, start

pytestmark = pytest.mark.slow

CLIP_SECRET = "log-hygiene-clip-secret-4f1c"
MEDICAL_NOTES = "MEDNOTE 심부전 warfarin 7731"


def _serve(app: object, port: int) -> uvicorn.Server:
    # log_config=None: uvicorn's loggers (access log included) propagate to pytest's capture.
    server = uvicorn.Server(
        uvicorn.Config(app, host="127.0.0.1", port=port, log_level="debug", log_config=None, loop="asyncio")  # type: ignore[arg-type]
    )
    threading.Thread(target=server.run, daemon=True).start()
    deadline = time.monotonic() + 30
    while not server.started:
        assert time.monotonic() < deadline, "gateway did not start"
        time.sleep(0.02)
    return server


async def test_a_full_detection_and_report_logs_no_secret(
    agency: AgencyServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture  # noqa: F811
) -> None:
    caplog.set_level(logging.DEBUG)
    # The test's own WebSocket client logs what it sends (its token): that is the client's
    # log on the client's machine, not the system's.
    caplog.set_level(logging.INFO, logger="websockets.client")
    monkeypatch.setattr(gateway_app, "InferenceClient", FakeInferenceClient)
    data_dir = tmp_path / "var"
    data_dir.mkdir()
    url = f"sqlite+aiosqlite:///{data_dir / 'hearo.db'}"
    await asyncio.to_thread(upgrade_database, url)
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    settings = GatewaySettings(
        database_url=url, max_stream_speed=1000.0, incident_countdown_s=1.0, incident_poll_interval_s=0.2,
        clips=ClipStorageSettings(dir=data_dir / "clips", secret_key=CLIP_SECRET, public_base_url=base),
    )
    server = _serve(gateway_app.create_app(settings), port)
    env = {
        **worker_env(url, data_dir, agency, **{**FAST, "clip_wait_s": "5", "log_level": "DEBUG"}),
        "HEARO_CLIPS_SECRET_KEY": CLIP_SECRET, "HEARO_CLIPS_PUBLIC_BASE_URL": base,
    }  # fmt: skip
    try:
        with WorkerSupervisor(env, tmp_path / "logs") as workers:
            async with httpx.AsyncClient(base_url=base, timeout=10) as http:
                registered = await http.post("/v1/devices", json={
                    "profile": {"name": "Han Geum-sun", "birth_year": 1941, "medical_notes": MEDICAL_NOTES},
                    "consent_recording": True, "consent_location": False, "consent_share_profile": True,
                    "contacts": [{"name": "Han Mi-ra", "relation": "daughter", "phone": "+821012345678",
                                  "webhook_url": f"{agency.url}/webhooks/guardian"}],
                })  # fmt: skip
                assert registered.status_code == 201, registered.text
                token = registered.json()["token"]
                loud = audio(25.0, loud=True)
                async with connect(settings_ws(port)) as ws:
                    await ws.send(json.dumps(start(token)))
                    await until_type(ws, "ready")
                    await send_audio(ws, loud)
                    incident = (await until_type(ws, "incident"))[-1]
                    await ws.send(json.dumps({"type": "stop"}))
                report = await _report(agency, incident["incident_id"], workers)
                link = report["clip"]["url"]
                fetched = await http.get(link)
                assert fetched.status_code == 200, fetched.text
                assert (await http.get(f"/v1/incidents/{incident['incident_id']}",
                                       headers={"Authorization": f"Bearer {token}"})).status_code == 200
            await asyncio.sleep(1.0)  # the guardian's notices and the worker's last lines
            worker_logs = "\n".join(p.read_text(errors="replace") for p in (tmp_path / "logs").glob("worker-*.log"))
    finally:
        server.should_exit = True

    signature = parse_qs(urlsplit(link).query)["sig"][0]
    logs = caplog.text + "\n" + worker_logs
    assert "GET /v1/clips/" in caplog.text  # the access log was on, and the fetch is in it
    assert "DEBUG" in worker_logs  # the worker logged at DEBUG
    secrets = {
        "device token": token, "webhook secret": SECRET, "webhook key": SECRET.removeprefix("whsec_"),
        "clip secret": CLIP_SECRET, "medical notes": MEDICAL_NOTES, "clip link signature": signature,
        "audio": " ".join(f"{byte:02x}" for byte in loud[:8]), "audio bytes": repr(loud[:12])[2:-1],
    }  # fmt: skip
    leaked = [name for name, value in secrets.items() if value in logs]
    assert leaked == [], f"{leaked} in the logs"


def settings_ws(port: int) -> str:
    return f"ws://127.0.0.1:{port}/v1/stream"


async def _report(agency: AgencyServer, incident_id: str, workers: WorkerSupervisor) -> dict[str, object]:
    deadline = time.monotonic() + 30
    while True:
        for stored in agency.reports():
            data = stored["payload"]["data"]
            if data.get("incident_id") == incident_id and "clip" in data and data["clip"]["status"] == "ready":
                return dict(data)
        assert time.monotonic() < deadline, f"no report with a ready clip\n{workers.logs()}"
        await asyncio.sleep(0.1)
