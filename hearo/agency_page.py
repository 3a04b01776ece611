"""The drill agency's page: the reports as a dispatcher needs them, then the other deliveries."""

from __future__ import annotations

import html
import json
from collections.abc import Callable
from datetime import datetime, timedelta, timezone
from typing import Any

from hearo.agency_chart import timeline_svg
from shared.incident_state import IncidentOutcome

KST = timezone(timedelta(hours=9))

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
.duress{{background:#b00;color:#fff;padding:.6rem;border-radius:4px}}
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
    timeline = timeline_svg(data.get("score_timeline") or [], str(cls.get("key", "")), _seconds_between(data))
    # Other emergencies heard while it was open: this report went to their agencies too.
    also = "".join(
        f"<p class=\"also\">Also heard · 함께 감지: {_e(c.get('label_ko'))} · {_e(c.get('label_en'))}</p>"
        for c in data.get("also_detected") or []
    )
    return f"""<div class="report">
<h2>{_e(cls.get('label_ko'))} · {_e(cls.get('label_en'))}</h2>
{also}{_duress_banner(data.get("duress_note") if data.get("duress") else None)}
<dl>
<dt>Agency</dt><dd>{_e(delivery['agency'])} (attempts: {_e(delivery['attempts'])})</dd>
<dt>Detected</dt><dd>{_e(_kst(data.get('detected_at')))}, confidence {_e(round(100 * data.get('confidence', 0)))}%</dd>
<dt>Reported</dt><dd>{_e(_kst(data.get('reported_at')))} ({_e(data.get('trigger'))})</dd>
<dt>Location</dt><dd>{place}</dd>
<dt>Clip</dt><dd>{clip_html}</dd>
<dt>Person</dt><dd>{profile_html}</dd>
<dt>Evidence</dt><dd>{_evidence_text(data.get('evidence'))}</dd>
<dt>Household</dt><dd>{_household_text(data.get('corroboration'))}</dd>
<dt>Score timeline</dt><dd>{timeline}</dd>
<dt>History</dt><dd><ul>{history_html}</ul></dd>
<dt>Incident</dt><dd><code>{_e(data.get('incident_id'))}</code></dd>
<dt>Outcome</dt><dd>{_outcome_form(delivery, answer)}</dd>
</dl></div>"""


def _duress_banner(note: object) -> str:
    # First thing on the card: how to approach decides whether the person is safe.
    if not isinstance(note, dict):
        return ""
    return (
        f'<p class="duress" role="alert"><strong>DURESS · 강요 신호</strong><br>{_e(note.get("ko"))}<br>'
        f'<span lang="en">{_e(note.get("en"))}</span></p>'
    )


def _household_text(corroboration: object) -> str:
    # What the home's other devices heard (docs/evidence.md); linked reports are the same event.
    if not isinstance(corroboration, dict):
        return "no other device of the home"
    text = f"<strong>{_e(corroboration.get('summary'))}</strong>"
    linked = [str(i) for i in corroboration.get("linked_incidents") or []]
    if linked:
        codes = ", ".join(f"<code>{_e(i[:8])}</code>" for i in linked)
        text += f"<br>the same event, also reported by another device of the home: {codes}"
    return text


def _evidence_text(evidence: object) -> str:
    if not isinstance(evidence, dict):
        return "not recorded"
    heard = ", ".join(str(key) for key in evidence.get("classes_heard") or [])
    text = (
        f"<strong>{_e(evidence.get('mark'))}</strong>: {_e(evidence.get('detections'))} detection(s); heard: {_e(heard)}"
    )
    if evidence.get("phrases"):
        text += f"; <strong>{_e(evidence['phrases'])}</strong>"  # the distress words spoken (docs/spoken.md)
    if evidence.get("quiet_share") is not None:
        text += f"; quiet {_e(round(100 * float(evidence['quiet_share'])))}% of the countdown heard"
    shortened = evidence.get("shortened")
    if isinstance(shortened, dict):
        text += f"<br>countdown shortened to {_e(_kst(shortened.get('to')))}: {_e(shortened.get('reason'))}"
    return text


def _seconds_between(data: dict[str, Any]) -> float | None:
    # Where the deadline falls on the chart: the one the report went at.
    try:
        detected = datetime.fromisoformat(data["detected_at"])
        return (datetime.fromisoformat(data["deadline_at"]) - detected).total_seconds()
    except (KeyError, TypeError, ValueError):
        return None


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
