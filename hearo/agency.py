"""`hearo agency`: a stand-in emergency agency for demos and drills.

It receives what the alerting worker sends and shows it the way a dispatcher would need it:

* ``POST /webhooks/{agency_id}``: Standard Webhooks reports and notices. The signature is
  verified against the configured secrets (401 otherwise) and deliveries are de-duplicated
  by ``webhook-id``: a retry of something already received is answered 200 and counted as
  an attempt, never stored as a second report.
* ``POST /sms``: an SMS provider stand-in taking the default JSON template
  (``HEARO_ALERTING_SMS_PROVIDER_URL=http://127.0.0.1:8090/sms``), signed like the webhooks
  (the worker signs with ``HEARO_ALERTING_SMS_PROVIDER_SECRETS``) and de-duplicated by
  ``webhook-id``, which the worker sets to its ``Idempotency-Key``.
* ``GET /``: the reports page (class, times, place with a map link, clip player, profile,
  history), refreshed every few seconds. ``GET /reports`` and ``GET /sms`` give the same
  as JSON, with how many attempts each delivery took. These hold what a report holds (a
  person's name, medical notes, location, clip links), so they need a login: HTTP Basic
  with ``username`` and ``password``.
* ``POST /reports/{key}/outcome`` (same login, same-origin form): the page's three buttons
  per report (confirmed emergency, no emergency found, unable to reach) answer the report
  through its signed ``outcome_callback`` (:func:`send_outcome`, which tests call too); the
  gateway's answer is kept and shown on the card.

A body that is signed but not a JSON object with the fields the route takes is answered 400
with a message saying what is wrong, and is not stored.

Secrets: in development, unset ``secrets`` is the webhook secret the alerting worker signs
with (generated under ``<data_dir>/secrets/webhook``) and an unset password is generated
under ``<data_dir>/secrets/agency-password`` and printed at start. Outside development both
must be set and a public development value is refused.

Storage is SQLite (:class:`~hearo.agency_store.ReportStore`): a file by default so a drill
survives a restart, ``:memory:`` for tests. The page is :mod:`hearo.agency_page`; answering a
report is :func:`~hearo.agency_outcome.send_outcome`. Run it with :func:`serve_agency` (what
the CLI does) or mount :func:`create_agency_app`.
"""

from __future__ import annotations

import hmac
import json
import sys
from typing import Any
from urllib.parse import parse_qs, urlsplit

import httpx
from fastapi import Depends, FastAPI, HTTPException, Request, status
from fastapi.responses import HTMLResponse, JSONResponse, RedirectResponse
from fastapi.security import HTTPBasic, HTTPBasicCredentials
from pydantic import Field, field_validator, model_validator
from pydantic_settings import SettingsConfigDict

from hearo.agency_outcome import OutcomeReply, send_outcome
from hearo.agency_page import render_page
from hearo.agency_store import ReportStore
from services.alerting.settings import check_webhook_secrets
from services.alerting.webhooks import WebhookVerificationError, local_webhook_secret, verify
from shared.incident_state import IncidentOutcome
from shared.local_secrets import is_development_value
from shared.settings import DEFAULT_DATA_DIR, ServiceSettings

MAX_BODY_BYTES = 1 << 20
# The generated development password (``<data_dir>/secrets/agency-password``).
LOCAL_PASSWORD_SECRET = "agency-password"


