"""Device registration and self-service: the ``/v1/devices`` REST routes.

Mount with ``app.include_router(devices.router)``; the routes take the process's
:class:`~shared.db.Database` from ``app.state.db``, which the app must set before serving.

=======  ========================  ==================================================
POST     /v1/devices               register (enrolment key) → 201 ``{device_id, token}``
GET      /v1/devices/me            the caller's device → ``DeviceOut``
PATCH    /v1/devices/me            replace the fields given → ``DeviceOut``
POST     /v1/devices/me/token      rotate the token; the old one stops working → 200
DELETE   /v1/devices/me            erase the device and its owner's data → 200 statement
=======  ========================  ==================================================

Rotating or deleting also ends the device's open streaming sessions on the old token, on
every gateway (``revocation``: close 4001 within about a second). Registration needs the
deployment's enrolment key when one is set (``enrolment``; always
outside development) and is rate limited per client address (``rate_limit``). Every ``/me``
route needs ``Authorization: Bearer <token>`` and only ever touches the caller's own device. The token is in the response body exactly once, at registration or
rotation, and is never stored.
"""

from __future__ import annotations

import asyncio
import uuid
from typing import Any

from typing import Annotated

from fastapi import APIRouter, Depends, HTTPException, Response, status
from fastapi.exceptions import RequestValidationError
from sqlalchemy import delete, func, inspect, select
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import selectinload

from services.gateway.auth import CurrentDevice, DatabaseDep, issue_token, unauthorized
from services.gateway.enrolment import ENROLMENT_RESPONSES, require_enrolment_key
from services.gateway.incidents_api import ClipStoreDep, EventsDep
from services.gateway.openapi import BAD_BODY, ERASURE_DEFERRED, UNAUTHORIZED, ApiRoute
from services.gateway.privacy import ErasureDeferred, erase_device_data
from services.gateway.listening_modes import AnomalyPolicyDep, set_listening_mode, with_anomaly_state
from services.gateway.settings_watch import SettingsChanged, SettingsChannel, settings_changes_of
from services.gateway.rate_limit import limit_registration
from services.gateway.revocation import DeviceRevoked, RevocationChannel, revocations_of
from services.gateway.schemas import (
    Contact,
    DeviceCredentials,
    DeviceOut,
    DeviceRegistration,
    DeviceUpdate,
    Location,
    Profile,
    device_out,
)
from shared.db import Device, EmergencyContact
from shared.device_modes import DeviceProfile
from shared.incidents.duress import hash_code

# Every route but registration (which documents its own 401) needs the device token.
router = APIRouter(prefix="/v1/devices", tags=["devices"], route_class=ApiRoute, responses=UNAUTHORIZED)

RevocationsDep = Annotated[RevocationChannel, Depends(revocations_of)]
SettingsChangesDep = Annotated[SettingsChannel, Depends(settings_changes_of)]

# The token is a credential: keep it out of every cache between here and the device.
_NO_STORE = {"Cache-Control": "no-store"}


@router.post(
    "",
    status_code=status.HTTP_201_CREATED,
    # In this order: the rate limit first, so enrolment keys cannot be guessed at speed.
    dependencies=[Depends(limit_registration), Depends(require_enrolment_key)],
    responses={**BAD_BODY, **ENROLMENT_RESPONSES},
)
async def register_device(
    body: DeviceRegistration, db: DatabaseDep, response: Response
) -> DeviceCredentials:
    """Register a device with its owner's profile and consents; returns its token, once."""
    token, token_hash = issue_token()
    device = Device(
        token_hash=token_hash,
        consent_recording=body.consent_recording,
        consent_location=body.consent_location,
        consent_share_profile=body.consent_share_profile,
        address=body.address,
        contacts=_contact_rows(body.contacts),
    )
    _set_profile(device, body.profile)
    _set_location(device, body.location)
    async with db.session() as session:
        session.add(device)
    response.headers.update(_NO_STORE)
    return DeviceCredentials(device_id=device.id, token=token)


@router.get("/me")
async def read_device(device: CurrentDevice, db: DatabaseDep, policy: AnomalyPolicyDep) -> DeviceOut:
    """The caller's device, profile, location, contacts and consents, its listening mode and
    its anomaly model's state (docs/anomaly.md)."""
    return await with_anomaly_state(device_out(device), db, policy)


