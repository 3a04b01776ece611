"""F7 (issue 12): the OpenAPI schema tells the truth. Schemathesis generates requests from the
gateway's own ``/openapi.json``, valid ones and invalid ones, and sends them to the real
gateway (uvicorn on a free port, SQLite, a registered device's token so the authenticated
routes are reached); every answer must be documented (status, content type, headers, body
schema), no answer may be a 5xx, invalid requests must be refused and valid ones accepted.

``HEARO_SCHEMATHESIS_EXAMPLES`` (default 40) is the number of generated cases per operation
and mode; the CI run sends about 1,100 requests in all (about 20 s). A longer run:
``HEARO_SCHEMATHESIS_EXAMPLES=1000 .venv/bin/python -m pytest tests/integration/test_openapi_contract.py``.

The tests after it pin each mismatch the probe found, so each fails on the old schema.
"""

from __future__ import annotations

import os
from datetime import UTC, datetime
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import schemathesis
from schemathesis import GenerationMode

from services.gateway import app as gateway_app
from services.gateway.settings import GatewaySettings
from shared.clips import ClipStorageSettings
from shared.db import Database
from tests.devices_support import devices_app, http_client
from tests.gateway_apps import Gateway, run_gateways
from tests.server_log import ServerLog, capture_server_log

pytestmark = pytest.mark.slow

EXAMPLES = int(os.environ.get("HEARO_SCHEMATHESIS_EXAMPLES", "40"))
# These end the token they are sent with: each case gets a device of its own.
_TOKEN_ENDING = {("DELETE", "/v1/devices/me"), ("POST", "/v1/devices/me/token")}
# That every schema-valid request is accepted: not a promise the schema makes. It cannot state
# the rules that depend on stored state (a location needs the device's consent to location) or
# every host name rule of a webhook URL; those are 422 with the standard validation body.
# Starlette's 405 lists the methods of the first route of a path only (``Allow: GET`` for
# /v1/devices/me); the schema documents no 405.
_NOT_CHECKED = [schemathesis.checks.positive_data_acceptance, schemathesis.checks.allow_header_conformance]


@pytest.fixture(scope="module")
def live_gateway(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Gateway]:
    folder = tmp_path_factory.mktemp("contract")
    with pytest.MonkeyPatch.context() as monkeypatch:
        monkeypatch.setenv("HEARO_DATA_DIR", str(folder / "var"))
        settings = GatewaySettings(
            database_url=f"sqlite+aiosqlite:///{folder / 'hearo.db'}",
            migrate_on_start=True,
            clips=ClipStorageSettings(dir=folder / "clips"),
            # Rate limits answer 429 (documented); off here so the cases reach the routes.
            rest_per_ip=None,
            rest_per_device=None,
            registration_per_ip=None,
            household_join_per_ip=None,
        )
        with run_gateways(monkeypatch, settings) as (gateway,):
            yield gateway


@pytest.fixture(scope="module")
def server_log(live_gateway: Gateway) -> Iterator[ServerLog]:
    with capture_server_log() as log:
        yield log


@pytest.fixture(scope="module")
def device_token(live_gateway: Gateway) -> str:
    return live_gateway.register("Contract")[1]


def _gateway_openapi() -> dict[str, Any]:
    # The app's schema without serving it (building the app opens nothing); the live gateway's
    # /openapi.json is checked to be the same one.
    app = gateway_app.create_app(GatewaySettings(database_url="sqlite+aiosqlite://"))
    return app.openapi()


OPENAPI = _gateway_openapi()
schema = schemathesis.openapi.from_dict(OPENAPI)
# Unknown query parameters are ignored, as HTTP APIs do: OpenAPI cannot forbid them, so
# sending them is not a negative case.
schema.config.generation.update(
    modes=[GenerationMode.POSITIVE, GenerationMode.NEGATIVE],
    max_examples=EXAMPLES,
    database="none",
    allow_extra_parameters=False,
)


def test_the_live_gateway_serves_this_schema(live_gateway: Gateway) -> None:
    assert httpx.get(f"{live_gateway.http}/openapi.json").json() == OPENAPI


@schema.parametrize()
def test_every_answer_matches_the_schema(
    case: schemathesis.Case, live_gateway: Gateway, device_token: str, server_log: ServerLog
) -> None:
    token = device_token
    if (case.method.upper(), case.path) in _TOKEN_ENDING:
        token = live_gateway.register("Contract, ending")[1]
    case.call_and_validate(
        base_url=live_gateway.http, headers={"Authorization": f"Bearer {token}"}, excluded_checks=_NOT_CHECKED
    )
    assert not server_log.failures()


# --- each mismatch the probe found ---------------------------------------------------------


def _responses(method: str, path: str) -> dict[str, Any]:
    responses: dict[str, Any] = OPENAPI["paths"][path][method]["responses"]
    return responses


def _error_schema(method: str, path: str, status: int) -> str:
    schema_ref: str = _responses(method, path)[str(status)]["content"]["application/json"]["schema"]["$ref"]
    return schema_ref.rsplit("/", 1)[-1]


