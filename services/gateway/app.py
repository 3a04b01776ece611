"""The gateway: the devices REST API and the ``/v1/stream`` WebSocket.

Routes: ``/healthz``, ``/v1/devices...`` (``devices.router``), ``/v1/households...``
(``households_api.router``), ``/v1/incidents...`` and ``/v1/clips/...``
(``incidents_api.router``) and ``/v1/stream`` (``docs/protocol.md``).
Startup opens the database (migrating it only when ``migrate_on_start`` is set; ``hearo db
upgrade`` is the usual migrate step), the incident updates (Redis pub/sub when
``redis_url`` is set, in-process otherwise) with the watcher that follows incidents for
the sessions, the device revocations (the same Redis, or in-process) that end the sessions of
a rotated or deleted token, the household activity board (the same Redis, or in-process)
that a home's devices corroborate each other on, the clip store, and the process's one
inference client. If the inference
service is not up yet the gateway starts anyway and keeps connecting in the background;
until then ``start`` is answered ``inference_unavailable`` (close 4503). A refused
handshake (a spec or model mismatch) is a configuration error and stops the startup.
Shutdown waits a few seconds for clips still being archived.

Run with ``hearo serve gateway`` or ``uvicorn --factory services.gateway.app:create_app``.
"""

from __future__ import annotations

import asyncio
import logging
import random
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from fastapi import Depends, FastAPI, WebSocket

from services.gateway import devices, households_api, incidents_api, privacy_api, web_api
from services.gateway import outcomes_api, stats_api
from services.gateway import thresholds_api  # what the owner's cancels taught, and the weekly summary
from services.gateway import ask_api  # GET /v1/ask: questions over the device's history
from services.gateway import review_api  # /v1/review/...: the review loop (docs/review.md)
from services.gateway.auth import authenticate_token
from services.gateway.client_errors_log import quiet_client_errors
from services.gateway.enrolment import Enrolment
from services.gateway.metrics import GATEWAY_METRICS, router as metrics_router
from services.gateway.inference_client import (
    InferenceClient,
    InferenceError,
    InferenceRefused,
    InferenceUnauthorized,
    InferenceUnavailable,
)
from services.gateway.rate_limit import RATE_LIMITED_RESPONSE, RequestLimits, limit_rest
from services.gateway.device_thresholds import DeviceThresholds, create_threshold_channel
from services.gateway.revocation import RevocationWatch, create_revocations
from services.gateway.session_household import HouseholdFusion
from services.gateway.session_incidents import IncidentBackend
from services.gateway.session_registry import SessionRegistry
from services.gateway.sessions import serve_stream
from services.gateway.settings import GatewaySettings
from services.gateway.settings_watch import ProfileAndLanguages, SettingsWatch, create_settings_channel
from services.gateway.session_anomaly import AnomalyBackend
from services.gateway.threshold_watch import ThresholdWatch
from shared.clips import create_clip_store
from shared.db import Database, Device, upgrade_database
from shared.features.spec import spec_by_name
from shared.household import create_activity_board
from shared.incident_events import create_incident_events
from shared.incident_state import IncidentKind
from shared.incident_watcher import IncidentWatcher
from shared.log_hygiene import install_log_hygiene
from shared.numeric_threads import single_threaded_numerics

log = logging.getLogger(__name__)

_CONNECT_BACKOFF_S = (0.5, 10.0)
# At shutdown, how long clips still being encoded and stored may take.
_DRAIN_S = 10.0


async def _keep_connecting(client: InferenceClient) -> None:
    delay, most = _CONNECT_BACKOFF_S
    while True:
        await asyncio.sleep(delay * random.uniform(0.5, 1.0))
        try:
            await client.connect()
        except InferenceError as exc:
            # A refusal may be a deployment in progress (the new model not served yet): keep trying.
            log.log(logging.ERROR if isinstance(exc, InferenceRefused) else logging.WARNING,
                    "inference not usable yet: %s", exc)  # fmt: skip
            delay = min(delay * 2, most)
            continue
        log.info("connected to inference at %s", client.url)
        return