@router.patch("/me", responses=BAD_BODY)
async def update_device(
    body: DeviceUpdate, current: CurrentDevice, db: DatabaseDep, settings_changes: SettingsChangesDep,
    policy: AnomalyPolicyDep,
) -> DeviceOut:
    """Replace each top-level field present in the body; absent fields stay as they are.

    ``address`` or ``location`` set to null clears it; ``contacts`` replaces the whole
    list. Turning ``consent_location`` off also forgets the stored location. ``duress_code``
    is kept only as a slow salted hash (null removes it) and never returned. A new
    ``device_profile`` reaches the device's live sessions within a second (docs/daycare.md), and
    so do new ``spoken_languages`` (docs/spoken.md) and a new ``listening_mode`` (docs/anomaly.md;
    ``inactivity_span_s`` null: the default).
    """
    given = body.model_fields_set
    # Hashed before the transaction: scrypt takes a fraction of a second, off the event loop.
    code = body.duress_code
    duress_hash = None if code is None else await asyncio.to_thread(hash_code, code)
    async with db.session() as session:
        device = await _load_for_update(session, current.id)
        consent_location = (
            body.consent_location if body.consent_location is not None else device.consent_location
        )
        if body.location is not None and not consent_location:
            raise RequestValidationError(
                [
                    {
                        "type": "value_error",
                        "loc": ("body", "location"),
                        "msg": "a location needs consent_location to be true",
                        "input": body.location.model_dump(),
                    }
                ]
            )
        if body.profile is not None:
            _set_profile(device, body.profile)
        if "address" in given:
            device.address = body.address
        if "room" in given:
            device.room = body.room
        if body.contacts is not None:
            device.contacts = _contact_rows(body.contacts)
        _update_consents(device, body)
        if "location" in given:
            _set_location(device, body.location)
        if not device.consent_location:
            _set_location(device, None)
        if "duress_code" in given:
            device.duress_code_hash = duress_hash
        listening_changed = body.device_profile is not None and body.device_profile != device.profile
        if body.device_profile is not None:
            device.profile = DeviceProfile(body.device_profile)
        if body.spoken_languages is not None and body.spoken_languages != device.spoken_languages:
            device.spoken_languages = list(body.spoken_languages)
            listening_changed = True
        listening_changed |= set_listening_mode(device, body)
        await _flush_and_reload(session, device)
    if listening_changed:  # after the commit: a gateway that hears this reads the settings again
        await settings_changes.publish(SettingsChanged(str(current.id)))
    return await with_anomaly_state(device_out(device), db, policy)


@router.post("/me/token")
async def rotate_token(
    current: CurrentDevice, db: DatabaseDep, revocations: RevocationsDep, response: Response
) -> DeviceCredentials:
    """Issue a new token; the one used for this request stops working at once, and the
    streaming sessions opened with it are closed (4001)."""
    token, token_hash = issue_token()
    async with db.session() as session:
        device = await _load_for_update(session, current.id)
        device.token_hash = token_hash
        device.token_issued_at = func.now()
    # After the commit: a gateway that hears this and reads the database sees the new token.
    await revocations.publish(DeviceRevoked(str(current.id), token_hash))
    response.headers.update(_NO_STORE)
    return DeviceCredentials(device_id=current.id, token=token)


@router.delete("/me", responses=ERASURE_DEFERRED)
async def deregister_device(
    current: CurrentDevice, db: DatabaseDep, revocations: RevocationsDep, store: ClipStoreDep, events: EventsDep
) -> dict[str, Any]:
    """Erase the device and its owner's data (``privacy.erase_device_data``): a running
    countdown is cancelled ("device deleted"), clips, incidents and contacts are deleted, and
    the answer states what was deleted and what is kept (reports already sent stay with the
    agencies). The token stops working and its streaming sessions are closed (4001). While a
    report is being sent the erasure waits: 409 ``report_in_flight`` with ``Retry-After``."""
    try:
        statement = await erase_device_data(db, store, current.id, events=events)
    except ErasureDeferred as deferred:
        raise HTTPException(
            status.HTTP_409_CONFLICT,
            {"code": "report_in_flight", "message": str(deferred)},
            headers={"Retry-After": str(deferred.retry_after_s)},
        ) from None
    await revocations.publish(DeviceRevoked(str(current.id), None))
    if statement is None:  # a concurrent request erased it first
        raise unauthorized("invalid_token", "the device token is not valid (the device is gone)")
    return statement.to_json()


async def _load_for_update(session: AsyncSession, device_id: uuid.UUID) -> Device:
    device = await session.scalar(
        select(Device)
        .where(Device.id == device_id)
        .options(selectinload(Device.contacts))
        .with_for_update()
    )
    if device is None:
        # Deregistered between authentication and now: the token no longer names anything.
        raise unauthorized("invalid_token", "the device token is not valid (the device is gone)")
    return device


async def _flush_and_reload(session: AsyncSession, device: Device) -> None:
    # Timestamps set to the database clock (func.now()) are expired by the flush, and an
    # expired attribute cannot be loaded lazily under asyncio: read them back explicitly.
    await session.flush()
    expired = inspect(device).expired_attributes
    if expired:
        await session.refresh(device, list(expired))


def _set_profile(device: Device, profile: Profile) -> None:
    device.owner_name = profile.name
    device.birth_year = profile.birth_year
    device.medical_notes = profile.medical_notes


def _set_location(device: Device, location: Location | None) -> None:
    if location is None:
        device.latitude = device.longitude = device.location_accuracy_m = None
        device.location_updated_at = None
        return
    device.latitude = location.latitude
    device.longitude = location.longitude
    device.location_accuracy_m = location.accuracy_m
    device.location_updated_at = func.now()


def _update_consents(device: Device, body: DeviceUpdate) -> None:
    changed = False
    for name in ("consent_recording", "consent_location", "consent_share_profile"):
        value: Any = getattr(body, name)
        if value is not None and value != getattr(device, name):
            setattr(device, name, value)
            changed = True
    if changed:
        device.consents_updated_at = func.now()


def _contact_rows(contacts: list[Contact]) -> list[EmergencyContact]:
    return [
        EmergencyContact(
            position=position,
            name=c.name,
            relation=c.relation,
            phone=c.phone,
            webhook_url=None if c.webhook_url is None else str(c.webhook_url),
            email=c.email,
        )
        for position, c in enumerate(contacts)
    ]