class AgencySettings(ServiceSettings):
    """``HEARO_AGENCY_*``: the secrets it accepts, its login, where it keeps reports and listens.

    ``secrets`` (a JSON list, current first) verify webhooks and SMS; ``username`` and
    ``password`` guard the page and the lists. Unset in development they are generated
    (see the module docstring); elsewhere they are required.
    """

    model_config = SettingsConfigDict(
        env_prefix="HEARO_AGENCY_", extra="ignore", populate_by_name=True,
        hide_input_in_errors=True,  # a refused value may be a secret: it must not reach the log
    )

    secrets: list[str] = Field(default_factory=list)
    username: str = Field(default="agency", min_length=1)
    password: str = ""
    db_path: str = str(DEFAULT_DATA_DIR / "agency.sqlite3")
    host: str = "127.0.0.1"
    port: int = 8090

    @field_validator("secrets")
    @classmethod
    def _secrets_are_whsec(cls, secrets: list[str]) -> list[str]:
        return check_webhook_secrets(secrets)

    @model_validator(mode="after")
    def _configured_outside_development(self) -> AgencySettings:
        if self.development:
            return self
        missing = [name for name, unset in (
            ("HEARO_AGENCY_SECRETS", not self.secrets), ("HEARO_AGENCY_PASSWORD", not self.password)
        ) if unset]  # fmt: skip
        if missing:
            raise ValueError(
                f"AgencySettings: {' and '.join(missing)} must be set outside development "
                f"(environment is {self.environment!r})"
            )
        if any(is_development_value(secret) for secret in (*self.secrets, self.password)):
            raise ValueError(
                "AgencySettings: HEARO_AGENCY_SECRETS holds a public development value; configure the "
                f"secrets the sender really uses (environment is {self.environment!r}, not 'development')"
            )
        return self

    def verifying_secrets(self) -> list[str]:
        """The webhook secrets accepted: the configured ones, or in development the generated one."""
        return list(self.secrets) or [local_webhook_secret(self)]

    def login_password(self) -> str:
        """The password of the page and the lists: configured, or in development generated."""
        return self.password or self.local_secret(LOCAL_PASSWORD_SECRET)


class MalformedBody(ValueError):
    """A correctly signed body that is not what the route takes: answered 400, not stored."""


def parse_body(body: bytes, required: dict[str, type]) -> dict[str, Any]:
    """``body`` as a JSON object holding each ``required`` field with its type; else MalformedBody."""
    try:
        payload = json.loads(body)
    except (ValueError, RecursionError) as error:  # not UTF-8, not JSON, or nested past the parser
        raise MalformedBody(f"the body is not JSON ({type(error).__name__})") from None
    if not isinstance(payload, dict):
        raise MalformedBody(f"the body must be a JSON object, not {_json_type(payload)}")
    for name, kind in required.items():
        if not isinstance(payload.get(name), kind):
            raise MalformedBody(f"the body needs {name!r} as a JSON {_json_type(kind())}")
    return payload


def _json_type(value: object) -> str:
    names = {dict: "object", list: "array", str: "string", bool: "boolean", int: "number", float: "number"}
    return "null" if value is None else names.get(type(value), type(value).__name__)

