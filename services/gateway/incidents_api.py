"""Incident REST routes and the signed clip links: ``app.include_router(incidents_api.router)``.

=======  =================================  ================================================
POST     /v1/incidents/{id}/cancel          ``{reason?, kind?, code?}`` → 200 ``{outcome, incident}``;
                                            409 ``already_reported`` / ``report_failed``
POST     /v1/incidents/{id}/confirm         report now → 200 ``{outcome, incident}``;
                                            409 ``cancelled`` / ``report_failed``
GET      /v1/incidents                      the caller's incidents; ``since``, ``until``
                                            (RFC 3339, with offset), ``class``, ``limit``
                                            → ``{incidents}``
GET      /v1/incidents/{id}                 one incident with its clip, deliveries and
                                            who accessed the clip (``clip_access``)
GET      /v1/clips/{key}?exp=&sig=          the clip (FLAC) behind a link the worker signed
=======  =================================  ================================================

Incident routes need the device token and only ever show the caller's own incidents (an
incident of another device is a 404). A repeated cancel answers 200 ``already_cancelled``
and a repeated confirm 200 ``already_reported``: both are safe to retry. The clip route
needs no token: the link's HMAC and expiry are the authorisation (checked against the
current clip secret and the previous ones, so a rotation does not break links already sent).

Every clip access goes to the incident's audit trail, where its owner sees it in
``GET /v1/incidents/{id}``: each link that route hands out (``clip_link_issued``) and each
fetch through a valid link (``clip_downloaded``, with the client's address). S3 links go to
S3 directly: their issue is audited, their fetches are in the bucket's access log.

The app must set, before serving: ``app.state.db`` (:class:`~shared.db.Database`),
``app.state.incident_events`` (:func:`shared.incident_events.create_incident_events`) and
``app.state.clip_store`` (:func:`shared.clips.create_clip_store`).
"""

from __future__ import annotations

import re
import uuid
from typing import Annotated, Any

from fastapi import APIRouter, Depends, HTTPException, Query, Request, status
from fastapi.responses import FileResponse
from pydantic import AfterValidator, AwareDatetime, BaseModel, BeforeValidator, ConfigDict, Field, WithJsonSchema

from services.gateway.auth import CurrentDevice, DatabaseDep
from services.gateway.openapi import (
    BAD_BODY,
    CLIP_LINK,
    INCIDENT_CONFLICT,
    INCIDENT_NOT_FOUND,
    UNAUTHORIZED,
    ApiRoute,
)
from services.gateway.schemas import NO_NUL
from shared.clips import CONTENT_TYPE, ClipStore, LocalClipStore, clip_incident
from shared.incident_events import IncidentEvents
from shared.incident_privacy import device_clip
from shared.incident_state import ActionOutcome, CancelKind, IncidentAction
from shared.incidents import (
    CLIP_DOWNLOADED,
    CLIP_LINK_ISSUED,
    ActionResult,
    act_on_incident,
    audit_clip_access,
    clip_accesses,
    get_incident,
    incident_deliveries,
    list_incidents,
)
from shared.incidents.device_trail import issued_link
from shared.incidents.threshold_learning import FalseAlarmLearner
from shared.taxonomy import CLASS_KEYS

router = APIRouter(tags=["incidents"], route_class=ApiRoute)

# How long the clip link in ``GET /v1/incidents/{id}`` stays valid.
CLIP_LINK_TTL_S = 3600


def get_events(request: Request) -> IncidentEvents:
    events: IncidentEvents = request.app.state.incident_events
    return events


def get_clip_store(request: Request) -> ClipStore:
    store: ClipStore = request.app.state.clip_store
    return store


def get_learning(request: Request) -> FalseAlarmLearner | None:
    """What learns from false-alarm cancels (``app.state.device_thresholds``; None: nothing)."""
    learning: FalseAlarmLearner | None = getattr(request.app.state, "device_thresholds", None)
    return learning


EventsDep = Annotated[IncidentEvents, Depends(get_events)]
LearningDep = Annotated[FalseAlarmLearner | None, Depends(get_learning)]
ClipStoreDep = Annotated[ClipStore, Depends(get_clip_store)]

# RFC 3339 (the OpenAPI ``date-time`` format), offset required. Without this check pydantic
# would also take a number (``since=1.5``) as Unix time, which the schema does not allow.
_RFC3339 = re.compile(
    r"[0-9]{4}-[0-9]{2}-[0-9]{2}[Tt][0-9]{2}:[0-9]{2}:[0-9]{2}(\.[0-9]+)?([Zz]|[+-][0-9]{2}:[0-9]{2})"
)


def _rfc3339(value: object) -> object:
    if isinstance(value, str) and not _RFC3339.fullmatch(value):
        raise ValueError("must be an RFC 3339 date-time with its offset, e.g. 2026-11-22T09:00:00+09:00")
    return value


def _known_class(key: str) -> str:
    if key not in CLASS_KEYS:
        raise ValueError(f"must be one of {', '.join(CLASS_KEYS)}")
    return key


ZonedTime = Annotated[AwareDatetime, BeforeValidator(_rfc3339)]
ClassKey = Annotated[str, AfterValidator(_known_class), WithJsonSchema({"type": "string", "enum": list(CLASS_KEYS)})]


class CancelRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    reason: str | None = Field(default=None, max_length=200, pattern=NO_NUL)
    kind: CancelKind | None = Field(
        default=None,
        description="Why: `false_alarm` (similar false alarms teach the home's threshold), `handled`, `not_sure`.",
    )
    code: str | None = Field(
        default=None, max_length=200, pattern=NO_NUL, json_schema_extra={"writeOnly": True},
        description="A code the owner typed, if any (never echoed). The answer is the same whatever it is.",
    )  # fmt: skip


