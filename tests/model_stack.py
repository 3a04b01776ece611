"""The whole path on embedded parts, for integration tests: mn04 inference and a gateway in
threads, the drill agency and alerting worker processes, SQLite in a temporary folder."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from services.gateway.app import create_app as create_gateway
from services.gateway.settings import GatewaySettings
from services.inference.app import create_app as create_inference
from services.inference.settings import SHARED_MODELS_DIR, InferenceSettings
from shared.clips import ClipStorageSettings
from shared.db import upgrade_database
from tests.alerting_support import FAST, AgencyServer, WorkerSupervisor, worker_env
from tests.gateway_support import ServerThread, free_port

WEIGHTS = SHARED_MODELS_DIR / "efficientat_mn04_as" / "mn04_as_mAP_432.pt"


@dataclass(frozen=True)
class ModelStack:
    url: str  # the gateway's /v1/stream
    http: str  # the gateway's REST base
    agency: AgencyServer
    workers: WorkerSupervisor


@contextmanager
def model_stack(
    data_dir: Path, clip_secret: str | None = None, worker_timings: dict[str, str] | None = None, **gateway: Any
) -> Iterator[ModelStack]:
    """The stack in ``data_dir``; ``gateway``: GatewaySettings fields beside the stack's own,
    ``worker_timings``: worker_env's FAST timings overridden. Skips without the mn04 weights."""
    if not WEIGHTS.is_file():
        pytest.skip(f"needs the EfficientAT mn04 weights at {WEIGHTS} (../shared/models beside the repo)")
    database_url = f"sqlite+aiosqlite:///{data_dir / 'hearo.db'}"
    upgrade_database(database_url)
    inference_port, gateway_port = free_port(), free_port()
    http = f"http://127.0.0.1:{gateway_port}"
    inference = ServerThread(
        create_inference(InferenceSettings(model="efficientat", device="cpu", max_wait_ms=2.0)), inference_port
    )
    clip_dir = data_dir / "clips"
    clips = (ClipStorageSettings(dir=clip_dir, public_base_url=http) if clip_secret is None
             else ClipStorageSettings(dir=clip_dir, public_base_url=http, secret_key=clip_secret))  # fmt: skip
    settings = GatewaySettings(
        database_url=database_url,
        inference_url=f"ws://127.0.0.1:{inference_port}/v1/windows",
        feature_spec="efficientat_mel",
        inference_timeout_s=20.0,
        incident_poll_interval_s=0.2,
        clips=clips,
        **gateway,
    )
    server = ServerThread(create_gateway(settings), gateway_port, ws_max_size=1 << 20)
    try:
        with AgencyServer() as agency:
            # No broker URL: the embedded filesystem transport.
            env = {**worker_env(database_url, data_dir, agency, **{**FAST, **(worker_timings or {})}),
                   "HEARO_CLIPS_PUBLIC_BASE_URL": http}  # fmt: skip
            if clip_secret is not None:
                env["HEARO_CLIPS_SECRET_KEY"] = clip_secret
            with WorkerSupervisor(env, data_dir / "logs") as workers:
                yield ModelStack(f"ws://127.0.0.1:{gateway_port}/v1/stream", http, agency, workers)
    finally:
        server.stop()
        inference.stop()
