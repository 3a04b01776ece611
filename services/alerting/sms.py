"""SMS through a configurable HTTP provider, and the Korean texts that fit one message.

Providers differ only in the JSON they want, so the body is a template from settings: a
JSON object whose string values may contain ``$to``, ``$sender``, ``$subject``, ``$text``
and ``$idempotency_key`` (substituted after parsing, so a text can never break the JSON).
The idempotency key also goes in an ``Idempotency-Key`` header. Given ``secrets``, the
request is also signed as a Standard Webhook (:mod:`services.alerting.webhooks`, with the
idempotency key as ``webhook-id``), which is how the drill agency's ``/sms`` knows the
sender; a real provider authenticates the configured ``headers`` instead.

Size: Korean carriers take one long message (LMS) of at most ``LMS_MAX_BYTES`` = 2,000
bytes counted in EUC-KR/CP949 (a Hangul syllable is 2 bytes, ASCII 1) with a subject of
at most ``LMS_SUBJECT_MAX_BYTES`` = 40. Characters CP949 cannot write (emoji) are
replaced by ``?``. :func:`fit_lms` keeps every essential line and drops optional lines
from the end until the text fits, so the class, the place and the clip link always go.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from string import Template
from typing import Any

import httpx

from services.alerting.delivery import DeliveryResult
from services.alerting.webhooks import webhook_headers
from shared.incident_state import ContactEvent, IncidentKind

LMS_MAX_BYTES = 2000
LMS_SUBJECT_MAX_BYTES = 40
SMS_ENCODING = "cp949"
# Korea keeps UTC+9 all year, so a fixed offset needs no time zone database.
KST = timezone(timedelta(hours=9))


def lms_bytes(text: str) -> int:
    """Length of ``text`` as the carrier counts it (CP949 bytes)."""
    return len(text.encode(SMS_ENCODING, errors="replace"))


def sanitize(text: str) -> str:
    """``text`` with what CP949 cannot encode replaced by ``?``."""
    return text.encode(SMS_ENCODING, errors="replace").decode(SMS_ENCODING)


def truncate_bytes(text: str, limit: int) -> str:
    """The longest prefix of ``text`` of at most ``limit`` CP949 bytes."""
    text = sanitize(text)
    while lms_bytes(text) > limit:
        text = text[:-1]
    return text


def fit_lms(essential: Sequence[str], optional: Sequence[str] = ()) -> str:
    """Lines joined by newlines within ``LMS_MAX_BYTES``.

    All ``essential`` lines are kept (truncated from the last one if even they are too
    long); ``optional`` lines follow in order while they fit.
    """
    text = sanitize("\n".join(essential))
    if lms_bytes(text) > LMS_MAX_BYTES:
        return truncate_bytes(text, LMS_MAX_BYTES)
    for line in optional:
        candidate = f"{text}\n{sanitize(line)}"
        if lms_bytes(candidate) > LMS_MAX_BYTES:
            break
        text = candidate
    return text


@dataclass(frozen=True)
class SmsMessage:
    to: str
    subject: str
    text: str


def render_body(template: Mapping[str, Any], values: Mapping[str, str]) -> Any:
    """The provider's JSON body: ``template`` with ``$name`` placeholders in strings filled."""

    def fill(node: Any) -> Any:
        if isinstance(node, str):
            return Template(node).safe_substitute(values)
        if isinstance(node, Mapping):
            return {k: fill(v) for k, v in node.items()}
        if isinstance(node, list):
            return [fill(v) for v in node]
        return node

    return fill(template)


class SmsSender:
    """Sends one message per call through the configured provider."""

    def __init__(
        self,
        client: httpx.AsyncClient,
        *,
        provider_url: str,
        headers: Mapping[str, str],
        template: Mapping[str, Any],
        sender: str,
        timeout_s: float,
        secrets: Sequence[str] = (),
    ) -> None:
        self.client = client
        self.provider_url = provider_url
        self.headers = dict(headers)
        self.template = template
        self.sender = sender
        self.timeout_s = timeout_s
        self.secrets = list(secrets)

    async def send(self, message: SmsMessage, idempotency_key: str) -> DeliveryResult:
        """One attempt; never raises for what the network or the provider does."""
        if not self.provider_url:
            return DeliveryResult(False, False, None, "no SMS provider configured (HEARO_ALERTING_SMS_PROVIDER_URL)")
        body = render_body(
            self.template,
            {
                "to": message.to,
                "sender": self.sender,
                "subject": truncate_bytes(message.subject, LMS_SUBJECT_MAX_BYTES),
                "text": fit_lms([message.text]),
                "idempotency_key": idempotency_key,
            },
        )
        # Serialised here so that the signature covers exactly the bytes sent.
        content = json.dumps(body, ensure_ascii=False).encode()
        headers = {**self.headers, "Idempotency-Key": idempotency_key, "content-type": "application/json"}
        if self.secrets:
            headers.update(webhook_headers(self.secrets, idempotency_key, content))
        try:
            response = await self.client.post(
                self.provider_url, content=content, headers=headers, timeout=self.timeout_s
            )
        except httpx.HTTPError as error:
            return DeliveryResult.from_error(error)
        return DeliveryResult.from_response(response)


