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

Storage is SQLite: a file by default so a drill survives a restart, ``:memory:`` for tests.
Run it with :func:`serve_agency` (what the CLI does) or mount :func:`create_agency_app`.
"""

from __future__ import annotations

import hmac
import html
import json
import sqlite3
import sys
import threading
import uuid
from dataclasses import dataclass
from collections.abc import Callable
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import httpx
from fastapi import Depends, FastAPI, HTTPException, Request, status
from fastapi.responses import HTMLResponse, JSONResponse, RedirectResponse
from fastapi.security import HTTPBasic, HTTPBasicCredentials
from pydantic import Field, field_validator, model_validator
from pydantic_settings import SettingsConfigDict

from services.alerting.settings import check_webhook_secrets
from services.alerting.webhooks import WebhookVerificationError, local_webhook_secret, verify
from shared.incident_state import IncidentOutcome
from shared.local_secrets import is_development_value
from shared.standard_webhooks import webhook_headers
from shared.settings import DEFAULT_DATA_DIR, ServiceSettings

KST = timezone(timedelta(hours=9))
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


class ReportStore:
    """Received deliveries, one row per idempotency key, with an attempt count. Thread-safe."""

    def __init__(self, path: str) -> None:
        if path != ":memory:":
            Path(path).parent.mkdir(parents=True, exist_ok=True)
        self._lock = threading.Lock()
        self._db = sqlite3.connect(path, check_same_thread=False)
        self._db.executescript(
            """
            CREATE TABLE IF NOT EXISTS deliveries (
                key TEXT PRIMARY KEY,
                channel TEXT NOT NULL,
                agency TEXT NOT NULL,
                type TEXT NOT NULL,
                payload TEXT NOT NULL,
                received_at TEXT NOT NULL,
                attempts INTEGER NOT NULL
            );
            CREATE TABLE IF NOT EXISTS outcomes (
                key TEXT PRIMARY KEY,
                outcome TEXT NOT NULL,
                status INTEGER NOT NULL,
                result TEXT NOT NULL,
                answered_at TEXT NOT NULL
            );
            """
        )

    def record(self, key: str, channel: str, agency: str, kind: str, payload: Any) -> bool:
        """Store a delivery; False (and one more attempt counted) when ``key`` was seen before."""
        now = datetime.now(timezone.utc).isoformat()
        with self._lock, self._db:
            cursor = self._db.execute(
                "INSERT INTO deliveries VALUES (?, ?, ?, ?, ?, ?, 1) ON CONFLICT(key) DO NOTHING",
                (key, channel, agency, kind, json.dumps(payload, ensure_ascii=False), now),
            )
            if cursor.rowcount == 1:
                return True
            self._db.execute("UPDATE deliveries SET attempts = attempts + 1 WHERE key = ?", (key,))
            return False

    def list(self, channel: str | None = None) -> list[dict[str, Any]]:
        """Deliveries, newest first; ``channel`` is ``webhook`` or ``sms`` to filter."""
        query = "SELECT key, channel, agency, type, payload, received_at, attempts FROM deliveries"
        args: tuple[str, ...] = ()
        if channel is not None:
            query += " WHERE channel = ?"
            args = (channel,)
        with self._lock:
            rows = self._db.execute(query + " ORDER BY received_at DESC", args).fetchall()
        return [
            {"key": r[0], "channel": r[1], "agency": r[2], "type": r[3], "payload": json.loads(r[4]),
             "received_at": r[5], "attempts": r[6]}
            for r in rows
        ]

    def get(self, key: str) -> dict[str, Any] | None:
        """One delivery by its idempotency key, or None."""
        return next((d for d in self.list() if d["key"] == key), None)

    def record_outcome(self, key: str, outcome: str, reply: OutcomeReply) -> None:
        """Keep the latest answer sent for the report ``key`` and what the gateway said."""
        now = datetime.now(timezone.utc).isoformat()
        with self._lock, self._db:
            self._db.execute(
                "INSERT INTO outcomes VALUES (?, ?, ?, ?, ?) ON CONFLICT(key) DO UPDATE SET "
                "outcome = excluded.outcome, status = excluded.status, result = excluded.result, "
                "answered_at = excluded.answered_at",
                (key, outcome, reply.status, reply.result, now),
            )

    def outcomes(self) -> dict[str, dict[str, Any]]:
        """Report key -> the latest answer sent for it."""
        with self._lock:
            rows = self._db.execute("SELECT key, outcome, status, result, answered_at FROM outcomes").fetchall()
        return {r[0]: {"outcome": r[1], "status": r[2], "result": r[3], "answered_at": r[4]} for r in rows}

    def close(self) -> None:
        with self._lock:
            self._db.close()


@dataclass(frozen=True)
class OutcomeReply:
    """What the gateway answered an outcome callback: the HTTP status and ``result`` (200:
    ``recorded``, ``replaced``, ``unchanged``) or the error's ``code``."""

    status: int
    result: str
    body: Any

    @property
    def accepted(self) -> bool:
        return self.status == 200


