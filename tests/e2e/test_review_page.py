"""The reviewer page in real headless Chromium against the real gateway app (SQLite, a clip
store with three segments and three incidents that are not): signing in with the reviewer
token, the first segment's audio playing while the next one's is fetched, two segments
labelled with the keyboard, in English and Korean."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from services.gateway.settings import GatewaySettings
from shared.clips import ClipStorageSettings
from shared.db import Database, upgrade_database
from tests.gateway_apps import run_gateways
from tests.review_support import Incidents, clip_store, make_incidents
from tests.web_support import chromium_or_skip, screenshot

pytestmark = [pytest.mark.e2e, pytest.mark.slow]

TOKEN = "reviewer-token-for-the-browser-test"


@pytest.fixture
def playwright() -> Iterator[Any]:
    from playwright.sync_api import sync_playwright

    with sync_playwright() as running:
        yield running


@pytest.fixture
def deployment(tmp_path: Path) -> tuple[str, Incidents]:
    """The database and clips, made before Playwright's loop runs in this thread."""
    url = f"sqlite+aiosqlite:///{tmp_path / 'hearo.db'}"
    upgrade_database(url)

    async def make() -> Incidents:
        db = Database(url)
        try:
            return await make_incidents(db, clip_store(tmp_path))
        finally:
            await db.dispose()

    return url, asyncio.run(make())


def test_two_segments_reviewed_with_the_keyboard(
    deployment: tuple[str, Incidents], tmp_path: Path, monkeypatch: pytest.MonkeyPatch, playwright: Any
) -> None:
    chromium = chromium_or_skip()
    url, made = deployment
    settings = GatewaySettings(database_url=url, reviewer_token=TOKEN, clips=ClipStorageSettings(dir=tmp_path / "clips"))
    with run_gateways(monkeypatch, settings) as (gateway,):
        browser = playwright.chromium.launch(executable_path=str(chromium), args=["--no-sandbox"])
        try:
            page = browser.new_page(locale="en-GB")
            audio_fetched: list[str] = []
            page.on("request", lambda request: audio_fetched.append(request.url) if request.url.split("?")[0].endswith("/audio") else None)
            page.goto(gateway.http + "/web/review.html")
            page.get_by_label("Reviewer token").fill(TOKEN)
            page.get_by_label("Your name").fill("Kim Reviewer")
            page.get_by_role("button", name="Start reviewing").click()
            page.locator("#review-segment").wait_for(state="visible")
            assert page.locator("#segment-decision").text_content() == "Emergency: Fire or smoke alarm (81 %) · cancelled (false alarm)"
            assert "donated" in page.locator("#segment-consent").text_content()
            page.wait_for_function(f"() => document.querySelector('#segment-audio').dataset.incident === '{made.donated}'")
            assert page.locator("#segment-audio").get_attribute("src").startswith("blob:")
            # The next segment's audio was asked for before any key: preloaded.
            page.wait_for_function("() => true")  # let the request event reach Python
            assert any(str(made.reported) in u for u in audio_fetched), audio_fetched
            screenshot(page, "review-segment")

            page.keyboard.press("n")  # the fire false alarm: normal
            page.wait_for_function(f"() => document.querySelector('#segment-decision').dataset.class === 'crime'")
            assert page.locator("#review-status").text_content() == "Recorded: Normal sound"
            page.locator("#lang-switch").click()
            page.wait_for_function("() => document.querySelector('#segment-decision').textContent.startsWith('응급')")
            assert "신고됨" in page.locator("#segment-decision").text_content()
            page.keyboard.press("c")  # the crime report: confirmed
            page.wait_for_function(f"() => document.querySelector('#segment-decision').dataset.class === 'gas'")
            assert page.locator("#segment-position").text_content() == "3 / 3"
            page.keyboard.press("s")
            page.locator("#review-done").wait_for(state="visible")
            assert page.locator("#done-summary").text_content() == "2개 구간에 라벨을 붙였습니다."
        finally:
            browser.close()
        headers = {"Authorization": f"Bearer {TOKEN}"}
        labels = {
            incident: httpx.get(f"{gateway.http}/v1/review/segments/{incident}", headers=headers).json()["history"]
            for incident in (made.donated, made.reported, made.donated_gas)
        }
    assert [(r["label"], r["reviewer"]) for r in labels[made.donated]] == [("normal", "Kim Reviewer")]
    assert [r["label"] for r in labels[made.reported]] == ["crime"] and labels[made.donated_gas] == []