def create_agency_app(settings: AgencySettings, store: ReportStore | None = None) -> FastAPI:
    """The receiver app; ``store`` defaults to one at ``settings.db_path`` (tests pass their own)."""
    app = FastAPI(title="Hear-o drill agency", docs_url=None, redoc_url=None)
    app.state.store = store = store if store is not None else ReportStore(settings.db_path)
    secrets = settings.verifying_secrets()
    username, password = settings.username.encode(), settings.login_password().encode()
    basic = HTTPBasic(realm="Hear-o drill agency")

    def dispatcher(credentials: HTTPBasicCredentials = Depends(basic)) -> None:
        # Both compared in full, so the answer's timing does not tell which part was wrong.
        user_ok = hmac.compare_digest(credentials.username.encode(), username)
        password_ok = hmac.compare_digest(credentials.password.encode(), password)
        if not (user_ok and password_ok):
            raise HTTPException(
                status.HTTP_401_UNAUTHORIZED, "wrong username or password",
                headers={"WWW-Authenticate": 'Basic realm="Hear-o drill agency"'},
            )

    async def signed(request: Request, required: dict[str, type]) -> tuple[str, dict[str, Any]] | JSONResponse:
        body = await request.body()
        if len(body) > MAX_BODY_BYTES:
            return JSONResponse({"error": "too_large", "message": f"the body exceeds {MAX_BODY_BYTES} bytes"}, 413)
        try:
            msg_id = verify(secrets, request.headers, body)
            return msg_id, parse_body(body, required)
        except WebhookVerificationError as error:
            return JSONResponse({"error": "invalid_signature", "message": str(error)}, status_code=401)
        except MalformedBody as error:
            return JSONResponse({"error": "malformed_body", "message": str(error)}, status_code=400)

    @app.post("/webhooks/{agency_id}")
    async def receive_webhook(agency_id: str, request: Request) -> JSONResponse:
        received = await signed(request, {"type": str, "data": dict})
        if isinstance(received, JSONResponse):
            return received
        msg_id, payload = received
        fresh = store.record(msg_id, "webhook", agency_id, payload["type"], payload)
        return JSONResponse({"status": "accepted" if fresh else "duplicate"})

    @app.post("/sms")
    async def receive_sms(request: Request) -> JSONResponse:
        received = await signed(request, {"to": str, "text": str})
        if isinstance(received, JSONResponse):
            return received
        msg_id, payload = received
        fresh = store.record(msg_id, "sms", payload["to"], "sms", payload)
        return JSONResponse({"status": "accepted" if fresh else "duplicate"})

    @app.get("/reports", dependencies=[Depends(dispatcher)])
    async def reports() -> list[dict[str, Any]]:
        return store.list("webhook")

    @app.get("/sms", dependencies=[Depends(dispatcher)])
    async def sms_messages() -> list[dict[str, Any]]:
        return store.list("sms")

    @app.get("/healthz")
    async def healthz() -> dict[str, str]:
        return {"status": "ok"}

    @app.get("/", response_class=HTMLResponse, dependencies=[Depends(dispatcher)])
    async def page() -> str:
        return render_page(store.list(), store.outcomes())

    @app.post("/reports/{key}/outcome", dependencies=[Depends(dispatcher)])
    async def answer_report(key: str, request: Request) -> RedirectResponse:
        # The browser sends the Basic login with any form that posts here, from any site: only
        # this page's own forms may answer (a cross-site form would be a forged answer).
        if not _same_origin(request):
            raise HTTPException(status.HTTP_403_FORBIDDEN, "answers are taken from this page only")
        form = parse_qs((await request.body()).decode(errors="replace"))
        delivery = store.get(key)
        try:
            outcome = IncidentOutcome(form.get("outcome", [""])[0])
        except ValueError:
            raise HTTPException(status.HTTP_400_BAD_REQUEST, "outcome must be one of the three buttons") from None
        if delivery is None or delivery["type"] != "incident.reported":
            raise HTTPException(status.HTTP_404_NOT_FOUND, "no such report")
        try:
            reply = await send_outcome(delivery["payload"], outcome)
        except (ValueError, httpx.HTTPError) as error:
            reply = OutcomeReply(0, f"not sent: {type(error).__name__}", str(error))
        store.record_outcome(key, outcome.value, reply)
        return RedirectResponse("/", status_code=status.HTTP_303_SEE_OTHER)

    return app


def login_notice(settings: AgencySettings) -> str:
    """How to open the page: the URL and login, the password shown only when generated
    (a configured one is the operator's and is never printed)."""
    host = "127.0.0.1" if settings.host in ("0.0.0.0", "::") else settings.host
    password = "HEARO_AGENCY_PASSWORD" if settings.password else settings.login_password()
    return f"Drill agency: http://{host}:{settings.port}/  (user {settings.username}, password {password})"


def serve_agency(settings: AgencySettings) -> None:
    """Run the receiver in the foreground with uvicorn (``hearo agency``)."""
    import uvicorn

    app = create_agency_app(settings)
    print(login_notice(settings), file=sys.stderr, flush=True)
    uvicorn.run(app, host=settings.host, port=settings.port, log_level="info", log_config=None)


def _same_origin(request: Request) -> bool:
    if request.headers.get("sec-fetch-site", "same-origin") not in ("same-origin", "none"):
        return False
    origin = request.headers.get("origin")
    return origin is None or urlsplit(origin).netloc == request.headers.get("host")

