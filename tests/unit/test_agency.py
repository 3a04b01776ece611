"""`hearo agency`: verifies signatures, de-duplicates by webhook-id, shows the reports behind
a login, answers malformed bodies 400, and agrees with the worker on the generated secrets."""

from __future__ import annotations

import json
import stat
from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest

from hearo.agency import AgencySettings, create_agency_app, login_notice
from hearo.agency_store import ReportStore
from services.alerting.settings import AlertingSettings
from services.alerting.sms import SmsMessage, SmsSender
from services.alerting.webhooks import new_secret, webhook_headers

SECRET = new_secret()
PASSWORD = "drill-password"
LOGIN = ("agency", PASSWORD)
# The public development secret earlier releases signed with by default.
OLD_DEV_SECRET = "whsec_ZGV2LW9ubHktaGVhcm8td2ViaG9vay1zZWNyZXQ="


def report_body(incident_id: str = "i-1") -> bytes:
    return json.dumps({
        "type": "incident.reported",
        "timestamp": "2026-11-22T04:01:00+00:00",
        "data": {
            "incident_id": incident_id,
            "class": {"key": "fire", "id": 5, "label_ko": "화재, 화재경보", "label_en": "Fire or smoke alarm"},
            "confidence": 0.9,
            "score_timeline": [{"t": 0.0, "score": 0.9}],
            "detected_at": "2026-11-22T04:00:00+00:00",
            "reported_at": "2026-11-22T04:01:00+00:00",
            "trigger": "deadline",
            "location": {"latitude": 37.5, "longitude": 127.0, "accuracy_m": 10,
                         "map_url": "https://www.openstreetmap.org/?mlat=37.5&mlon=127.0",
                         "address": "<script>alert(1)</script>"},
            "clip": {"url": "https://clips/x.flac?sig=1", "sha256": "ab" * 32, "duration_s": 30.0},
            "profile": None,
            "history": [{"detected_at": "2026-10-01T00:00:00+00:00", "label_ko": "구조 요청", "state": "dispatched"}],
        },
    }, ensure_ascii=False).encode()


@pytest.fixture
async def client() -> AsyncIterator[httpx.AsyncClient]:
    app = create_agency_app(AgencySettings(secrets=[SECRET], password=PASSWORD), ReportStore(":memory:"))
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://agency", auth=LOGIN) as c:
        yield c


def signed(body: bytes, msg_id: str, secret: str = SECRET) -> dict[str, str]:
    return webhook_headers([secret], msg_id, body)


async def test_signed_report_is_stored_once_and_duplicates_counted(client: httpx.AsyncClient) -> None:
    body = report_body()
    for expected in ("accepted", "duplicate", "duplicate"):
        response = await client.post("/webhooks/119", content=body, headers=webhook_headers([SECRET], "row-1", body))
        assert response.status_code == 200 and response.json()["status"] == expected
    reports = (await client.get("/reports")).json()
    assert len(reports) == 1
    assert reports[0]["key"] == "row-1" and reports[0]["agency"] == "119" and reports[0]["attempts"] == 3
    assert reports[0]["payload"]["data"]["incident_id"] == "i-1"


async def test_bad_signature_is_refused_and_not_stored(client: httpx.AsyncClient) -> None:
    body = report_body()
    headers = webhook_headers([new_secret()], "row-2", body)
    response = await client.post("/webhooks/119", content=body, headers=headers)
    assert response.status_code == 401
    assert (await client.get("/reports")).json() == []


async def test_sms_is_verified_and_deduplicated_by_webhook_id(client: httpx.AsyncClient) -> None:
    body = json.dumps({"to": "+8219", "text": "화재"}).encode()
    for _ in range(2):
        response = await client.post("/sms", content=body, headers=signed(body, "k"))
        assert response.status_code == 200
    messages = (await client.get("/sms")).json()
    assert len(messages) == 1 and messages[0]["attempts"] == 2 and messages[0]["key"] == "k"


async def test_unsigned_or_wrongly_signed_sms_is_refused(client: httpx.AsyncClient) -> None:
    body = json.dumps({"to": "+8219", "text": "가짜 신고"}).encode()
    unsigned = await client.post("/sms", content=body, headers={"Idempotency-Key": "forged"})
    assert unsigned.status_code == 401 and unsigned.json()["error"] == "invalid_signature"
    public = await client.post("/sms", content=body, headers=signed(body, "forged", OLD_DEV_SECRET))
    assert public.status_code == 401
    assert (await client.get("/sms")).json() == []


async def test_the_workers_sms_sender_signs_what_the_agency_verifies() -> None:
    app = create_agency_app(AgencySettings(secrets=[SECRET], password=PASSWORD), store := ReportStore(":memory:"))
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://agency") as http:
        def sender(secrets: list[str]) -> SmsSender:
            return SmsSender(http, provider_url="http://agency/sms", headers={"X-Api-Key": "k"},
                             template={"to": "$to", "text": "$text"}, sender="Hear-o", timeout_s=5, secrets=secrets)  # fmt: skip

        refused = await sender([]).send(SmsMessage("+82119", "s", "화재"), "row-1")
        accepted = await sender([SECRET]).send(SmsMessage("+82119", "s", "화재"), "row-1")
    assert (refused.ok, refused.status) == (False, 401)
    assert accepted.ok and [m["payload"]["text"] for m in store.list("sms")] == ["화재"]