async def send_outcome(
    report: dict[str, Any],
    outcome: IncidentOutcome | str,
    note: str | None = None,
    *,
    client: httpx.AsyncClient | None = None,
    timeout_s: float = 10.0,
) -> OutcomeReply:
    """Answer a received ``incident.reported`` ``report`` (its JSON payload) with ``outcome``,
    signed with the report's ``outcome_callback.secret`` under a fresh ``webhook-id``.

    Raises ValueError when the report carries no callback; network errors are httpx's.
    """
    data = report["data"]
    callback = data.get("outcome_callback")
    if not callback:
        raise ValueError("this report carries no outcome_callback")
    body = json.dumps(
        {"agency_id": data["agency"]["id"], "outcome": IncidentOutcome(outcome).value, "note": note}
    ).encode()
    headers = webhook_headers([callback["secret"]], f"msg_{uuid.uuid4().hex}", body)
    if client is None:
        async with httpx.AsyncClient(timeout=timeout_s) as own:
            response = await own.post(callback["url"], content=body, headers=headers)
    else:
        response = await client.post(callback["url"], content=body, headers=headers, timeout=timeout_s)
    try:
        answer = response.json()
    except ValueError:
        answer = response.text
    if response.status_code == 200 and isinstance(answer, dict):
        result = str(answer.get("result"))
    elif isinstance(answer, dict) and isinstance(answer.get("detail"), dict):
        result = str(answer["detail"].get("code"))
    else:
        result = f"http_{response.status_code}"
    return OutcomeReply(response.status_code, result, answer)


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


OUTCOME_BUTTONS = (
    (IncidentOutcome.CONFIRMED_EMERGENCY, "Confirmed emergency"),
    (IncidentOutcome.NO_EMERGENCY_FOUND, "No emergency found"),
    (IncidentOutcome.UNABLE_TO_REACH, "Unable to reach"),
)


def render_page(deliveries: list[dict[str, Any]], outcomes: dict[str, dict[str, Any]] | None = None) -> str:
    """The dispatcher's page: reports first (each with its outcome buttons and the answer
    sent), then notices to guardians and SMS, newest first."""
    reports = [d for d in deliveries if d["type"] == "incident.reported"]
    others = [d for d in deliveries if d["type"] != "incident.reported"]
    answers = outcomes or {}
    cards = "\n".join(
        _shown(lambda d: _report_card(d, answers.get(d["key"])), d) for d in reports
    ) or "<p>No reports yet.</p>"
    rows = "\n".join(
        f"<tr><td>{_e(_kst(d['received_at']))}</td><td>{_e(d['channel'])}</td><td>{_e(d['agency'])}</td>"
        f"<td>{_e(d['type'])}</td><td>{_shown(lambda n: f'<pre>{_e(_notice_text(n))}</pre>', d)}</td></tr>"
        for d in others
    )
    return f"""<!doctype html>
<html lang="ko"><head><meta charset="utf-8"><meta http-equiv="refresh" content="5">
<title>Hear-o drill agency</title>
<style>
body{{font-family:system-ui,sans-serif;margin:2rem;max-width:60rem}}
.report{{border:2px solid #b00;border-radius:8px;padding:1rem;margin:1rem 0}}
.report h2{{margin:0 0 .5rem}} dt{{font-weight:bold}} dd{{margin:0 0 .4rem}}
table{{border-collapse:collapse}} td{{border-top:1px solid #ccc;padding:.3rem;vertical-align:top}}
pre{{white-space:pre-wrap;margin:0}}
</style></head><body>
<h1>Hear-o drill agency</h1>
<h2>Reports ({len(reports)})</h2>
{cards}
<h2>Other deliveries ({len(others)})</h2>
<table>{rows}</table>
</body></html>"""


