"""SMS provider template, LMS size limits and the Korean texts."""

from __future__ import annotations

import json
from typing import Any

import httpx

from services.alerting.sms import (
    LMS_MAX_BYTES,
    SmsMessage,
    SmsSender,
    agency_message,
    contact_message,
    fit_lms,
    lms_bytes,
    render_body,
    truncate_bytes,
)
from services.alerting.webhooks import new_secret, verify

CLIP_URL = "https://clips.example/v1/clips/0b6f3a52-5f39-4bd4-9a6c-0c3c4d4e1a00.flac?exp=1&sig=abc"


def report(**overrides: Any) -> dict[str, Any]:
    data: dict[str, Any] = {
        "incident_id": "0b6f3a52-5f39-4bd4-9a6c-0c3c4d4e1a00",
        "class": {"key": "fire", "id": 5, "label_ko": "화재, 화재경보", "label_en": "Fire or smoke alarm"},
        "confidence": 0.934,
        "detected_at": "2026-11-22T04:00:00+00:00",
        "location": {
            "latitude": 37.5665, "longitude": 126.978, "accuracy_m": 15.0,
            "map_url": "https://www.openstreetmap.org/?mlat=37.5665&mlon=126.978#map=18/37.5665/126.978",
            "address": "서울특별시 중구 세종대로 110",
        },
        "clip": {"url": CLIP_URL},
        "profile": {"name": "홍길동", "birth_year": 1948, "medical_notes": "심장질환, 와파린 복용"},
        "history": [],
    }
    data.update(overrides)
    return data


def test_byte_count_is_cp949() -> None:
    assert lms_bytes("abc") == 3
    assert lms_bytes("가나다") == 6
    assert lms_bytes("😀") == 1  # replaced by "?"


def test_truncate_never_splits_a_character() -> None:
    text = truncate_bytes("가" * 10, 7)
    assert text == "가" * 3 and lms_bytes(text) == 6


def test_fit_keeps_essentials_and_drops_optional_lines_from_the_end() -> None:
    essential = ["필수 " * 10]
    optional = [f"선택 {i} " + "가" * 200 for i in range(10)]
    text = fit_lms(essential, optional)
    assert lms_bytes(text) <= LMS_MAX_BYTES
    assert text.startswith("필수")
    assert "선택 0" in text and "선택 9" not in text


def test_agency_text_fits_one_lms_with_link_even_with_a_long_history() -> None:
    history = [
        {"detected_at": "2026-10-01T00:00:00+00:00", "label_ko": "응급 의료 상황", "state": "dispatched"}
    ] * 200
    message = agency_message("+82212345678", report(history=history, profile={
        "name": "홍길동", "birth_year": 1948, "medical_notes": "가" * 3000}))
    assert lms_bytes(message.text) <= LMS_MAX_BYTES
    assert CLIP_URL in message.text
    assert "화재, 화재경보" in message.text and "37.56650, 126.97800" in message.text
    assert "2026-11-22 13:00:00 KST" in message.text  # 04:00 UTC in Korea


def test_agency_text_names_the_other_emergencies_heard_during_the_countdown() -> None:
    also = [{"key": "crime", "id": 1, "label_ko": "범죄 (침입, 폭행, 비명)", "label_en": "Crime"}]
    lines = agency_message("+82212345678", report(also_detected=also)).text.splitlines()
    assert lines[1] == "함께 감지: 범죄 (침입, 폭행, 비명)"  # right under the class, before anything optional
    assert "함께 감지" not in agency_message("+82212345678", report(also_detected=[])).text


def test_agency_text_without_consented_profile_or_location() -> None:
    message = agency_message("+82212345678", report(profile=None, location=None, clip=None))
    assert "홍길동" not in message.text and "위치: 알 수 없음" in message.text


def test_contact_texts() -> None:
    notice = report(event="detected", owner_name="홍길동", agencies=["119"],
                    deadline_at="2026-11-22T04:01:00+00:00")
    assert "13:01:00 KST까지 취소되지 않으면 119" in contact_message("+821012345678", notice).text
    assert "119에 신고되었습니다" in contact_message("+821012345678", {**notice, "event": "dispatched"}).text
    assert "취소했습니다" in contact_message("+821012345678", {**notice, "event": "cancelled"}).text


def test_template_substitutes_only_string_values() -> None:
    template = {"msg": {"to": ["$to"], "body": "$text"}, "n": 1, "ref": "hearo-$idempotency_key"}
    body = render_body(template, {"to": "+8210", "text": '"}\n{"evil": 1', "idempotency_key": "k"})
    assert body == {"msg": {"to": ["+8210"], "body": '"}\n{"evil": 1'}, "n": 1, "ref": "hearo-k"}


async def test_sender_posts_template_with_idempotency_key() -> None:
    seen: list[httpx.Request] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        return httpx.Response(200, json={"ok": True})

    async with httpx.AsyncClient(transport=httpx.MockTransport(handler)) as client:
        sender = SmsSender(
            client, provider_url="http://sms/send", headers={"Authorization": "Bearer k"},
            template={"to": "$to", "from": "$sender", "subject": "$subject", "text": "$text"},
            sender="0212345678", timeout_s=1,
        )
        result = await sender.send(SmsMessage("+821012345678", "제목" * 30, "본문"), "row-7")
    assert result.ok
    request = seen[0]
    assert request.headers["idempotency-key"] == "row-7"
    assert request.headers["authorization"] == "Bearer k"
    body = json.loads(request.content)
    assert body["to"] == "+821012345678" and body["from"] == "0212345678" and body["text"] == "본문"
    assert lms_bytes(body["subject"]) <= 40


async def test_sender_without_provider_fails_permanently() -> None:
    async with httpx.AsyncClient() as client:
        sender = SmsSender(client, provider_url="", headers={}, template={}, sender="x", timeout_s=1)
        result = await sender.send(SmsMessage("+8210", "s", "t"), "k")
    assert not result.ok and not result.retryable


async def test_sender_signs_like_a_webhook_when_given_secrets_and_keeps_provider_headers() -> None:
    seen: list[httpx.Request] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        return httpx.Response(200)

    old, new = new_secret(), new_secret()
    async with httpx.AsyncClient(transport=httpx.MockTransport(handler)) as client:
        for secrets in ([], [new, old]):
            sender = SmsSender(client, provider_url="http://agency/sms", headers={"Authorization": "Bearer k"},
                               template={"to": "$to", "text": "$text"}, sender="x", timeout_s=1, secrets=secrets)  # fmt: skip
            assert (await sender.send(SmsMessage("+82119", "s", "화재"), "row-8")).ok
    plain, signed = seen
    assert "webhook-signature" not in plain.headers and plain.headers["authorization"] == "Bearer k"
    assert signed.headers["authorization"] == "Bearer k" and signed.headers["idempotency-key"] == "row-8"
    # The receiver holding either secret of a rotation verifies the exact bytes sent.
    for secret in (old, new):
        assert verify([secret], signed.headers, signed.content) == "row-8"
    assert json.loads(signed.content) == {"to": "+82119", "text": "화재"}
