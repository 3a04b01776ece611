"""The device's spoken languages: PATCH/GET /v1/devices/me ``spoken_languages`` (ko and en by
default, [] off, 422 for an unknown one or a repeat), a change published and followed by the
device's live sessions (``SettingsWatch`` -> ``SessionSpoken.use``), and ``hearo device
languages``. None of it needs the speech extra."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest
from typer.testing import CliRunner

from hearo import cli_spoken
from hearo.cli import app as cli
from hearo.incident_client import EXIT_INPUT, EXIT_OK
from services.gateway.settings_watch import ProfileAndLanguages, SettingsChanged, SettingsWatch
from services.gateway.session_registry import AdmittedSession, SessionRegistry
from services.gateway.session_spoken import SpokenPolicy
from services.gateway.settings import GatewaySettings
from shared.db import Database, Device
from shared.detector import Detector
from shared.features.spec import EFFICIENTAT_MEL
from shared.pubsub import LocalChannel
from shared.spoken import LANGUAGES
from tests.devices_support import devices_app, http_client
from tests.gateway_support import FakeClassifier
from tests.unit.test_devices import bearer, register


@pytest.fixture
async def api(sqlite_db: Database) -> AsyncIterator[tuple[httpx.AsyncClient, LocalChannel[SettingsChanged]]]:
    app = devices_app(sqlite_db)
    async with http_client(app) as client:
        yield client, app.state.settings_changes


async def test_languages_are_set_shown_and_published_once_per_change(
    api: tuple[httpx.AsyncClient, LocalChannel[SettingsChanged]],
) -> None:
    client, channel = api
    device_id, token = await register(client)
    assert (await client.get("/v1/devices/me", headers=bearer(token))).json()["spoken_languages"] == ["ko", "en"]
    async with channel.subscribe() as changes:
        for value in (["en"], ["en"], [], ["en", "ko"]):
            answer = await client.patch("/v1/devices/me", json={"spoken_languages": value}, headers=bearer(token))
            assert answer.status_code == 200, answer.text
            assert answer.json()["spoken_languages"] == value
        heard = [await asyncio.wait_for(anext(changes), 1.0) for _ in range(3)]  # not the repeat
        with pytest.raises(TimeoutError):
            await asyncio.wait_for(anext(changes), 0.2)
    assert heard == [SettingsChanged(device_id)] * 3
    me = (await client.get("/v1/devices/me", headers=bearer(token))).json()
    assert me["spoken_languages"] == ["en", "ko"] and me["device_profile"] == "home"


@pytest.mark.parametrize("value", [["fr"], ["KO"], ["ko", "ko"], "ko", None, ["ko", "en", "ko"]])
async def test_an_unknown_language_or_a_repeat_is_refused(
    api: tuple[httpx.AsyncClient, LocalChannel[SettingsChanged]], value: Any
) -> None:
    client, _ = api
    _, token = await register(client)
    answer = await client.patch("/v1/devices/me", json={"spoken_languages": value}, headers=bearer(token))
    assert answer.status_code == 422
    assert "spoken_languages" in answer.text
    assert (await client.get("/v1/devices/me", headers=bearer(token))).json()["spoken_languages"] == ["ko", "en"]


async def test_live_sessions_follow_a_language_change(sqlite_db: Database) -> None:
    async def authenticate(token: str) -> Device | None:
        return None

    registry = SessionRegistry(GatewaySettings(spoken=SpokenPolicy(enabled=True)), FakeClassifier(), authenticate,
                               EFFICIENTAT_MEL)  # fmt: skip
    # As where the extra is installed: no audio is fed here, so no recogniser is loaded.
    registry.spoken.available = LANGUAGES
    channel: LocalChannel[SettingsChanged] = LocalChannel()
    watch = SettingsWatch([ProfileAndLanguages(registry, sqlite_db)], channel, check_interval_s=3600)
    async with sqlite_db.session() as session:
        device = Device(token_hash=uuid.uuid4().hex, owner_name="Lee", birth_year=1980, consent_recording=True,
                        consent_location=False, consent_share_profile=False)  # fmt: skip
        session.add(device)
    admitted = AdmittedSession("s1", device, "hash", lambda code, message: None)
    registry.admit(admitted)
    detector = Detector(registry.detector_config)
    listening = registry.spoken_for(admitted, detector)
    assert listening is not None and detector.spoken is listening.fusion
    assert listening.languages == ("ko", "en")
    await watch.start()
    try:
        async with sqlite_db.session() as session:
            (await session.get_one(Device, device.id)).spoken_languages = ["en"]
        await channel.publish(SettingsChanged(str(device.id)))
        for _ in range(100):
            if listening.languages == ("en",):
                break
            await asyncio.sleep(0.01)
        assert listening.languages == ("en",)
        # The periodic read makes good a message lost.
        async with sqlite_db.session() as session:
            (await session.get_one(Device, device.id)).spoken_languages = []
        await watch.check()
        assert listening.languages == ()
    finally:
        await watch.close()
        await listening.close()
        registry.release(admitted)
        registry.spoken.close()


def test_the_cli_sets_and_shows_the_languages(monkeypatch: pytest.MonkeyPatch) -> None:
    seen: list[httpx.Request] = []
    answers = [(200, {"spoken_languages": ["ko", "en"]}), (200, {"spoken_languages": []}),
               (200, {"spoken_languages": ["en"]}),
               (422, {"error": {"code": "invalid_request", "message": "spoken_languages: bad"}})]  # fmt: skip
    real = cli_spoken.call

    def answer(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        status, body = answers.pop(0)
        return httpx.Response(status, json=body)

    def call(*args: Any, **kwargs: Any) -> tuple[int, dict[str, Any] | None]:
        return real(*args, client=httpx.Client(transport=httpx.MockTransport(answer)), **kwargs)

    monkeypatch.setattr(cli_spoken, "call", call)
    result = CliRunner().invoke(cli, ["device", "languages", "ko", "en", "--token", "t"])
    assert result.exit_code == EXIT_OK and result.stdout == "spoken languages: ko en\n"
    assert seen[0].method == "PATCH" and seen[0].content == b'{"spoken_languages":["ko","en"]}'
    result = CliRunner().invoke(cli, ["device", "languages", "none", "--token", "t"])
    assert result.exit_code == EXIT_OK and result.stdout == "spoken languages: none\n"
    assert seen[1].content == b'{"spoken_languages":[]}'
    result = CliRunner().invoke(cli, ["device", "languages", "--token", "t"])
    assert result.exit_code == EXIT_OK and seen[2].method == "GET"
    refused = CliRunner().invoke(cli, ["device", "languages", "fr", "--token", "t"])
    assert refused.exit_code == 2 and "unknown spoken language" in refused.stderr and len(seen) == 3
    result = CliRunner().invoke(cli, ["device", "languages", "en", "--token", "t"])
    assert result.exit_code == EXIT_INPUT and "refused" in result.stderr
