"""The /v1/devices routes mounted as the gateway mounts them, for tests that need only them."""

from __future__ import annotations

from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
import tempfile
from pathlib import Path

import httpx
from fastapi import Depends, FastAPI

from services.gateway import devices
from services.gateway.enrolment import Enrolment
from services.gateway.rate_limit import RequestLimits, limit_rest
from shared.clips import LocalClipStore
from shared.db import Database
from shared.incident_events import LocalIncidentEvents
from shared.pubsub import LocalChannel


def devices_app(
    db: Database, limits: RequestLimits | None = None, enrolment_keys: Sequence[str] = (), clips_dir: Path | None = None
) -> FastAPI:
    """The devices routes on ``db``; no rate limits and open registration unless given; the
    clips an erasure deletes live under ``clips_dir`` (a temporary folder by default)."""
    app = FastAPI()
    root = clips_dir or Path(tempfile.mkdtemp(prefix="hearo-clips-"))
    app.state.clip_store = LocalClipStore(root, "test-clip-secret", "http://hearo.test")
    app.state.incident_events = LocalIncidentEvents()
    app.state.db = db
    app.state.request_limits = limits or RequestLimits(None, None, None)
    app.state.enrolment = Enrolment(enrolment_keys)
    app.state.revocations = LocalChannel()  # heard by nobody here
    app.state.settings_changes = LocalChannel()  # a test subscribes to hear a settings change
    app.include_router(devices.router, dependencies=[Depends(limit_rest)])
    return app


@asynccontextmanager
async def http_client(app: FastAPI, address: str = "127.0.0.1") -> AsyncIterator[httpx.AsyncClient]:
    """An in-process client of ``app`` whose requests come from ``address``."""
    transport = httpx.ASGITransport(app=app, client=(address, 40000))
    async with httpx.AsyncClient(transport=transport, base_url="http://hearo.test") as client:
        yield client
