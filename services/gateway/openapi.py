"""The REST API's error body and the error responses each route documents in its OpenAPI.

Every error the gateway's REST routes answer has one of two bodies:

* :class:`ApiError` ``{"detail": {"code", "message"}}`` for 400, 401, 403, 404, 409 and 429
  (a 409 about an incident also carries ``detail.incident``, where it stands);
* FastAPI's ``HTTPValidationError`` ``{"detail": [{"loc", "msg", "type", ...}]}`` for 422:
  a request that does not match the route's schema. The schema says all there is to say
  about what is refused (``tests/integration/test_openapi_contract.py`` holds it to that).
  The refused value of a secret field (:data:`SECRET_FIELDS`) is left out of its error.

Routers use :class:`ApiRoute` (``APIRouter(route_class=ApiRoute, responses=...)``) so that
FastAPI's own plain-text errors (a body that cannot be decoded: 400) take the same shape,
and declare the maps below so that the schema lists each status a route can answer (429:
``rate_limit.RATE_LIMITED_RESPONSE``, the enrolment key's 401/403:
``enrolment.ENROLMENT_RESPONSES``).
"""

from __future__ import annotations

from collections.abc import Callable, Coroutine, Sequence
from typing import Any

from fastapi import HTTPException, Request, Response, status
from fastapi.exceptions import RequestValidationError
from fastapi.routing import APIRoute
from pydantic import BaseModel, ConfigDict, Field
from starlette.exceptions import HTTPException as StarletteHTTPException

Responses = dict[int | str, dict[str, Any]]


class ErrorDetail(BaseModel):
    """What went wrong: ``code`` for programs, ``message`` for people."""

    model_config = ConfigDict(extra="allow")  # a 409 adds the incident it is about

    code: str = Field(examples=["invalid_token"])
    message: str


class ApiError(BaseModel):
    """The body of every REST error but 422."""

    detail: ErrorDetail


class IncidentConflictDetail(ErrorDetail):
    """A cancel or confirm that lost to the incident's state: ``incident`` is where it stands."""

    incident: dict[str, Any]


class IncidentConflict(BaseModel):
    detail: IncidentConflictDetail


# Fields whose refused value a 422 does not echo.
SECRET_FIELDS = frozenset({"duress_code", "code"})
# FastAPI raises these with a plain-text detail; the API answers them in its own shape.
_PLAIN_ERROR_CODES = {status.HTTP_400_BAD_REQUEST: "invalid_body"}


class ApiRoute(APIRoute):
    """A route whose every ``HTTPException`` has the :class:`ApiError` body."""

    def get_route_handler(self) -> Callable[[Request], Coroutine[Any, Any, Response]]:
        handle = super().get_route_handler()

        async def handle_in_api_shape(request: Request) -> Response:
            try:
                return await handle(request)
            except RequestValidationError as exc:
                raise RequestValidationError(_without_secrets(exc.errors())) from None
            except StarletteHTTPException as exc:  # FastAPI raises Starlette's own
                if isinstance(exc.detail, str):
                    code = _PLAIN_ERROR_CODES.get(exc.status_code, "error")
                    message = "the request body is not JSON in UTF-8" if code == "invalid_body" else exc.detail
                    raise HTTPException(exc.status_code, {"code": code, "message": message}, exc.headers) from None
                raise

        return handle_in_api_shape


def _without_secrets(errors: Sequence[Any]) -> list[Any]:
    # A 422 echoes each refused value as ``input``; a secret the owner typed (the duress code,
    # a cancel's code) is never echoed, nor put where a proxy or a shoulder could read it.
    return [
        {k: v for k, v in error.items() if k != "input"} if SECRET_FIELDS & set(map(str, error.get("loc", ()))) else error
        for error in errors
    ]


def _error(description: str, model: type[BaseModel] = ApiError, **extra: Any) -> dict[str, Any]:
    return {"model": model, "description": description, **extra}


BAD_BODY: Responses = {
    status.HTTP_400_BAD_REQUEST: _error("The body cannot be read as JSON text (`invalid_body`).")
}
"""Routes that take a JSON body."""

UNAUTHORIZED: Responses = {
    status.HTTP_401_UNAUTHORIZED: _error(
        "No device token (`missing_token`), or not a current one (`invalid_token`: rotated or the device deleted).",
        headers={"WWW-Authenticate": {"description": "`Bearer`", "schema": {"type": "string"}}},
    )
}
"""Routes that need ``Authorization: Bearer <device token>``."""

INCIDENT_NOT_FOUND: Responses = {
    status.HTTP_404_NOT_FOUND: _error("No incident of the caller's device has this id (`unknown_incident`).")
}

INCIDENT_CONFLICT: Responses = {
    status.HTTP_409_CONFLICT: _error(
        "The incident's state decided otherwise (`already_reported`, `cancelled`, `report_failed`); "
        "`detail.incident` is where it stands.",
        IncidentConflict,
    )
}

ERASURE_DEFERRED: Responses = {
    status.HTTP_409_CONFLICT: _error(
        "A report of this device is being sent right now (`report_in_flight`); try again after `Retry-After`.",
        headers={"Retry-After": {"description": "seconds", "schema": {"type": "string"}}},
    )
}
"""``DELETE /v1/devices/me``."""

CLIP_LINK: Responses = {
    status.HTTP_403_FORBIDDEN: _error("The link's signature is wrong or it has expired (`bad_link`)."),
    status.HTTP_404_NOT_FOUND: _error("No such clip (`unknown_clip`), or not stored yet (`clip_pending`)."),
}
"""``GET /v1/clips/{key}``."""