@pytest.mark.parametrize("path", ["/", "/reports", "/sms"])
async def test_the_page_and_lists_need_the_login(client: httpx.AsyncClient, path: str) -> None:
    body = report_body()
    await client.post("/webhooks/119", content=body, headers=signed(body, "row-9"))
    anonymous = await client.get(path, auth=None)
    assert anonymous.status_code == 401 and anonymous.headers["www-authenticate"].startswith("Basic")
    assert "화재" not in anonymous.text and "openstreetmap" not in anonymous.text
    assert (await client.get(path, auth=("agency", "guess"))).status_code == 401
    assert (await client.get(path, auth=("admin", PASSWORD))).status_code == 401
    assert (await client.get(path)).status_code == 200
    assert (await client.get("/healthz", auth=None)).status_code == 200


@pytest.mark.parametrize(
    ("body", "message"),
    [
        (b"not json", "not JSON"),
        (b"\xff\xfe", "not JSON"),
        (b"[1, 2]", "JSON object, not array"),
        (b"[" * 100_000, "not JSON"),
        (b'{"data": {}}', "'type'"),
        (b'{"type": "incident.reported", "data": [1]}', "'data' as a JSON object"),
    ],
)
async def test_a_malformed_signed_webhook_is_a_400_with_a_message(
    client: httpx.AsyncClient, body: bytes, message: str
) -> None:
    response = await client.post("/webhooks/119", content=body, headers=signed(body, "bad"))
    assert response.status_code == 400
    assert response.json()["error"] == "malformed_body" and message in response.json()["message"]
    sms = await client.post("/sms", content=body, headers=signed(body, "bad-sms"))
    assert sms.status_code == 400 and sms.json()["error"] == "malformed_body"
    assert (await client.get("/reports")).json() == [] and (await client.get("/sms")).json() == []


async def test_sms_without_its_fields_is_a_400(client: httpx.AsyncClient) -> None:
    body = json.dumps({"to": "+8219"}).encode()
    response = await client.post("/sms", content=body, headers=signed(body, "k"))
    assert response.status_code == 400 and "'text'" in response.json()["message"]


async def test_a_report_of_an_unexpected_shape_does_not_break_the_page(client: httpx.AsyncClient) -> None:
    odd = json.dumps({"type": "incident.reported", "data": {"class": "fire", "location": {"latitude": 1}}}).encode()
    assert (await client.post("/webhooks/119", content=odd, headers=signed(odd, "odd"))).status_code == 200
    page = await client.get("/")
    assert page.status_code == 200 and "Unreadable delivery odd" in page.text


async def test_rotation_old_and_new_secret_both_verify() -> None:
    old, new = new_secret(), new_secret()
    app = create_agency_app(AgencySettings(secrets=[new, old], password=PASSWORD), ReportStore(":memory:"))
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://agency") as http:
        for msg_id, secret in (("by-old", old), ("by-new", new)):
            body = report_body(msg_id)
            response = await http.post("/webhooks/119", content=body, headers=signed(body, msg_id, secret))
            assert response.status_code == 200, response.text
        retired = report_body("by-retired")
        response = await http.post("/webhooks/119", content=retired, headers=signed(retired, "r", new_secret()))
        assert response.status_code == 401


async def test_development_defaults_are_generated_shared_with_the_worker_and_not_public(
    data_dir_outside_the_repo: Path,
) -> None:
    settings = AgencySettings()
    app = create_agency_app(settings, ReportStore(":memory:"))
    worker = AlertingSettings()
    # The worker signs with what the agency verifies: the same generated secret, not a public one.
    assert settings.verifying_secrets() == worker.contact_webhook_secrets == worker.agencies["119"].channels[0].secrets
    assert settings.verifying_secrets() == worker.sms_provider_secrets
    assert OLD_DEV_SECRET not in settings.verifying_secrets()
    password = settings.login_password()
    assert password in login_notice(settings) and len(password) >= 32
    for name in ("webhook", "agency-password"):
        assert stat.S_IMODE((data_dir_outside_the_repo / "secrets" / name).stat().st_mode) == 0o600
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://agency") as http:
        body = report_body()
        public = await http.post("/webhooks/119", content=body, headers=signed(body, "x", OLD_DEV_SECRET))
        assert public.status_code == 401
        ours = await http.post("/webhooks/119", content=body, headers=signed(body, "x", worker.contact_webhook_secrets[0]))
        assert ours.status_code == 200
        assert (await http.get("/reports", auth=("agency", password))).status_code == 200