def agency_message(to: str, report: Mapping[str, Any]) -> SmsMessage:
    """The LMS an agency gets for a report (the ``data`` of an ``incident.reported`` payload)."""
    cls = report["class"]
    # Under duress the dispatcher must read it before anything else: approach silently.
    duress = [f"[강요 신호] {report['duress_note']['ko']}"] if report.get("duress_note") else []
    essential = [
        *duress,
        *([_CHILD_SAFETY_REPORT] if report.get("kind") == IncidentKind.CHILD_SAFETY else []),
        f"[Hear-o 자동신고] {cls['label_ko']} ({cls['key']})",
        # Other emergencies heard while it was open (why a police desk gets a fire's report).
        *([f"함께 감지: {', '.join(c['label_ko'] for c in also)}"] if (also := report.get("also_detected")) else []),
        f"감지 {_kst(report['detected_at'])}, 신뢰도 {round(report['confidence'] * 100)}%",
        _place_line(report.get("location")),
    ]
    clip = report.get("clip")
    if clip:
        essential.append(f"녹음: {clip['url']}")
    essential.append(f"사건번호: {report['incident_id']}")
    optional: list[str] = []
    location = report.get("location") or {}
    if location.get("address") and location.get("latitude") is not None:
        optional.append(f"주소: {location['address']}")
    profile = report.get("profile")
    if profile:
        optional.append(f"대상자: {profile['name']} ({profile['birth_year']}년생)")
        if profile.get("medical_notes"):
            optional.append(f"의료정보: {profile['medical_notes']}")
    history = report.get("history") or []
    if history:
        optional.append(f"이전 신고 {len(history)}건:")
        optional.extend(f"- {_kst(h['detected_at'])} {h['label_ko']} ({h['state']})" for h in history)
    return SmsMessage(to, f"[Hear-o] {cls['label_ko']} 신고", fit_lms(essential, optional))


def contact_message(to: str, notice: Mapping[str, Any]) -> SmsMessage:
    """The LMS a guardian gets (the ``data`` of an ``incident.<event>`` notice)."""
    if notice.get("kind") == IncidentKind.ANOMALY:
        from services.alerting.anomaly_notice import anomaly_sms  # it builds on this module

        return anomaly_sms(to, notice)
    cls = notice["class"]
    who = notice.get("owner_name") or "보호 대상자"
    event = ContactEvent(notice["event"])
    if event is ContactEvent.DETECTED and notice.get("kind") == IncidentKind.CHILD_SAFETY:
        # The staff are told first: they acknowledge (cancel) on the device, or it goes to 112.
        lines = [
            f"[Hear-o 아동 안전] {who} 기기에서 아이 울음, 어른의 고함, 타격음이 함께 들렸습니다 "
            f"({_kst(notice['detected_at'])}). 지금 확인해 주세요.",
            f"{_kst(notice['deadline_at'])}까지 기기에서 확인(취소)하지 않으면 {', '.join(notice['agencies'])}에 "
            "자동 신고됩니다. Child safety alert: crying, adult shouting and blows heard together.",
        ]
    elif event is ContactEvent.DETECTED:
        lines = [
            f"[Hear-o] {who}님의 기기에서 '{cls['label_ko']}' 상황이 감지되었습니다 ({_kst(notice['detected_at'])}).",
            f"{_kst(notice['deadline_at'])}까지 취소되지 않으면 {', '.join(notice['agencies'])}에 자동 신고됩니다.",
        ]
    elif event is ContactEvent.DISPATCHED:
        lines = [
            f"[Hear-o] {who}님의 '{cls['label_ko']}' 상황이 {', '.join(notice['agencies'])}에 신고되었습니다.",
            _place_line(notice.get("location")),
        ]
    elif event is ContactEvent.FAILED:
        lines = [
            f"[Hear-o] {who}님의 '{cls['label_ko']}' 상황을 {', '.join(notice['agencies'])}에 신고하지 못했습니다.",
            "직접 112 또는 119에 신고해 주세요.",
            _place_line(notice.get("location")),
        ]
    else:
        lines = [f"[Hear-o] {who}님이 '{cls['label_ko']}' 감지를 취소했습니다. 신고되지 않았습니다."]
    lines.append(f"사건번호: {notice['incident_id']}")
    return SmsMessage(to, f"[Hear-o] {cls['label_ko']}", fit_lms(lines))


_CHILD_SAFETY_REPORT = "[아동 안전] 어린이집 기기: 아이 울음, 어른 고함, 타격음이 함께 감지됨 (소리 패턴, 의도는 판단하지 않음)"


def _place_line(location: Mapping[str, Any] | None) -> str:
    if not location:
        return "위치: 알 수 없음"
    if location.get("latitude") is None:
        return f"위치(등록 주소): {location.get('address') or '알 수 없음'}"
    return (
        f"위치: {location['latitude']:.5f}, {location['longitude']:.5f} "
        f"(±{round(location['accuracy_m'])}m) {location['map_url']}"
    )


def _kst(iso: str) -> str:
    moment = datetime.fromisoformat(iso).astimezone(KST)
    return moment.strftime("%Y-%m-%d %H:%M:%S KST")

