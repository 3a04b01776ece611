"""The agencies' outcome callbacks: ``app.include_router(outcomes_api.router_for(settings.clips))``.

=======  =================================  ================================================
POST     /v1/incidents/{id}/outcome         an agency's answer to a report, signed as a
                                            Standard Webhook with the report's callback
                                            secret → 200 ``{result, outcome}``
=======  =================================  ================================================

The body is ``{"agency_id", "outcome", "note"?}`` (``outcome``: ``confirmed_emergency``,
``no_emergency_found`` or ``unable_to_reach``; ``note`` at most 500 characters). The
request must carry ``webhook-id`` (a fresh id per answer), ``webhook-timestamp`` (Unix
seconds, within 5 minutes of the gateway's clock) and ``webhook-signature``, made with the
secret the report gave this agency for this incident (:mod:`shared.outcome_callback`). No
device token: the signature is the authorisation, and it is checked before anything is read
from the database, so an unsigned request learns nothing about which incidents exist.

=======  ==============================================================================
200      ``result``: ``recorded`` (first answer), ``replaced`` (a different answer, signed
         later), ``unchanged`` (the same answer again); ``outcome``: as it now stands
401      ``missing_signature``, ``stale_signature`` (timestamp outside 5 minutes) or
         ``invalid_signature`` (not this incident's and agency's secret)
404      ``unknown_incident``
409      ``not_reported`` (cancelled, or not reported yet), ``replayed`` (this
         ``webhook-id`` was recorded already), ``superseded`` (signed before the answer
         recorded); ``detail.outcome`` is the agency's answer as it stands, or null
=======  ==============================================================================

Uses ``app.state.db``. Rules of the ledger: :mod:`shared.outcome_ledger`.
"""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Header, HTTPException, Request, status
from pydantic import BaseModel, ConfigDict, Field

from services.gateway.auth import DatabaseDep
from services.gateway.openapi import BAD_BODY, ApiError, ApiRoute, Responses
from services.gateway.schemas import NO_NUL
from shared.clips import ClipStorageSettings
from shared.incident_state import IncidentOutcome
from shared.outcome_callback import CALLBACK_PATH, OutcomeCallbacks
from shared.outcome_ledger import MAX_NOTE_LENGTH, LedgerAnswer, LedgerResult, record_outcome
from shared.standard_webhooks import WebhookVerificationError, verify

_SIGNATURE_CODES = {"missing": "missing_signature", "stale": "stale_signature", "signature": "invalid_signature"}

OUTCOME_RESPONSES: Responses = {
    status.HTTP_401_UNAUTHORIZED: {
        "model": ApiError,
        "description": "Not signed (`missing_signature`), signed too long ago or ahead (`stale_signature`), "
        "or not with this incident's callback secret for this agency (`invalid_signature`).",
    },
    status.HTTP_404_NOT_FOUND: {"model": ApiError, "description": "No such incident (`unknown_incident`)."},
    status.HTTP_409_CONFLICT: {
        "model": ApiError,
        "description": "The incident was never reported (`not_reported`), this `webhook-id` was recorded "
        "already (`replayed`), or an answer signed later is recorded (`superseded`); `detail.outcome` is the "
        "agency's answer as it stands, or null.",
    },
}


class OutcomeRequest(BaseModel):
    """An agency's answer to a report."""

    model_config = ConfigDict(extra="forbid")

    agency_id: str = Field(min_length=1, max_length=64, pattern=NO_NUL, description="the report's `data.agency.id`")
    outcome: IncidentOutcome
    note: str | None = Field(default=None, max_length=MAX_NOTE_LENGTH, pattern=NO_NUL)


class RecordedOutcome(BaseModel):
    incident_id: str
    agency_id: str
    outcome: IncidentOutcome
    note: str | None
    signed_at: datetime
    received_at: datetime


class OutcomeAnswer(BaseModel):
    result: str = Field(description="`recorded`, `replaced` or `unchanged`")
    outcome: RecordedOutcome


def router_for(clips: ClipStorageSettings) -> APIRouter:
    """The callback route, checking signatures with the secrets derived from ``clips``' key."""
    router = APIRouter(tags=["outcomes"], route_class=ApiRoute)
    callbacks = OutcomeCallbacks.from_settings(clips)

    @router.post(CALLBACK_PATH, responses={**BAD_BODY, **OUTCOME_RESPONSES})
    async def post_outcome(
        incident_id: uuid.UUID,
        body: OutcomeRequest,
        request: Request,
        db: DatabaseDep,
        webhook_id: Annotated[str | None, Header(description="a fresh id per answer")] = None,
        webhook_timestamp: Annotated[str | None, Header(description="Unix seconds when signed")] = None,
        webhook_signature: Annotated[str | None, Header(description="`v1,<base64 HMAC-SHA256>`")] = None,
    ) -> OutcomeAnswer:
        """An agency's answer to a report: a confirmed emergency, no emergency found, or unable to
        reach. Signed as a Standard Webhook with the report's `outcome_callback.secret`; a later,
        different answer from the same agency replaces the earlier one (both stay audited)."""
        raw = await request.body()
        try:
            message_id = verify(callbacks.secrets(incident_id, body.agency_id), request.headers, raw)
        except WebhookVerificationError as error:
            raise HTTPException(
                status.HTTP_401_UNAUTHORIZED, {"code": _SIGNATURE_CODES[error.fault], "message": str(error)}
            ) from None
        signed_at = datetime.fromtimestamp(int(request.headers["webhook-timestamp"]), UTC)
        result = await record_outcome(
            db, incident_id, body.agency_id, body.outcome, message_id=message_id, signed_at=signed_at, note=body.note
        )
        return _answer(result)

    return router


_CONFLICTS = {
    LedgerAnswer.NOT_REPORTED: "the incident was never reported (cancelled, or not reported yet)",
    LedgerAnswer.REPLAYED: "this webhook-id was recorded already; send a new answer with a new id",
    LedgerAnswer.SUPERSEDED: "an answer signed later is recorded; this older one does not replace it",
}


def _answer(result: LedgerResult) -> OutcomeAnswer:
    current: dict[str, Any] | None = None if result.current is None else result.current.to_json()
    if result.answer is LedgerAnswer.NOT_FOUND:
        raise HTTPException(status.HTTP_404_NOT_FOUND, {"code": "unknown_incident", "message": "no such incident"})
    if not result.answer.accepted or current is None:
        message = _CONFLICTS.get(result.answer, result.answer.value)
        raise HTTPException(
            status.HTTP_409_CONFLICT, {"code": result.answer.value, "message": message, "outcome": current}
        )
    return OutcomeAnswer(result=result.answer.value, outcome=RecordedOutcome.model_validate(current))
