"""`hearo agency`: verifies signatures, de-duplicates by webhook-id, shows the reports."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator

import httpx
import pytest

from hearo.agency import AgencySettings, ReportStore, create_agency_app
from services.alerting.webhooks import new_secret, webhook_headers

SECRET = new_secret()


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
    app = create_agency_app(AgencySettings(secrets=[SECRET]), ReportStore(":memory:"))
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://agency") as c:
        yield c


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


async def test_sms_is_deduplicated_by_idempotency_key(client: httpx.AsyncClient) -> None:
    for _ in range(2):
        response = await client.post("/sms", json={"to": "+8219", "text": "화재"}, headers={"Idempotency-Key": "k"})
        assert response.status_code == 200
    assert (await client.post("/sms", json={"to": "+8219"})).status_code == 400
    messages = (await client.get("/sms")).json()
    assert len(messages) == 1 and messages[0]["attempts"] == 2


async def test_page_shows_class_place_clip_history_and_escapes(client: httpx.AsyncClient) -> None:
    body = report_body()
    await client.post("/webhooks/119", content=body, headers=webhook_headers([SECRET], "row-3", body))
    page = (await client.get("/")).text
    assert "화재, 화재경보" in page
    assert '<audio controls preload="none" src="https://clips/x.flac?sig=1">' in page
    assert "openstreetmap.org" in page and "2026-11-22 13:00:00 KST" in page and "구조 요청" in page
    assert "<script>alert(1)</script>" not in page and "&lt;script&gt;" in page
