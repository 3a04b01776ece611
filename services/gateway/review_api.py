"""The review loop's REST routes, for the reviewer page (``web/review.html``):
``app.include_router(review_api.router)``.

=======  ==========================================  =========================================
GET      /v1/review/segments                         ``pending`` (default true), ``limit`` →
                                                     ``{segments, classes}``, oldest first
GET      /v1/review/segments/{id}                    one segment with its label ``history``
GET      /v1/review/segments/{id}/audio?reviewer=    its clip (FLAC); audited on the incident
POST     /v1/review/segments/{id}/reviews            ``{label, reviewer, note?}`` → 201
                                                     ``{review, segment}``
GET      /v1/review/report                           per-class precision (``kind`` optional)
=======  ==========================================  =========================================

Every route needs ``Authorization: Bearer <reviewer token>`` (``HEARO_GATEWAY_REVIEWER_TOKEN``,
compared in constant time): 401 without it or with another value; 403 ``review_disabled``
when one is sent while the gateway has none set. A device token opens nothing here. A segment is what
:mod:`shared.review.segments` says (a report, or a false alarm its owner donated); any other
incident is a 404 ``unknown_segment``, so consent is checked on every read and label. The
reviewer's name is the one the page sends: the token says a reviewer is asking, the name says
which one, for the label's history and the clip's audit trail.

The app must set ``app.state.db``, ``app.state.clip_store`` and ``app.state.reviewer_token``.
"""

from __future__ import annotations

import hmac
import uuid
from typing import Annotated, Any

from fastapi import APIRouter, Depends, HTTPException, Query, Request, Response, status
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from pydantic import AfterValidator, BaseModel, ConfigDict, Field, WithJsonSchema

from services.gateway.auth import DatabaseDep
from services.gateway.incidents_api import ClipStoreDep
from services.gateway.openapi import BAD_BODY, ApiError, ApiRoute, Responses
from services.gateway.schemas import NO_NUL
from shared.clips import CONTENT_TYPE
from shared.incident_state import IncidentKind
from shared.review import (
    REVIEW_LABELS,
    SegmentGone,
    check_label,
    get_segment,
    list_segments,
    read_segment_audio,
    record_review,
    review_history,
    review_precision,
)
from shared.review.segments import MAX_NOTE, MAX_REVIEWER
from shared.taxonomy import CLASSES

_bearer = HTTPBearer(auto_error=False, description="The reviewer token (HEARO_GATEWAY_REVIEWER_TOKEN).")

REVIEWER_RESPONSES: Responses = {
    status.HTTP_401_UNAUTHORIZED: {
        "model": ApiError,
        "description": "No reviewer token (`missing_token`), or not the gateway's (`invalid_token`).",
        "headers": {"WWW-Authenticate": {"description": "`Bearer`", "schema": {"type": "string"}}},
    },
    status.HTTP_403_FORBIDDEN: {
        "model": ApiError, "description": "Review is off: the gateway has no reviewer token (`review_disabled`).",
    },
}
SEGMENT_NOT_FOUND: Responses = {
    status.HTTP_404_NOT_FOUND: {
        "model": ApiError,
        "description": "No reviewable segment has this id (`unknown_segment`): no such incident, no clip, or "
        "audio its owner did not consent to have reviewed.",
    }
}


async def current_reviewer(
    request: Request, credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)]
) -> None:
    """Admit the holder of the reviewer token: 401 without a token, 403 while the gateway has
    none set, 401 for any other value."""
    if credentials is None:
        raise _unauthorized("missing_token", "send the reviewer token as 'Authorization: Bearer <token>'")
    expected: str = request.app.state.reviewer_token
    if not expected:
        raise HTTPException(
            status.HTTP_403_FORBIDDEN,
            {"code": "review_disabled", "message": "review is off on this gateway (set HEARO_GATEWAY_REVIEWER_TOKEN)"},
        )
    if not hmac.compare_digest(credentials.credentials.encode(), expected.encode()):
        raise _unauthorized("invalid_token", "this is not the reviewer token")