def test_every_error_a_route_answers_is_documented_with_its_body() -> None:
    authenticated = [
        ("get", "/v1/devices/me"), ("patch", "/v1/devices/me"), ("delete", "/v1/devices/me"),
        ("post", "/v1/devices/me/token"), ("get", "/v1/incidents"), ("get", "/v1/incidents/{incident_id}"),
        ("post", "/v1/incidents/{incident_id}/cancel"), ("post", "/v1/incidents/{incident_id}/confirm"),
    ]  # fmt: skip
    for method, path in authenticated:
        assert _error_schema(method, path, 401) == "ApiError", (method, path)
        assert _error_schema(method, path, 429) == "ApiError", (method, path)
    for method, path in [("post", "/v1/devices"), ("patch", "/v1/devices/me"), ("post", "/v1/incidents/{incident_id}/cancel")]:
        assert _error_schema(method, path, 400) == "ApiError", (method, path)
    assert {_error_schema("post", "/v1/devices", status) for status in (401, 403)} == {"ApiError"}
    for action in ("cancel", "confirm"):
        assert _error_schema("post", f"/v1/incidents/{{incident_id}}/{action}", 404) == "ApiError"
        assert _error_schema("post", f"/v1/incidents/{{incident_id}}/{action}", 409) == "IncidentConflict"
    assert _error_schema("get", "/v1/incidents/{incident_id}", 404) == "ApiError"
    assert {_error_schema("get", "/v1/clips/{key}", status) for status in (403, 404)} == {"ApiError"}


def test_the_refused_consent_and_birth_years_are_in_the_schema() -> None:
    schemas = OPENAPI["components"]["schemas"]
    assert schemas["DeviceRegistration"]["properties"]["consent_recording"]["const"] is True
    assert schemas["DeviceUpdate"]["properties"]["consent_recording"]["const"] is True
    birth_year = schemas["Profile"]["properties"]["birth_year"]
    this_year = datetime.now(UTC).year
    assert (birth_year["minimum"], birth_year["maximum"]) == (this_year - 125, this_year)
    # PATCH may leave a field out but not set it to null (only address and location clear).
    assert "anyOf" not in schemas["DeviceUpdate"]["properties"]["profile"]


def test_a_refused_query_gets_the_documented_validation_body(live_gateway: Gateway, device_token: str) -> None:
    auth = {"Authorization": f"Bearer {device_token}"}
    validation = OPENAPI["components"]["schemas"]["HTTPValidationError"]
    for query in ("class=bogus", "since=1.5", "since=1700000000", "until=2026-01-01T00:00:00", "since=2026-01-01"):
        refused = httpx.get(f"{live_gateway.http}/v1/incidents?{query}", headers=auth)
        assert refused.status_code == 422, (query, refused.text)
        assert set(refused.json()) == set(validation["properties"]) and isinstance(refused.json()["detail"], list)
    assert OPENAPI["paths"]["/v1/incidents"]["get"]["parameters"][2]["schema"]["anyOf"][0]["enum"][0] == "normal"
    ok = httpx.get(f"{live_gateway.http}/v1/incidents?class=fire&since=2026-01-01T00:00:00%2B09:00", headers=auth)
    assert ok.status_code == 200, ok.text


def test_an_unreadable_body_is_a_400_in_the_api_shape(live_gateway: Gateway, device_token: str) -> None:
    headers = {"Authorization": f"Bearer {device_token}", "Content-Type": "application/json"}
    answer = httpx.patch(f"{live_gateway.http}/v1/devices/me", content=b"\xff\xfe{", headers=headers)
    assert answer.status_code == 400 and answer.json()["detail"]["code"] == "invalid_body"


def test_a_forged_clip_link_with_any_characters_is_a_403(live_gateway: Gateway, server_log: ServerLog) -> None:
    answer = httpx.get(f"{live_gateway.http}/v1/clips/abc", params={"exp": 2**40, "sig": "\u00e9\u00e9"})
    assert answer.status_code == 403 and answer.json()["detail"]["code"] == "bad_link"
    assert not server_log.failures()


async def test_text_with_nul_is_a_422_not_a_500_on_postgresql(postgres_db: Database) -> None:
    # PostgreSQL cannot store NUL: the insert failed and the gateway answered 500.
    body = {
        "profile": {"name": "Kim\u0000", "birth_year": 1944},
        "consent_recording": True, "consent_location": False, "consent_share_profile": False,
    }  # fmt: skip
    async with http_client(devices_app(postgres_db)) as client:
        refused = await client.post("/v1/devices", json=body)
        assert refused.status_code == 422 and refused.json()["detail"][0]["loc"] == ["body", "profile", "name"]
        body["profile"] = {"name": "Kim", "birth_year": 1944, "medical_notes": "asthma\u0000"}
        assert (await client.post("/v1/devices", json=body)).status_code == 422
