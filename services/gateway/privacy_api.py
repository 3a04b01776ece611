"""The owner's privacy routes: ``app.include_router(privacy_api.router)``.

=======  =================================  ================================================
GET      /v1/devices/me/export              everything kept about the caller's device and
                                            incidents (:func:`~services.gateway.privacy.export_device_data`)
POST     /v1/incidents/{id}/donate          keep a cancelled incident's clip for training
                                            → 200 ``{outcome, donated_at, message}``;
                                            409 ``not_cancelled`` / ``no_clip``; 404
DELETE   /v1/incidents/{id}/clip            delete a cancelled incident's clip now (the
                                            owner need not wait for the grace period)
                                            → 200 ``{outcome, message}``;
                                            409 ``not_cancelled`` / ``no_clip``; 404
=======  =================================  ================================================

All need the device token and touch only the caller's own data. Erasure is
``DELETE /v1/devices/me`` (``devices``), which calls :func:`~services.gateway.privacy.erase_device_data`.
Uses ``app.state.db`` and ``app.state.clip_store``.
"""

from __future__ import annotations

import uuid
from typing import Any

from fastapi import APIRouter, HTTPException, status
from fastapi.responses import JSONResponse

from services.gateway.auth import CurrentDevice, DatabaseDep
from services.gateway.incidents_api import CLIP_LINK_TTL_S, ClipStoreDep
from services.gateway.openapi import UNAUTHORIZED, ApiRoute
from services.gateway.privacy import export_device_data
from shared.incident_privacy import DonationOutcome, delete_clip, donate_clip
from shared.incident_state import IncidentState
from shared.incidents import get_incident

router = APIRouter(tags=["privacy"], route_class=ApiRoute, responses=UNAUTHORIZED)

_ERROR = {"application/json": {"example": {"detail": {"code": "...", "message": "..."}}}}
# ``clip_deleted``'s ``detail.reason`` when the owner deleted it (beside the worker's reasons).
REASON_OWNER_DELETED = "deleted_by_owner"


@router.get("/v1/devices/me/export")
async def export(device: CurrentDevice, db: DatabaseDep, store: ClipStoreDep) -> JSONResponse:
    """Everything kept about the caller: profile, address, location, contacts, consents, and
    every incident with its audit trail, where the report went, what each contact was told
    and a link (1 h) to its clip while the clip is still stored. Each link is audited."""
    body = await export_device_data(db, store, device, CLIP_LINK_TTL_S)
    # Holds the profile, medical notes and clip links: no cache may keep it.
    return JSONResponse(body, headers={"Cache-Control": "no-store"})


@router.post(
    "/v1/incidents/{incident_id}/donate",
    responses={404: {"description": "no such incident", "content": _ERROR},
               409: {"description": "not cancelled, or no clip stored", "content": _ERROR}},  # fmt: skip
)
async def donate(incident_id: uuid.UUID, device: CurrentDevice, db: DatabaseDep) -> dict[str, Any]:
    """Donate the clip of a cancelled incident (a false alarm) for training: explicit consent,
    recorded with its time. The clip is then not deleted after the false-alarm grace period
    (the deployment's retention and an erasure of the device still delete it)."""
    donation = await donate_clip(db, incident_id, device.id)
    outcome = donation.outcome
    if outcome is DonationOutcome.NOT_FOUND:
        raise HTTPException(status.HTTP_404_NOT_FOUND, {"code": "unknown_incident", "message": outcome.message})
    if outcome in (DonationOutcome.NOT_CANCELLED, DonationOutcome.NO_CLIP):
        raise HTTPException(status.HTTP_409_CONFLICT, {"code": outcome.value, "message": outcome.message})
    return {
        "outcome": outcome.value,
        "donated_at": donation.donated_at.isoformat() if donation.donated_at else None,
        "message": outcome.message,
    }


@router.delete(
    "/v1/incidents/{incident_id}/clip",
    responses={404: {"description": "no such incident", "content": _ERROR},
               409: {"description": "not cancelled, or no clip stored", "content": _ERROR}},  # fmt: skip
)
async def delete_own_clip(
    incident_id: uuid.UUID, device: CurrentDevice, db: DatabaseDep, store: ClipStoreDep
) -> dict[str, Any]:
    """Delete the clip of a cancelled incident (a false alarm) now, donated or not, instead of
    after the grace period. A reported incident's clip is the agency's evidence and stays until
    the deployment's retention. Audited as ``clip_deleted`` (reason ``deleted_by_owner``)."""
    incident = await get_incident(db, incident_id, device_id=device.id)
    if incident is None:
        raise HTTPException(status.HTTP_404_NOT_FOUND, {"code": "unknown_incident", "message": "no such incident"})
    if incident.state is not IncidentState.CANCELLED:
        raise HTTPException(
            status.HTTP_409_CONFLICT,
            {"code": "not_cancelled", "message": "only the clip of a cancelled incident (a false alarm) can be "
                                                 "deleted; a report's clip is the agency's evidence"},
        )  # fmt: skip
    # A concurrent grace deletion holding the row also answers no_clip: either way it is going.
    if not await delete_clip(db, store, incident_id, reason=REASON_OWNER_DELETED, actor="owner", keep_donated=False):
        raise HTTPException(status.HTTP_409_CONFLICT, {"code": "no_clip", "message": DonationOutcome.NO_CLIP.message})
    return {"outcome": "deleted", "message": "the clip is deleted"}
