"""Households: the devices of one home, which corroborate each other's detections
(docs/evidence.md). ``app.include_router(households_api.router)``.

=======  ========================  ==================================================
POST     /v1/households            ``{name}`` → 201 ``{id, name, join_code, members}``;
                                   the caller is its first member; the code is shown once
POST     /v1/households/join       ``{join_code}`` → 200 the household; 404 ``unknown_join_code``
GET      /v1/households/me         the caller's household and its devices; 404 ``no_household``
DELETE   /v1/households/me         leave it (the last to leave deletes it); 404 ``no_household``
=======  ========================  ==================================================

Every route needs the device token and acts on the caller's device only. A device belongs to
at most one household: creating or joining another while in one is 409 ``in_household``.
Joining is rate limited per client address (``GatewaySettings.household_join_per_ip``) on
top of the REST limits. Where each device listens is its ``room``, set with ``PATCH
/v1/devices/me``. ``listening`` says whether a member's windows reached the household's
activity board in the last few seconds (null when this gateway has no board to ask).
"""

from __future__ import annotations

import logging
import time
import uuid
from datetime import datetime

from fastapi import APIRouter, Depends, HTTPException, Request, Response, status
from pydantic import BaseModel, ConfigDict, Field

from services.gateway.auth import CurrentDevice, DatabaseDep, unauthorized
from services.gateway.openapi import BAD_BODY, UNAUTHORIZED, ApiError, ApiRoute, Responses
from services.gateway.rate_limit import limit_household_join
from services.gateway.schemas import NOT_BLANK
from shared.household import ActivityBoard
from shared.household.membership import (
    AlreadyInHousehold,
    HouseholdView,
    UnknownJoinCode,
    create_household,
    join_household,
    leave_household,
    read_household,
)

log = logging.getLogger(__name__)

router = APIRouter(prefix="/v1/households", tags=["households"], route_class=ApiRoute, responses=UNAUTHORIZED)

# A member whose windows reached the board this recently is listening now (windows come every 0.5 s).
LISTENING_S = 5.0

_IN_HOUSEHOLD: Responses = {
    status.HTTP_409_CONFLICT: {
        "model": ApiError,
        "description": "The device already belongs to another household (`in_household`); leave it first.",
    }
}
_NO_HOUSEHOLD: Responses = {
    status.HTTP_404_NOT_FOUND: {"model": ApiError, "description": "The device belongs to no household (`no_household`)."}
}
_UNKNOWN_CODE: Responses = {
    status.HTTP_404_NOT_FOUND: {"model": ApiError, "description": "No household has this join code (`unknown_join_code`)."}
}


class _Input(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True)


class HouseholdName(_Input):
    """``POST /v1/households``."""

    name: str = Field(min_length=1, max_length=200, pattern=NOT_BLANK, examples=["Kim family, Jongno"])


class JoinCode(_Input):
    """``POST /v1/households/join``: the code another member's device was shown (dashes,
    spaces and case do not matter)."""

    join_code: str = Field(min_length=1, max_length=64, pattern=NOT_BLANK, examples=["K7QM-2XD4-..."])


class HouseholdMember(BaseModel):
    """A device of the household: its owner's name and room, whether it is the caller's, and
    whether it is listening now (null: not known here)."""

    device_id: uuid.UUID
    name: str
    room: str | None
    this_device: bool
    listening: bool | None


class HouseholdOut(BaseModel):
    """A household and its devices (in the order they were registered)."""

    id: uuid.UUID
    name: str
    created_at: datetime
    members: list[HouseholdMember]


class HouseholdCreated(HouseholdOut):
    """A new household; ``join_code`` is shown only here: read it out to the next device."""

    join_code: str


class HouseholdLeft(BaseModel):
    """The caller left ``household_id``; ``deleted`` when it was the last member."""

    household_id: uuid.UUID
    deleted: bool