def _not_found() -> HTTPException:
    return HTTPException(status.HTTP_404_NOT_FOUND, {"code": "unknown_incident", "message": "no such incident"})


def _answer(result: ActionResult) -> dict[str, Any]:
    """200 when the incident stands as asked (a repeat included), else 409 with the truth."""
    if result.outcome is ActionOutcome.NOT_FOUND or result.incident is None:
        raise _not_found()
    if not result.fulfilled:
        raise HTTPException(
            status.HTTP_409_CONFLICT,
            {"code": result.outcome.value, "message": result.outcome.message, "incident": result.incident.to_json()},
        )
    return {"outcome": result.outcome.value, "incident": result.incident.to_json()}


@router.post(
    "/v1/incidents/{incident_id}/cancel",
    responses={**BAD_BODY, **UNAUTHORIZED, **INCIDENT_NOT_FOUND, **INCIDENT_CONFLICT},
)
async def cancel(
    incident_id: uuid.UUID,
    device: CurrentDevice,
    db: DatabaseDep,
    events: EventsDep,
    learning: LearningDep,
    body: CancelRequest | None = None,
) -> dict[str, Any]:
    """Cancel while the countdown runs: then it is never reported. Loses to the deadline truthfully."""
    reason = body.reason if body else None
    kind = body.kind if body else None
    code = body.code if body else None
    return _answer(
        await act_on_incident(
            db, incident_id, IncidentAction.CANCEL, device_id=device.id, reason=reason, kind=kind, code=code,
            events=events, learning=learning, actor="rest",
        )
    )


@router.post("/v1/incidents/{incident_id}/confirm", responses={**UNAUTHORIZED, **INCIDENT_NOT_FOUND, **INCIDENT_CONFLICT})
async def confirm(incident_id: uuid.UUID, device: CurrentDevice, db: DatabaseDep, events: EventsDep) -> dict[str, Any]:
    """Report now (SOS): the deadline becomes now and the worker reports within a sweep."""
    return _answer(
        await act_on_incident(db, incident_id, IncidentAction.CONFIRM, device_id=device.id, events=events, actor="rest")
    )


@router.get("/v1/incidents", responses=UNAUTHORIZED)
async def history(
    device: CurrentDevice,
    db: DatabaseDep,
    since: ZonedTime | None = None,
    until: ZonedTime | None = None,
    class_: Annotated[ClassKey | None, Query(alias="class")] = None,
    limit: Annotated[int, Query(ge=1, le=500)] = 100,
) -> dict[str, Any]:
    """The caller's incidents detected in ``[since, until)``, newest first.

    ``since`` and ``until`` are RFC 3339 date-times with their offset
    (``2026-11-22T09:00:00+09:00``); ``class`` is a class key."""
    incidents = await list_incidents(db, device.id, since=since, until=until, class_key=class_, limit=limit)
    return {"incidents": [i.to_json() for i in incidents]}


@router.get("/v1/incidents/{incident_id}", responses={**UNAUTHORIZED, **INCIDENT_NOT_FOUND})
async def detail(incident_id: uuid.UUID, device: CurrentDevice, db: DatabaseDep, store: ClipStoreDep) -> dict[str, Any]:
    """One incident with where its report went, a fresh link to its clip, and every access
    to the clip so far (this link included)."""
    incident = await get_incident(db, incident_id, device_id=device.id)
    if incident is None:
        raise _not_found()
    clip = await device_clip(db, incident_id)
    body = incident.to_json()
    body["clip"] = None
    if clip is not None:
        url = store.link(clip.key, CLIP_LINK_TTL_S)
        body["clip"] = {"url": url, "sha256": clip.sha256, "duration_s": clip.duration_s, "content_type": clip.content_type}
        await audit_clip_access(db, incident_id, CLIP_LINK_ISSUED, "owner", issued_link(url, CLIP_LINK_TTL_S))
    body["deliveries"] = await incident_deliveries(db, incident_id)
    body["clip_access"] = await clip_accesses(db, incident_id)
    return body


@router.get("/v1/clips/{key}", response_class=FileResponse, responses=CLIP_LINK)
async def clip_file(
    key: str, exp: int, sig: str, request: Request, store: ClipStoreDep, db: DatabaseDep
) -> FileResponse:
    """A clip behind a signed, expiring link (local storage; S3 links go to S3 directly).
    Each fetch is written to the incident's audit trail before the clip is sent."""
    if not isinstance(store, LocalClipStore) or not store.verify(key, exp, sig):
        raise HTTPException(status.HTTP_403_FORBIDDEN, {"code": "bad_link", "message": "the link is invalid or expired"})
    incident_id = clip_incident(key)
    if incident_id is None:
        raise HTTPException(status.HTTP_404_NOT_FOUND, {"code": "unknown_clip", "message": "no such clip"})
    path = store.path_for(key)
    if not path.is_file():
        raise HTTPException(
            status.HTTP_404_NOT_FOUND,
            {"code": "clip_pending", "message": "the clip is not stored yet; try again shortly"},
        )
    client = request.client.host if request.client else None
    detail: dict[str, Any] = {"client": client, "link_expires_at": exp}
    if "range" in request.headers:  # a player fetching part of the clip
        detail["range"] = request.headers["range"]
    if not await audit_clip_access(db, incident_id, CLIP_DOWNLOADED, "link", detail):
        # A clip whose incident is gone (erased) is not served: nothing could record the access.
        raise HTTPException(status.HTTP_404_NOT_FOUND, {"code": "unknown_clip", "message": "no such clip"})
    return FileResponse(path, media_type=CONTENT_TYPE, headers={"Cache-Control": "private, max-age=300"})