def _shown(render: Callable[[dict[str, Any]], str], delivery: dict[str, Any]) -> str:
    # A signed payload of an unexpected shape shows as raw JSON instead of breaking the page.
    try:
        return render(delivery)
    except (KeyError, TypeError, ValueError, AttributeError):
        raw = json.dumps(delivery["payload"], ensure_ascii=False)
        return f"<div class=\"report\"><p>Unreadable delivery {_e(delivery['key'])}:</p><pre>{_e(raw)}</pre></div>"


def _outcome_form(delivery: dict[str, Any], answer: dict[str, Any] | None) -> str:
    data = delivery["payload"].get("data", {})
    if not data.get("outcome_callback"):
        return "no callback in this report"
    buttons = "".join(
        f'<button name="outcome" value="{_e(value.value)}">{_e(label)}</button> ' for value, label in OUTCOME_BUTTONS
    )
    sent = ""
    if answer is not None:
        sent = f"<br>sent {_e(answer['outcome'])} at {_e(_kst(answer['answered_at']))}: {_e(answer['result'])}"
    action = f"/reports/{_e(delivery['key'])}/outcome"
    return f'<form method="post" action="{action}">{buttons}</form>{sent}'


def _report_card(delivery: dict[str, Any], answer: dict[str, Any] | None = None) -> str:
    data = delivery["payload"].get("data", {})
    cls = data.get("class", {})
    location = data.get("location")
    if location and location.get("latitude") is None:
        place = f"registered address: {_e(location.get('address'))}"
    elif location:
        place = (
            f"{location['latitude']:.5f}, {location['longitude']:.5f} (±{round(location['accuracy_m'])} m) "
            f"<a href=\"{_e(_http(location.get('map_url', '')))}\" target=\"_blank\">map</a>"
        )
        if location.get("address"):
            place += f"<br>{_e(location['address'])}"
    else:
        place = "unknown"
    clip = data.get("clip")
    clip_html = (
        f"<audio controls preload=\"none\" src=\"{_e(_http(clip['url']))}\"></audio> "
        f"{_e(clip.get('duration_s') or '')} s, sha256 {_e((clip.get('sha256') or 'pending')[:12])}"
        if clip else "none"
    )
    profile = data.get("profile")
    profile_html = (
        f"{_e(profile['name'])}, born {_e(profile['birth_year'])}"
        + (f"<br>{_e(profile['medical_notes'])}" if profile.get("medical_notes") else "")
        if profile else "not shared"
    )
    history = data.get("history") or []
    history_html = "".join(
        f"<li>{_e(_kst(h['detected_at']))} {_e(h['label_ko'])} ({_e(h['state'])})</li>" for h in history
    ) or "<li>none</li>"
    timeline = ", ".join(f"{p['score']:.2f}" for p in data.get("score_timeline", [])[:30])
    return f"""<div class="report">
<h2>{_e(cls.get('label_ko'))} · {_e(cls.get('label_en'))}</h2>
<dl>
<dt>Agency</dt><dd>{_e(delivery['agency'])} (attempts: {_e(delivery['attempts'])})</dd>
<dt>Detected</dt><dd>{_e(_kst(data.get('detected_at')))}, confidence {_e(round(100 * data.get('confidence', 0)))}%</dd>
<dt>Reported</dt><dd>{_e(_kst(data.get('reported_at')))} ({_e(data.get('trigger'))})</dd>
<dt>Location</dt><dd>{place}</dd>
<dt>Clip</dt><dd>{clip_html}</dd>
<dt>Person</dt><dd>{profile_html}</dd>
<dt>Score timeline</dt><dd>{_e(timeline)}</dd>
<dt>History</dt><dd><ul>{history_html}</ul></dd>
<dt>Incident</dt><dd><code>{_e(data.get('incident_id'))}</code></dd>
<dt>Outcome</dt><dd>{_outcome_form(delivery, answer)}</dd>
</dl></div>"""


def _notice_text(delivery: dict[str, Any]) -> str:
    payload = delivery["payload"]
    if delivery["channel"] == "sms":
        return f"{payload.get('to', '')}: {payload.get('text', '')}"
    data = payload.get("data", {})
    return f"{data.get('event', '')} {data.get('class', {}).get('label_ko', '')} {data.get('incident_id', '')}"


def _kst(iso: object) -> str:
    if not isinstance(iso, str):
        return ""
    return datetime.fromisoformat(iso).astimezone(KST).strftime("%Y-%m-%d %H:%M:%S KST")


def _http(url: str) -> str:
    # Only web links become href/src: a javascript: URL in a payload must not run here.
    return url if url.startswith(("http://", "https://")) else ""


def _e(value: object) -> str:
    return html.escape(str(value if value is not None else ""), quote=True)