def test_a_configured_password_is_never_printed() -> None:
    settings = AgencySettings(secrets=[SECRET], password="operator-chosen")
    assert "operator-chosen" not in login_notice(settings) and "HEARO_AGENCY_PASSWORD" in login_notice(settings)


@pytest.mark.parametrize(
    ("fields", "message"),
    [
        ({"password": PASSWORD}, "HEARO_AGENCY_SECRETS"),
        ({"secrets": [SECRET]}, "HEARO_AGENCY_PASSWORD"),
        ({"secrets": [SECRET, OLD_DEV_SECRET], "password": PASSWORD}, "public development value"),
        ({"secrets": ["not-a-whsec"], "password": PASSWORD}, "whsec_"),
    ],
)
def test_in_production_the_agency_needs_real_secrets(fields: dict[str, object], message: str) -> None:
    with pytest.raises(ValueError, match=message) as refused:
        AgencySettings(environment="production", **fields)
    assert OLD_DEV_SECRET not in str(refused.value)  # a refused secret is not echoed to the log
    assert AgencySettings(environment="production", secrets=[SECRET], password=PASSWORD).secrets == [SECRET]


async def test_page_shows_class_place_clip_history_and_escapes(client: httpx.AsyncClient) -> None:
    body = report_body()
    await client.post("/webhooks/119", content=body, headers=signed(body, "row-3"))
    page = (await client.get("/")).text
    assert "화재, 화재경보" in page
    assert '<audio controls preload="none" src="https://clips/x.flac?sig=1">' in page
    assert "openstreetmap.org" in page and "2026-11-22 13:00:00 KST" in page and "구조 요청" in page
    assert "<script>alert(1)</script>" not in page and "&lt;script&gt;" in page


async def test_page_draws_the_timeline_and_says_how_the_evidence_went(client: httpx.AsyncClient) -> None:
    report = json.loads(report_body("i-evidence"))
    report["data"]["deadline_at"] = "2026-11-22T04:00:30+00:00"
    report["data"]["score_timeline"] = [
        {"t": -1.0, "class": "fire", "score": 0.2}, {"t": 0.0, "class": "fire", "score": 0.8},
        {"t": 10.0, "class": "fire", "score": 0.9}, {"t": 10.0, "class": "<b>gas</b>", "score": 0.3},
    ]  # fmt: skip
    report["data"]["evidence"] = {
        "mark": "growing", "detections": 2, "classes_heard": ["fire"], "quiet_share": 0.1,
        "shortened": {"to": "2026-11-22T04:00:30+00:00", "reason": "fire: its alarm pattern confirmed"},
    }  # fmt: skip
    body = json.dumps(report).encode()
    await client.post("/webhooks/119", content=body, headers=signed(body, "row-evidence"))
    page = (await client.get("/")).text
    assert page.count("<svg ") == 1 and page.count("<polyline ") == 2  # fire and the other class
    assert 'stroke="#b00"' in page  # the deadline the report went at
    assert "<b>gas</b>" not in page and "&lt;b&gt;gas&lt;/b&gt;" in page
    assert "<strong>growing</strong>" in page and "2026-11-22 13:00:30 KST" in page and "alarm pattern" in page
    assert "<script" not in page.split("<body>")[1].replace("&lt;script&gt;", "")  # no script, no CDN


async def test_page_says_where_in_the_home_the_sound_was_heard(client: httpx.AsyncClient) -> None:
    report = json.loads(report_body("i-household"))
    report["data"]["corroboration"] = {
        "summary": "heard in the kitchen and <i>the bedroom</i>", "peers_listening": 1,
        "linked_incidents": ["0b7e5a1c-0000-0000-0000-000000000000"],
    }  # fmt: skip
    body = json.dumps(report).encode()
    await client.post("/webhooks/119", content=body, headers=signed(body, "row-household"))
    alone = report_body("i-alone")
    await client.post("/webhooks/119", content=alone, headers=signed(alone, "row-alone"))
    page = (await client.get("/")).text
    assert "<strong>heard in the kitchen and &lt;i&gt;the bedroom&lt;/i&gt;</strong>" in page
    assert "also reported by another device of the home: <code>0b7e5a1c</code>" in page
    assert "no other device of the home" in page  # a report without a household


async def test_page_names_the_other_emergencies_heard_during_the_countdown(client: httpx.AsyncClient) -> None:
    report = json.loads(report_body("i-also"))
    report["data"]["also_detected"] = [{"key": "crime", "id": 1, "label_ko": "범죄 <b>", "label_en": "Crime"}]
    body = json.dumps(report, ensure_ascii=False).encode()
    await client.post("/webhooks/112", content=body, headers=signed(body, "row-also"))
    plain = report_body("i-plain")
    await client.post("/webhooks/119", content=plain, headers=signed(plain, "row-plain"))
    page = (await client.get("/")).text
    assert "Also heard · 함께 감지: 범죄 &lt;b&gt; · Crime" in page
    assert page.count("Also heard") == 1  # the report without any says nothing
