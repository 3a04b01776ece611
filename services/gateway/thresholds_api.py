"""What the owner's cancels taught, and the owner's summary: ``app.include_router(thresholds_api.router)``.

=======  ==============================================  ===================================
GET      /v1/devices/me/thresholds                       per class: ``base``, ``current``,
                                                         ``ceiling``, ``learning`` and its
                                                         ``adjustments`` (undone ones too)
POST     /v1/devices/me/thresholds/{adjustment_id}/undo  → 200 ``{undone, thresholds}``:
                                                         the class is back to what it was
                                                         before; again: ``undone`` empty;
                                                         404 ``unknown_adjustment``
GET      /v1/devices/me/summary                          what was heard, cancelled and
                                                         changed in ``[since, until)`` (RFC
                                                         3339; default the last 7 days)
=======  ==============================================  ===================================

All need the device token and show only the caller's device. The rule and its bounds:
:mod:`shared.incidents.threshold_learning` (docs/evidence.md). Uses ``app.state.db`` and
``app.state.device_thresholds`` (:class:`~services.gateway.device_thresholds.DeviceThresholds`).
"""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Depends, HTTPException, Path, Request, status

from services.gateway.auth import CurrentDevice, DatabaseDep
from services.gateway.device_thresholds import DeviceThresholds
from services.gateway.incidents_api import ZonedTime
from services.gateway.openapi import UNAUTHORIZED, ApiError, ApiRoute
from shared.incidents.device_summary import device_summary

router = APIRouter(tags=["learning"], route_class=ApiRoute, responses=UNAUTHORIZED)

# An adjustment id is a positive integer; larger ones cannot exist (the column is a 32-bit int).
_MAX_ID = 2**31 - 1


def get_thresholds(request: Request) -> DeviceThresholds:
    thresholds: DeviceThresholds = request.app.state.device_thresholds
    return thresholds


ThresholdsDep = Annotated[DeviceThresholds, Depends(get_thresholds)]


def _error(description: str) -> dict[str, Any]:
    return {"model": ApiError, "description": description}


@router.get("/v1/devices/me/thresholds")
async def thresholds(device: CurrentDevice, learning: ThresholdsDep) -> dict[str, Any]:
    """Per emergency class: the threshold without learning (`base`), the one in force
    (`current`), the highest learning may reach (`ceiling`), how the class learns, and every
    adjustment its cancels made, undone ones included."""
    return await learning.settings(device.id)


@router.post(
    "/v1/devices/me/thresholds/{adjustment_id}/undo",
    responses={status.HTTP_404_NOT_FOUND: _error("No adjustment of the caller's device has this id (`unknown_adjustment`).")},
)
async def undo(
    adjustment_id: Annotated[int, Path(ge=1, le=_MAX_ID)], device: CurrentDevice, learning: ThresholdsDep
) -> dict[str, Any]:
    """Undo an adjustment: its class's threshold goes back to what it was before it (newer
    adjustments of the class are undone with it). The rows stay in the log, stamped
    `undone_at`. Repeating it is safe: `undone` is then empty."""
    undone = await learning.undo(device.id, adjustment_id)
    if undone is None:
        raise HTTPException(
            status.HTTP_404_NOT_FOUND, {"code": "unknown_adjustment", "message": "no such threshold adjustment"}
        )
    return {"undone": [adjustment.to_json() for adjustment in undone], "thresholds": await learning.settings(device.id)}


@router.get(
    "/v1/devices/me/summary",
    responses={status.HTTP_400_BAD_REQUEST: _error("`since` is not before `until`, or they are over 366 days apart (`bad_period`).")},
)
async def summary(
    device: CurrentDevice, db: DatabaseDep, since: ZonedTime | None = None, until: ZonedTime | None = None
) -> dict[str, Any]:
    """What the device heard in `[since, until)` (RFC 3339 with offset; default the last 7
    days): incidents per class and state, cancels by kind, the threshold changes made or undone,
    and the same as a short text in Korean and English."""
    try:
        return (await device_summary(db, device.id, since=since, until=until)).to_json()
    except ValueError as error:  # the period, once its defaults are filled in
        raise HTTPException(status.HTTP_400_BAD_REQUEST, {"code": "bad_period", "message": str(error)}) from None