@router.post("", status_code=status.HTTP_201_CREATED, responses={**BAD_BODY, **_IN_HOUSEHOLD})
async def create(
    body: HouseholdName, device: CurrentDevice, db: DatabaseDep, request: Request, response: Response
) -> HouseholdCreated:
    """Create a household with the caller as its first member; returns its join code, once."""
    try:
        view, code = await create_household(db, device.id, body.name)
    except AlreadyInHousehold:
        raise _in_household() from None
    except LookupError:
        raise _gone() from None
    response.headers["Cache-Control"] = "no-store"  # the code is a credential
    out = await _household_out(view, device.id, request)
    return HouseholdCreated(**out.model_dump(), join_code=code)


@router.post(
    "/join", dependencies=[Depends(limit_household_join)], responses={**BAD_BODY, **_UNKNOWN_CODE, **_IN_HOUSEHOLD}
)
async def join(body: JoinCode, device: CurrentDevice, db: DatabaseDep, request: Request) -> HouseholdOut:
    """Join the household of ``join_code`` (joining one's own again is harmless)."""
    try:
        view = await join_household(db, device.id, body.join_code)
    except UnknownJoinCode:
        raise HTTPException(
            status.HTTP_404_NOT_FOUND, {"code": "unknown_join_code", "message": "no household has this join code"}
        ) from None
    except AlreadyInHousehold:
        raise _in_household() from None
    except LookupError:
        raise _gone() from None
    log.info("device %s joined household %s", device.id, view.id)
    return await _household_out(view, device.id, request)


@router.get("/me", responses=_NO_HOUSEHOLD)
async def read(device: CurrentDevice, db: DatabaseDep, request: Request) -> HouseholdOut:
    """The caller's household, its devices, their rooms and whether each is listening now."""
    view = await read_household(db, device.id)
    if view is None:
        raise _no_household()
    return await _household_out(view, device.id, request)


@router.delete("/me", responses=_NO_HOUSEHOLD)
async def leave(device: CurrentDevice, db: DatabaseDep) -> HouseholdLeft:
    """Leave the household; the last device to leave deletes it. The device's detections are
    then judged alone again (its sessions already streaming still post until they end)."""
    left = await leave_household(db, device.id)
    if left is None:
        raise _no_household()
    household_id, deleted = left
    log.info("device %s left household %s%s", device.id, household_id, " (deleted)" if deleted else "")
    return HouseholdLeft(household_id=household_id, deleted=deleted)


async def _household_out(view: HouseholdView, caller: uuid.UUID, request: Request) -> HouseholdOut:
    listening = await _listening(view.id, request)
    return HouseholdOut(
        id=view.id,
        name=view.name,
        created_at=view.created_at,
        members=[
            HouseholdMember(
                device_id=m.device_id, name=m.name, room=m.room, this_device=m.device_id == caller,
                listening=None if listening is None else str(m.device_id) in listening,
            )  # fmt: skip
            for m in view.members
        ],
    )


async def _listening(household_id: uuid.UUID, request: Request) -> set[str] | None:
    """The members whose windows reached the board lately; None without a board or when it fails."""
    board: ActivityBoard | None = getattr(request.app.state, "household_board", None)
    if board is None:
        return None
    now = time.time()
    try:
        heard = await board.read(household_id, now - LISTENING_S, now + 1.0)
    except Exception as error:  # the members are still worth showing
        log.warning("household %s: the activity board could not be read: %s", household_id, error)
        return None
    return {summary.device_id for summary in heard}


def _in_household() -> HTTPException:
    return HTTPException(
        status.HTTP_409_CONFLICT,
        {"code": "in_household", "message": "this device already belongs to a household; leave it first"},
    )


def _no_household() -> HTTPException:
    return HTTPException(status.HTTP_404_NOT_FOUND, {"code": "no_household", "message": "this device has no household"})


def _gone() -> HTTPException:
    # Deregistered between authentication and now: the token no longer names anything.
    return unauthorized("invalid_token", "the device token is not valid (the device is gone)")