def _unauthorized(code: str, message: str) -> HTTPException:
    return HTTPException(status.HTTP_401_UNAUTHORIZED, {"code": code, "message": message}, {"WWW-Authenticate": "Bearer"})


router = APIRouter(
    prefix="/v1/review", tags=["review"], route_class=ApiRoute, dependencies=[Depends(current_reviewer)],
    responses=REVIEWER_RESPONSES,
)  # fmt: skip

Label = Annotated[str, AfterValidator(check_label), WithJsonSchema({"type": "string", "enum": list(REVIEW_LABELS)})]
ReviewerName = Annotated[str, Field(min_length=1, max_length=MAX_REVIEWER, pattern=r"^[^\x00]*\S[^\x00]*$")]


class ReviewRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    label: Label = Field(description="A class key (`normal` for a false alarm) or `unclear`.")
    reviewer: ReviewerName = Field(description="Who is labelling, kept with the label.")
    note: str | None = Field(default=None, max_length=MAX_NOTE, pattern=NO_NUL)


def _gone(incident_id: uuid.UUID) -> HTTPException:
    return HTTPException(
        status.HTTP_404_NOT_FOUND, {"code": "unknown_segment", "message": f"no reviewable segment {incident_id}"}
    )


@router.get("/segments")
async def segments(
    db: DatabaseDep,
    pending: Annotated[bool, Query(description="Only segments without a label yet.")] = True,
    limit: Annotated[int, Query(ge=1, le=500)] = 100,
) -> dict[str, Any]:
    """The segments to review, oldest detection first: decision, score timeline, averages, newest
    label; with ``classes``, the labels a reviewer can give (key, id, names) for the page."""
    classes = [{"key": c.key, "id": c.id, "label_en": c.label_en, "label_ko": c.label_ko} for c in CLASSES]
    return {"segments": [s.to_json() for s in await list_segments(db, pending=pending, limit=limit)], "classes": classes}


@router.get("/segments/{incident_id}", responses=SEGMENT_NOT_FOUND)
async def segment(incident_id: uuid.UUID, db: DatabaseDep) -> dict[str, Any]:
    """One segment with every label it was given (``history``, newest first)."""
    try:
        found = await get_segment(db, incident_id)
    except SegmentGone:
        raise _gone(incident_id) from None
    return {**found.to_json(), "history": [r.to_json() for r in await review_history(db, incident_id)]}


@router.get(
    "/segments/{incident_id}/audio", response_class=Response,
    responses={**SEGMENT_NOT_FOUND, 200: {"content": {CONTENT_TYPE: {"schema": {"type": "string", "format": "binary"}}}}},
)  # fmt: skip
async def segment_audio(incident_id: uuid.UUID, db: DatabaseDep, store: ClipStoreDep, reviewer: ReviewerName) -> Response:
    """The segment's clip (FLAC). Each fetch is written to the incident's audit trail first
    (``clip_downloaded``, actor ``reviewer``, with the name), where its owner sees it."""
    try:
        flac = await read_segment_audio(db, store, incident_id, reviewer=reviewer, via="review")
    except SegmentGone:
        raise _gone(incident_id) from None
    return Response(flac, media_type=CONTENT_TYPE, headers={"Cache-Control": "no-store"})


@router.post(
    "/segments/{incident_id}/reviews", status_code=status.HTTP_201_CREATED, responses={**BAD_BODY, **SEGMENT_NOT_FOUND}
)
async def review(incident_id: uuid.UUID, body: ReviewRequest, db: DatabaseDep) -> dict[str, Any]:
    """Label the segment: a new label, the earlier ones kept as its history."""
    try:
        given = await record_review(db, incident_id, body.label, reviewer=body.reviewer, note=body.note)
        found = await get_segment(db, incident_id)
    except SegmentGone:
        raise _gone(incident_id) from None
    return {"review": given.to_json(), "segment": found.to_json()}


@router.get("/report")
async def report(db: DatabaseDep, kind: IncidentKind | None = None) -> dict[str, Any]:
    """Per class the system raised: reviewed incidents, confirmed, unclear, corrected, precision."""
    return (await review_precision(db, kind=None if kind is None else kind.value)).to_json()
