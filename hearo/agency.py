"""`hearo agency`: a stand-in emergency agency for demos and drills.

It receives what the alerting worker sends and shows it the way a dispatcher would need it:

* ``POST /webhooks/{agency_id}``: Standard Webhooks reports and notices. The signature is
  verified against the configured secrets (401 otherwise) and deliveries are de-duplicated
  by ``webhook-id``: a retry of something already received is answered 200 and counted as
  an attempt, never stored as a second report.
* ``POST /sms``: an SMS provider stand-in taking the default JSON template
  (``HEARO_ALERTING_SMS_PROVIDER_URL=http://127.0.0.1:8090/sms``), de-duplicated by the
  ``Idempotency-Key`` header.
* ``GET /``: the reports page (class, times, place with a map link, clip player, profile,
  history), refreshed every few seconds. ``GET /reports`` and ``GET /sms`` give the same
  as JSON, with how many attempts each delivery took.

Storage is SQLite: a file by default so a drill survives a restart, ``:memory:`` for tests.
Run it with :func:`serve_agency` (what the CLI does) or mount :func:`create_agency_app`.
"""

from __future__ import annotations

import html
import json
import sqlite3
import threading
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

from fastapi import FastAPI, Request
from fastapi.responses import HTMLResponse, JSONResponse
from pydantic import Field
from pydantic_settings import SettingsConfigDict

from services.alerting.settings import DEV_WEBHOOK_SECRET
from services.alerting.webhooks import WebhookVerificationError, verify
from shared.settings import DEFAULT_DATA_DIR, ServiceSettings

KST = timezone(timedelta(hours=9))
MAX_BODY_BYTES = 1 << 20


class AgencySettings(ServiceSettings):
    """``HEARO_AGENCY_*``: the secrets it accepts, where it keeps reports, where it listens."""

    model_config = SettingsConfigDict(env_prefix="HEARO_AGENCY_", extra="ignore", populate_by_name=True)

    secrets: list[str] = Field(default_factory=lambda: [DEV_WEBHOOK_SECRET])
    db_path: str = str(DEFAULT_DATA_DIR / "agency.sqlite3")
    host: str = "127.0.0.1"
    port: int = 8090


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

    def close(self) -> None:
        with self._lock:
            self._db.close()


def create_agency_app(settings: AgencySettings, store: ReportStore | None = None) -> FastAPI:
    """The receiver app; ``store`` defaults to one at ``settings.db_path`` (tests pass their own)."""
    app = FastAPI(title="Hear-o drill agency", docs_url=None, redoc_url=None)
    app.state.store = store = store if store is not None else ReportStore(settings.db_path)
    secrets = list(settings.secrets)

    @app.post("/webhooks/{agency_id}")
    async def receive_webhook(agency_id: str, request: Request) -> JSONResponse:
        body = await request.body()
        if len(body) > MAX_BODY_BYTES:
            return JSONResponse({"error": "too_large"}, status_code=413)
        try:
            msg_id = verify(secrets, request.headers, body)
        except WebhookVerificationError as error:
            return JSONResponse({"error": "invalid_signature", "message": str(error)}, status_code=401)
        payload = json.loads(body)
        fresh = store.record(msg_id, "webhook", agency_id, str(payload.get("type", "")), payload)
        return JSONResponse({"status": "accepted" if fresh else "duplicate"})

    @app.post("/sms")
    async def receive_sms(request: Request) -> JSONResponse:
        key = request.headers.get("idempotency-key")
        if not key:
            return JSONResponse({"error": "missing Idempotency-Key"}, status_code=400)
        payload = await request.json()
        fresh = store.record(key, "sms", str(payload.get("to", "")), "sms", payload)
        return JSONResponse({"status": "accepted" if fresh else "duplicate"})

    @app.get("/reports")
    async def reports() -> list[dict[str, Any]]:
        return store.list("webhook")

    @app.get("/sms")
    async def sms_messages() -> list[dict[str, Any]]:
        return store.list("sms")

    @app.get("/healthz")
    async def healthz() -> dict[str, str]:
        return {"status": "ok"}

    @app.get("/", response_class=HTMLResponse)
    async def page() -> str:
        return render_page(store.list())

    return app


def serve_agency(settings: AgencySettings) -> None:
    """Run the receiver in the foreground with uvicorn (``hearo agency``)."""
    import uvicorn

    uvicorn.run(create_agency_app(settings), host=settings.host, port=settings.port, log_level="info")


def render_page(deliveries: list[dict[str, Any]]) -> str:
    """The dispatcher's page: reports first, then notices to guardians and SMS, newest first."""
    reports = [d for d in deliveries if d["type"] == "incident.reported"]
    others = [d for d in deliveries if d["type"] != "incident.reported"]
    cards = "\n".join(_report_card(d) for d in reports) or "<p>No reports yet.</p>"
    rows = "\n".join(
        f"<tr><td>{_e(_kst(d['received_at']))}</td><td>{_e(d['channel'])}</td><td>{_e(d['agency'])}</td>"
        f"<td>{_e(d['type'])}</td><td><pre>{_e(_notice_text(d))}</pre></td></tr>"
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


def _report_card(delivery: dict[str, Any]) -> str:
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
