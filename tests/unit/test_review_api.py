"""The review routes: the reviewer token (401 without or wrong, 403 while unset, a device token
opens nothing), consent on every read and label (404 for an undonated false alarm), the audio
audited, labels with history, the report, and bad bodies refused in the API's shape."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from fastapi import FastAPI

from services.gateway import review_api
from services.gateway.settings import GatewaySettings
from shared.db import Database
from tests.devices_support import http_client
from tests.review_support import Incidents, clip_store, make_incidents

TOKEN = "reviewer-token-for-tests-0123456789"
AUTH = {"Authorization": f"Bearer {TOKEN}"}


def _app(db: Database, tmp_path: Path, token: str = TOKEN) -> FastAPI:
    app = FastAPI()
    app.state.db = db
    app.state.clip_store = clip_store(tmp_path)
    app.state.reviewer_token = token
    app.include_router(review_api.router)
    return app


@pytest.fixture
async def made(sqlite_db: Database, tmp_path: Path) -> AsyncIterator[Incidents]:
    yield await make_incidents(sqlite_db, clip_store(tmp_path))


async def test_every_route_needs_the_reviewer_token(sqlite_db: Database, tmp_path: Path, made: Incidents) -> None:
    paths = ["/v1/review/segments", f"/v1/review/segments/{made.donated}", "/v1/review/report",
             f"/v1/review/segments/{made.donated}/audio?reviewer=kim"]  # fmt: skip
    async with http_client(_app(sqlite_db, tmp_path)) as http:
        for path in paths:
            missing = await http.get(path)
            assert missing.status_code == 401 and missing.json()["detail"]["code"] == "missing_token"
            assert missing.headers["www-authenticate"] == "Bearer"
            wrong = await http.get(path, headers={"Authorization": f"Bearer {TOKEN[:-1]}x"})
            assert wrong.status_code == 401 and wrong.json()["detail"]["code"] == "invalid_token"
            assert (await http.get(path, headers=AUTH)).status_code == 200
        posted = await http.post(f"/v1/review/segments/{made.donated}/reviews", json={"label": "normal", "reviewer": "kim"})
        assert posted.status_code == 401
    async with http_client(_app(sqlite_db, tmp_path, token="")) as http:
        off = await http.get("/v1/review/segments", headers=AUTH)
        assert off.status_code == 403 and off.json()["detail"]["code"] == "review_disabled"
        assert (await http.get("/v1/review/segments")).status_code == 401


async def test_segments_labels_and_the_report(sqlite_db: Database, tmp_path: Path, made: Incidents) -> None:
    async with http_client(_app(sqlite_db, tmp_path)) as http:
        listed = (await http.get("/v1/review/segments", headers=AUTH)).json()["segments"]
        assert [s["incident_id"] for s in listed] == [str(made.donated), str(made.reported), str(made.donated_gas)]
        assert listed[0]["averages"] == {"crime": 0.74, "fire": 0.715} and listed[0]["exportable"] is True
        audio = await http.get(f"/v1/review/segments/{made.donated}/audio", params={"reviewer": "kim"}, headers=AUTH)
        assert audio.status_code == 200 and audio.headers["content-type"] == "audio/flac" and audio.content[:4] == b"fLaC"
        url = f"/v1/review/segments/{made.donated}/reviews"
        first = await http.post(url, json={"label": "fire", "reviewer": "kim"}, headers=AUTH)
        assert first.status_code == 201 and first.json()["review"]["model_label"] == "fire"
        second = await http.post(url, json={"label": "normal", "reviewer": "lee", "note": "toaster"}, headers=AUTH)
        assert second.json()["segment"]["review"]["label"] == "normal" and second.json()["segment"]["reviews"] == 2
        one = (await http.get(f"/v1/review/segments/{made.donated}", headers=AUTH)).json()
        assert [r["label"] for r in one["history"]] == ["normal", "fire"]
        pending = (await http.get("/v1/review/segments", headers=AUTH)).json()["segments"]
        assert str(made.donated) not in [s["incident_id"] for s in pending]
        everything = (await http.get("/v1/review/segments?pending=false", headers=AUTH)).json()["segments"]
        assert len(everything) == 3
        report = (await http.get("/v1/review/report", headers=AUTH)).json()
        assert report["classes"] == [{"class": "fire", "reviewed": 1, "judged": 1, "confirmed": 0, "unclear": 0,
                                      "corrected": {"normal": 1}, "precision": 0.0}]  # fmt: skip
        assert (await http.get("/v1/review/report?kind=anomaly", headers=AUTH)).json()["overall"]["reviewed"] == 0


async def test_consent_is_checked_on_every_read_and_label(sqlite_db: Database, tmp_path: Path, made: Incidents) -> None:
    async with http_client(_app(sqlite_db, tmp_path)) as http:
        for hidden in (made.undonated, made.expired, made.pending):
            for response in (
                await http.get(f"/v1/review/segments/{hidden}", headers=AUTH),
                await http.get(f"/v1/review/segments/{hidden}/audio?reviewer=kim", headers=AUTH),
                await http.post(f"/v1/review/segments/{hidden}/reviews", json={"label": "normal", "reviewer": "kim"}, headers=AUTH),
            ):
                assert response.status_code == 404 and response.json()["detail"]["code"] == "unknown_segment"


async def test_bad_requests_are_refused(sqlite_db: Database, tmp_path: Path, made: Incidents) -> None:
    url = f"/v1/review/segments/{made.donated}/reviews"
    async with http_client(_app(sqlite_db, tmp_path)) as http:
        for body in ({"label": "toaster", "reviewer": "kim"}, {"label": "fire", "reviewer": " "}, {"label": "fire"},
                     {"label": "fire", "reviewer": "kim", "note": "x" * 501}, {"label": "fire", "reviewer": "kim", "x": 1}):
            assert (await http.post(url, json=body, headers=AUTH)).status_code == 422, body
        bad = await http.post(url, content=b"\xff{", headers={**AUTH, "Content-Type": "application/json"})
        assert bad.status_code in (400, 422)
        assert (await http.get(f"/v1/review/segments/{made.donated}/audio", headers=AUTH)).status_code == 422
        assert (await http.get("/v1/review/report?kind=burglary", headers=AUTH)).status_code == 422


def test_a_short_or_public_reviewer_token_is_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    with pytest.raises(ValueError, match="at least 16 characters"):
        GatewaySettings(reviewer_token="short")
    assert GatewaySettings(reviewer_token=TOKEN).reviewer_token == TOKEN
