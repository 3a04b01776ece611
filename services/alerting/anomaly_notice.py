"""What a guardian is told of an anomaly (away and alone modes; docs/anomaly.md).

An anomaly goes to the device's contacts only: first when it opens (``incident.detected``,
with a link to listen to the clip: the key is fixed in advance, so the link works as soon as
the gateway has stored the 30 s around the sound, about 20 s after it), then when its
countdown ran out without a cancel (``incident.dispatched`` with no agency: reported to
them alone), or when the owner cancelled it. The notice's ``anomaly`` says why: ``reason``
``sound`` (score, threshold, model version) or ``inactivity`` (seconds without a sound of
activity, the span, whether the device was hearing at all).
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime
from typing import Any

from services.alerting.archive import clip_for_report
from services.alerting.sms import SmsMessage, fit_lms
from shared.clips import ClipStore
from shared.db import Database
from shared.db.models import ContactNotification, Incident
from shared.incident_state import ContactEvent


async def anomaly_notice_data(
    db: Database, clips: ClipStore, row: ContactNotification, incident: Incident, owner_name: str,
    contact: dict[str, Any] | None, link_ttl_s: int,
) -> dict[str, Any]:
    """The ``data`` of an anomaly's notice to one contact."""
    record = incident.anomaly or {}
    listen = None
    if record.get("reason") != "inactivity":  # a silence has nothing to listen to
        listen = await clip_for_report(db, clips, incident.id, stored=None, wait_s=0.0, ttl_s=link_ttl_s)
    return {
        "event": row.event,
        "incident_id": str(incident.id),
        "kind": incident.kind.value,
        "class": {"key": incident.class_key},
        "anomaly": record,
        "owner_name": owner_name,
        "contact": contact,
        "detected_at": _iso(incident.detected_at),
        "deadline_at": _iso(incident.deadline_at),
        "agencies": [],  # never an agency on its own (the nine classes would make it an emergency)
        "clip": listen,
    }


def anomaly_sms(to: str, notice: Mapping[str, Any]) -> SmsMessage:
    """The LMS of an anomaly's notice (Korean, as the other notices)."""
    who = notice.get("owner_name") or "보호 대상자"
    record = notice.get("anomaly") or {}
    event = ContactEvent(notice["event"])
    if record.get("reason") == "inactivity":
        hours = float(record.get("score", 0)) / 3600
        what = f"{hours:.1f}시간 동안 활동 소리가 없습니다"
    else:
        what = "평소와 다른 소리가 들렸습니다"
    if event is ContactEvent.DETECTED:
        lines = [f"[Hear-o 이상 감지] {who}님의 기기에서 {what}. 확인해 주세요."]
        if notice.get("clip"):
            lines.append(f"소리 듣기: {notice['clip']['url']}")
        lines.append("112/119에는 자동 신고되지 않습니다.")
    elif event is ContactEvent.CANCELLED:
        lines = [f"[Hear-o] {who}님이 이상 감지를 취소했습니다."]
    else:
        lines = [f"[Hear-o 이상 감지] {who}님이 확인하지 않았습니다: {what}. 보호자께만 알립니다."]
    lines.append(f"사건번호: {notice['incident_id']}")
    return SmsMessage(to, "[Hear-o] 이상 감지", fit_lms(lines))


def _iso(moment: datetime) -> str:
    return moment.isoformat()
