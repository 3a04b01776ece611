"""The web app (``web/``: plain JS modules, no build step) and the one read it needs that the
REST API lacked: ``app.include_router(web_api.router)`` and ``app.mount(STATIC_PATH, static_files())``.

=======  =================================  ================================================
GET      /                                  the page (``web/index.html``)
GET      /web/...                           its modules, worklet, styles and texts
GET      /v1/incidents/{id}/notices         who among the emergency contacts was told
                                            what, and how → ``{notices}``; 404
GET      /v1/stream/format                  how to capture for the served model →
                                            ``{sample_rate, frame_ms}`` (no token needed)
=======  =================================  ================================================

The page keeps the device token in the browser's storage, never in a URL, and talks to the
REST API and ``/v1/stream`` (``docs/protocol.md``) like any other client. Its files are served
with a content security policy that allows nothing but this origin (and ``https:`` media, for
clip links that point at S3), so a payload that slipped past the page's escaping still cannot
load or send anything elsewhere.
"""

from __future__ import annotations

import uuid
from pathlib import Path
from typing import Any

from fastapi import APIRouter, HTTPException, Request, status
from fastapi.responses import FileResponse
from sqlalchemy import select
from starlette.staticfiles import StaticFiles
from starlette.types import Scope

from services.gateway.auth import CurrentDevice, DatabaseDep
from services.gateway.openapi import INCIDENT_NOT_FOUND, UNAUTHORIZED, ApiRoute
from shared.db.models import ContactNotification, EmergencyContact
from shared.incident_state import DeliveryState
from shared.incidents import get_incident
from shared.inference_wire import Ready
from shared.protocol import SAMPLE_RATES

WEB_DIR = Path(__file__).with_name("web")
# Frames of a quarter second: a socket message and a worklet post four times a second instead
# of ten, which the page's CPU shows (bench/bench_web_client.py); the detector hops 0.5 s.
CAPTURE_FRAME_MS = 250
STATIC_PATH = "/web"

_HEADERS = {
    "Content-Security-Policy": (
        "default-src 'self'; connect-src 'self' ws: wss:; media-src 'self' blob: https:; "
        "img-src 'self' data:; object-src 'none'; base-uri 'none'; frame-ancestors 'none'; form-action 'none'"
    ),
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "Permissions-Policy": "microphone=(self), geolocation=(self), screen-wake-lock=(self)",
    # A new release must reach a tablet that stays open for weeks: revalidate every load.
    "Cache-Control": "no-cache",
}

router = APIRouter(route_class=ApiRoute)


class _WebFiles(StaticFiles):
    async def get_response(self, path: str, scope: Scope) -> Any:
        response = await super().get_response(path, scope)
        response.headers.update(_HEADERS)
        return response


def static_files() -> StaticFiles:
    """The page's files, with its security headers."""
    return _WebFiles(directory=WEB_DIR)


@router.get("/", include_in_schema=False)
async def page() -> FileResponse:
    return FileResponse(WEB_DIR / "index.html", media_type="text/html", headers=_HEADERS)


def capture_sample_rate(ready: Ready | None) -> int:
    """The lowest rate the gateway takes that keeps every frequency the served model uses:
    audio above it would cost the client and the network, then be thrown away. Before the
    model is known, the highest: nothing is lost."""
    if ready is None:
        return SAMPLE_RATES[-1]
    used_hz = ready.spec.sample_rate / 2
    if ready.band_limit_hz is not None:
        used_hz = min(used_hz, ready.band_limit_hz)
    return next((rate for rate in SAMPLE_RATES if rate / 2 >= used_hz), SAMPLE_RATES[-1])


@router.get("/v1/stream/format", tags=["stream"])
async def stream_format(request: Request) -> dict[str, int]:
    """How a client should capture audio for ``/v1/stream``: the sample rate that keeps all the
    served model hears (any rate in the protocol is still accepted) and the frame length."""
    return {"sample_rate": capture_sample_rate(request.app.state.inference.ready), "frame_ms": CAPTURE_FRAME_MS}


@router.get("/v1/incidents/{incident_id}/notices", tags=["incidents"], responses={**UNAUTHORIZED, **INCIDENT_NOT_FOUND})
async def notices(incident_id: uuid.UUID, device: CurrentDevice, db: DatabaseDep) -> dict[str, Any]:
    """What each emergency contact was told of the incident (``detected``, ``cancelled``,
    ``reported``...), on which channel, and whether it was delivered; oldest first. Where the
    report went is ``deliveries`` of ``GET /v1/incidents/{id}``."""
    if await get_incident(db, incident_id, device_id=device.id) is None:
        raise HTTPException(status.HTTP_404_NOT_FOUND, {"code": "unknown_incident", "message": "no such incident"})
    async with db.session() as session:
        rows = (
            await session.execute(
                select(ContactNotification, EmergencyContact)
                .join(EmergencyContact, EmergencyContact.id == ContactNotification.contact_id)
                .where(ContactNotification.incident_id == incident_id, ContactNotification.state != DeliveryState.STANDBY)
                .order_by(ContactNotification.created_at, ContactNotification.id)
            )
        ).all()
    return {
        "notices": [
            {
                "contact": {"name": contact.name, "relation": contact.relation},
                "event": notice.event,
                "channel": notice.kind,
                "state": notice.state.value,
                "sent_at": notice.sent_at.isoformat() if notice.sent_at else None,
            }
            for notice, contact in rows
        ]
    }