def create_app(settings: GatewaySettings | None = None) -> FastAPI:
    """The gateway app; ``settings`` default to the environment's (``HEARO_GATEWAY_*``)."""
    settings = settings or GatewaySettings()
    quiet_client_errors()  # a client's non-UTF-8 text frame is not a gateway error
    install_log_hygiene()  # no audio, token or link signature in any log (shared/log_hygiene.py)
    spec = None if settings.feature_spec is None else spec_by_name(settings.feature_spec)

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        # Every session's per-window numeric ops run on this loop and are far too small for
        # helper threads, whose wake-ups and spinning cost the box's other processes (torch's once
        # made 80 % of the gateway's CPU under `hearo bench load`; shared/numeric_threads.py).
        single_threaded_numerics()
        if settings.migrate_on_start:
            await asyncio.to_thread(upgrade_database, settings.database_url)
        db = Database(settings.database_url)
        events = create_incident_events(settings.redis_url)
        watcher = IncidentWatcher(db, events, poll_interval_s=settings.incident_poll_interval_s)
        clip_store = create_clip_store(settings.clips)
        board = create_activity_board(settings.redis_url, on_lost=GATEWAY_METRICS.household_windows_lost)
        # What false-alarm cancels teach (docs/evidence.md), on the thresholds the sessions use now.
        threshold_changes = create_threshold_channel(settings.redis_url)
        thresholds = DeviceThresholds(
            db, settings.threshold_learning, lambda: sessions.detector_config.thresholds, threshold_changes
        )
        # Away and alone modes (docs/anomaly.md): each session learns and judges its home's sound.
        anomaly = AnomalyBackend(settings.anomaly)
        incidents = IncidentBackend(
            db, events, watcher, clip_store, countdown_s=settings.incident_countdown_s, evidence=settings.evidence,
            same_event_s=settings.incident_same_event_s, write_retry_s=settings.incident_write_retry_s,
            household=HouseholdFusion(board, settings.household), learning=thresholds,
            anomaly=anomaly,
            countdowns={IncidentKind.CHILD_SAFETY: settings.daycare.countdown_s},  # docs/daycare.md
        )  # fmt: skip

        async def authenticate(token: str) -> Device | None:
            return await authenticate_token(db, token)

        client = InferenceClient(
            settings.inference_url,
            spec,
            settings.inference_model,
            token=settings.inference_credential(),
            timeout=settings.inference_timeout_s,
        )
        sessions = SessionRegistry(settings, client, authenticate, spec, incidents)
        GATEWAY_METRICS.watch_sessions(sessions)  # hearo_gateway_sessions at /metrics
        GATEWAY_METRICS.watch_runtime(asyncio.get_running_loop(), db.engine.pool)
        # At every (re)connect, before any call uses the connection, the sessions take the
        # served model's feature spec and detector thresholds.
        client.on_ready = sessions.use_model
        # A rotated or deleted token ends its sessions on every gateway (docs/protocol.md).
        revocations = create_revocations(settings.redis_url)
        revocation_watch = RevocationWatch(sessions, revocations, db, settings.token_check_interval_s)
        # A step or an undo retunes the device's live sessions on every gateway.
        threshold_watch = ThresholdWatch(sessions, threshold_changes, thresholds)
        # A changed profile, spoken languages or listening mode, or a model the worker trained,
        # reaches the device's live sessions on every gateway.
        settings_changes = create_settings_channel(settings.redis_url)
        settings_watch = SettingsWatch([ProfileAndLanguages(sessions, db), anomaly], settings_changes)

        app.state.db = db
        app.state.incident_events = events
        app.state.clip_store = clip_store
        app.state.household_board = board
        app.state.inference = client
        app.state.sessions = sessions
        app.state.revocations = revocations
        app.state.device_thresholds = thresholds
        app.state.settings_changes = settings_changes
        app.state.anomaly_policy = settings.anomaly
        connecting: asyncio.Task[None] | None = None
        loop_probe = asyncio.create_task(GATEWAY_METRICS.probe_loop_lag(), name="hearo-loop-lag")
        try:
            await watcher.start()
            await revocation_watch.start()
            await threshold_watch.start()
            await settings_watch.start()
            await board.start()
            try:
                await client.connect()
            except InferenceUnavailable as exc:
                log.warning("starting without inference (%s); connecting in the background", exc)
                connecting = asyncio.create_task(_keep_connecting(client), name="hearo-inference-connect")
            except InferenceUnauthorized as exc:
                # Tokens may be mid-rotation: keep trying (with backoff) and say what to fix.
                log.error("starting without inference: %s; retrying in the background", exc)
                connecting = asyncio.create_task(_keep_connecting(client), name="hearo-inference-connect")
            yield
        finally:
            loop_probe.cancel()
            if connecting is not None:
                connecting.cancel()
            await revocation_watch.close()
            await threshold_watch.close()
            await threshold_changes.close()
            await settings_watch.close()
            await settings_changes.close()
            await revocations.close()
            await incidents.drain(_DRAIN_S)
            sessions.spoken.close()
            await board.close()
            await watcher.close()
            await events.close()
            await client.close()
            await db.dispose()

    app = FastAPI(title="Hear-o gateway", lifespan=lifespan)
    app.state.request_limits = RequestLimits(
        settings.rest_per_ip, settings.rest_per_device, settings.registration_per_ip, settings.household_join_per_ip
    )
    app.state.enrolment = Enrolment(settings.enrolment_keys)
    if not app.state.enrolment.required:
        log.warning("registration is open: no enrolment key is set (HEARO_GATEWAY_ENROLMENT_KEY; development only)")
    # Every REST route is rate limited per client address and per device token.
    limited: dict[str, Any] = {"dependencies": [Depends(limit_rest)], "responses": RATE_LIMITED_RESPONSE}
    app.include_router(devices.router, **limited)
    app.include_router(households_api.router, **limited)
    app.include_router(incidents_api.router, **limited)
    app.include_router(privacy_api.router, **limited)
    app.include_router(thresholds_api.router, **limited)
    # The outcome ledger: agencies' signed answers and the published stats.
    app.include_router(outcomes_api.router_for(settings.clips), **limited)
    app.include_router(stats_api.router, **limited)
    app.include_router(ask_api.router, **limited)
    # The review loop: segments, labels and precision for the reviewer page (docs/review.md).
    app.state.reviewer_token = settings.reviewer_token
    app.include_router(review_api.router, **limited)
    # The web app: the page at / and its files under /web (docs in web_api).
    app.include_router(web_api.router, **limited)
    app.mount(web_api.STATIC_PATH, web_api.static_files(), name="web")
    # Prometheus; neither the compose proxy nor the Ingress routes it to the public.
    app.include_router(metrics_router)

    @app.get("/healthz", tags=["ops"])
    async def healthz() -> dict[str, Any]:
        """Liveness, with what a reader of a dashboard wants next: inference, session count, spoken words."""
        client: InferenceClient = app.state.inference
        ready = client.ready
        return {
            "status": "ok",
            "inference": {"connected": client.connected, "model": ready.model if ready else None},
            "sessions": app.state.sessions.active,
            # Whether spoken distress words can run here, and why not (docs/spoken.md).
            "spoken": app.state.sessions.spoken.status(),
        }

    @app.websocket("/v1/stream")
    async def stream(websocket: WebSocket) -> None:
        await serve_stream(app.state.sessions, websocket)

    return app
