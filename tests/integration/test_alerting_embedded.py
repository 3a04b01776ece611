"""The embedded default end to end: SQLite file, kombu's filesystem broker, local clips served
by the gateway's signed links, a real worker process and a real agency; REST cancel/confirm."""

from __future__ import annotations

import asyncio
import hashlib
import threading
import time
from pathlib import Path

import httpx
import numpy as np
import pytest
import uvicorn
from fastapi import FastAPI
from sqlalchemy import update

from services.gateway import incidents_api
from services.gateway.auth import issue_token
from shared.clips import ClipStorageSettings, create_clip_store
from shared.db import Database, Device, upgrade_database
from shared.incident_events import LocalIncidentEvents
from shared.incidents import archive_clip, open_incident
from tests.alerting_support import (  # noqa: F401 (fixtures)
    FAST,
    AgencyServer,
    WorkerSupervisor,
    agency,
    assert_exactly_once,
    free_port,
    make_device,
    settled,
    worker_env,
)

pytestmark = pytest.mark.slow


class Gateway:
    """The incident routes as the gateway mounts them, on uvicorn in a thread."""

    def __init__(self, db: Database, clips: ClipStorageSettings) -> None:
        app = FastAPI()
        app.include_router(incidents_api.router)
        app.state.db, app.state.incident_events = db, LocalIncidentEvents()
        app.state.clip_store = create_clip_store(clips)
        self.port = int(clips.public_base_url.rsplit(":", 1)[1])
        self.server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=self.port, log_level="warning"))
        self.thread = threading.Thread(target=self.server.run, daemon=True)

    def __enter__(self) -> Gateway:
        self.thread.start()
        while not self.server.started:
            time.sleep(0.02)
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.should_exit = True
        self.thread.join(timeout=10)


@pytest.fixture
def data_dir(tmp_path: Path) -> Path:
    return tmp_path / "var"


@pytest.fixture
def clips(data_dir: Path) -> ClipStorageSettings:
    # The worker (HEARO_DATA_DIR=data_dir) generates the clip secret there: the gateway reads the same one.
    return ClipStorageSettings(dir=data_dir / "clips", data_dir=data_dir, public_base_url=f"http://127.0.0.1:{free_port()}")


async def test_embedded_mode_reports_with_a_playable_clip(
    agency: AgencyServer, data_dir: Path, clips: ClipStorageSettings, tmp_path: Path
) -> None:
    url = f"sqlite+aiosqlite:///{data_dir / 'hearo.db'}"
    await asyncio.to_thread(upgrade_database, url)
    db = Database(url)
    env = {
        **worker_env(url, data_dir, agency, **FAST),  # no broker URL: the filesystem transport
        "HEARO_CLIPS_PUBLIC_BASE_URL": clips.public_base_url,
    }
    token, token_hash = issue_token()
    auth = {"Authorization": f"Bearer {token}"}
    devices = [await make_device(db, contacts=1) for _ in range(2)]
    async with db.session() as session:
        await session.execute(update(Device).where(Device.id == devices[1]).values(token_hash=token_hash))
    try:
        with Gateway(db, clips) as gateway, WorkerSupervisor(env, tmp_path / "logs") as workers:
            base = f"http://127.0.0.1:{gateway.port}"
            reported = (await open_incident(db, device_id=devices[0], class_key="medical", confidence=0.9, countdown_s=2)).incident
            samples = np.random.default_rng(2).uniform(-0.2, 0.2, 16000 * 30).astype(np.float32)
            clip = await archive_clip(db, create_clip_store(clips), reported.id, samples, 16000)
            cancelled = (await open_incident(db, device_id=devices[1], class_key="crime", confidence=0.9, countdown_s=2)).incident
            async with httpx.AsyncClient(base_url=base) as http:
                response = await http.post(f"/v1/incidents/{cancelled.id}/cancel", json={"reason": "tv"}, headers=auth)
                assert response.status_code == 200 and response.json()["outcome"] == "cancelled"
                assert await settled(db, timeout_s=30), workers.logs()
                detail = (await http.get(f"/v1/incidents/{cancelled.id}", headers=auth)).json()
                assert detail["state"] == "cancelled" and detail["deliveries"] == []

                report = agency.reports()[0]["payload"]["data"]
                assert report["incident_id"] == str(reported.id) and report["clip"]["status"] == "ready"
                assert report["clip"]["url"].startswith(f"{base}/v1/clips/")
                fetched = await http.get(report["clip"]["url"])
                assert fetched.status_code == 200 and fetched.headers["content-type"] == "audio/flac"
                assert hashlib.sha256(fetched.content).hexdigest() == clip.sha256 == report["clip"]["sha256"]
        figures = await assert_exactly_once(db, agency)
        assert figures["reports"] == 1
        assert (data_dir / "broker" / "queue").is_dir()  # the embedded broker was the filesystem
    finally:
        await db.dispose()
