"""Enrolment keys: who may register a device.

Registering creates a device token, and a device token opens streams and incidents, so a
deployment lets only its installers and apps register: ``POST /v1/devices`` must carry one of
the gateway's enrolment keys in the ``X-Hearo-Enrolment-Key`` header
(``HEARO_GATEWAY_ENROLMENT_KEY``, comma-separated when there are several: a new key is added
beside the old one, the apps move over, then the old one is removed, with no downtime).
Outside development a key is required (``GatewaySettings`` refuses to start without one); in
development with no key set registration is open, as the embedded default has always been.

Missing key: 401 ``enrolment_key_required``; a wrong one: 403 ``invalid_enrolment_key``,
with the API's error body ``{"detail": {"code", "message"}}``. The registration rate limit
runs first, so keys cannot be guessed at speed.
"""

from __future__ import annotations

import hmac
from collections.abc import Sequence
from typing import Annotated

from fastapi import Header, HTTPException, Request, status

from services.gateway.openapi import ApiError, Responses

ENROLMENT_KEY_HEADER = "X-Hearo-Enrolment-Key"


class Enrolment:
    """The keys registration accepts; none: registration is open (development only)."""

    def __init__(self, keys: Sequence[str]) -> None:
        self._keys = tuple(key.encode() for key in keys)

    @property
    def required(self) -> bool:
        return bool(self._keys)

    def check(self, presented: str | None) -> None:
        """Raise 401 when a key is required and none was given, 403 when it is not one of ours."""
        if not self._keys:
            return
        if not presented:
            raise HTTPException(
                status_code=status.HTTP_401_UNAUTHORIZED,
                detail={
                    "code": "enrolment_key_required",
                    "message": f"this gateway registers devices only with an enrolment key: "
                    f"send it in the {ENROLMENT_KEY_HEADER} header (hearo device register --enrolment-key)",
                },
            )
        given = presented.encode()
        # Every key is compared, whichever matches, so the time taken says nothing about them.
        matched = False
        for key in self._keys:
            matched |= hmac.compare_digest(key, given)
        if not matched:
            raise HTTPException(
                status_code=status.HTTP_403_FORBIDDEN,
                detail={"code": "invalid_enrolment_key", "message": "the enrolment key is not valid for this gateway"},
            )


async def require_enrolment_key(
    request: Request,
    enrolment_key: Annotated[
        str | None,
        Header(alias=ENROLMENT_KEY_HEADER, description="The deployment's enrolment key (required outside development)."),
    ] = None,
) -> None:
    """Dependency of ``POST /v1/devices``; the app sets ``app.state.enrolment``."""
    enrolment: Enrolment = request.app.state.enrolment
    enrolment.check(enrolment_key)


ENROLMENT_RESPONSES: Responses = {
    status.HTTP_401_UNAUTHORIZED: {"model": ApiError, "description": "An enrolment key is required (`enrolment_key_required`)."},
    status.HTTP_403_FORBIDDEN: {"model": ApiError, "description": "The enrolment key is not valid (`invalid_enrolment_key`)."},
}
"""The enrolment errors in the OpenAPI description of the registration route."""
