"""The device profile (home | daycare): PATCH/GET /v1/devices/me ``device_profile``, a change
published and followed by the device's live sessions (``SettingsWatch``, ``SessionProfile``),
and ``hearo device profile``."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest
from typer.testing import CliRunner

from hearo import cli_household, cli_profile
from hearo.cli import app as cli
from hearo.incident_client import EXIT_INPUT, EXIT_OK
from services.gateway.ring_buffer import RingBuffer
from services.gateway.session_profile import SessionProfile
from services.gateway.session_registry import AdmittedSession, SessionRegistry
from services.gateway.settings import GatewaySettings
from services.gateway.settings_watch import ProfileAndLanguages, SettingsChanged, SettingsWatch
from shared.daycare import DaycarePolicy
from shared.db import Database, Device
from shared.device_modes import DeviceProfile
from shared.features.spec import EFFICIENTAT_MEL
from shared.incident_state import IncidentKind
from shared.pubsub import LocalChannel
from tests.devices_support import devices_app, http_client
from tests.gateway_support import FakeClassifier
from tests.unit.test_devices import bearer, register

ALL_THREE = (("Crying, sobbing", 0.9), ("Shout", 0.5), ("Slap, smack", 0.6))


@pytest.fixture
async def api(sqlite_db: Database) -> AsyncIterator[tuple[httpx.AsyncClient, LocalChannel[SettingsChanged]]]:
    app = devices_app(sqlite_db)
    async with http_client(app) as client:
        yield client, app.state.settings_changes


async def test_the_profile_is_set_shown_and_published_once_per_change(
    api: tuple[httpx.AsyncClient, LocalChannel[SettingsChanged]],
) -> None:
    client, channel = api
    device_id, token = await register(client)
    assert (await client.get("/v1/devices/me", headers=bearer(token))).json()["device_profile"] == "home"
    async with channel.subscribe() as changes:
        for value in ("daycare", "daycare", "home"):
            answer = await client.patch("/v1/devices/me", json={"device_profile": value}, headers=bearer(token))
            assert answer.status_code == 200, answer.text
            assert answer.json()["device_profile"] == value
        heard = [await asyncio.wait_for(anext(changes), 1.0) for _ in range(2)]  # daycare, then home: not the repeat
        with pytest.raises(TimeoutError):
            await asyncio.wait_for(anext(changes), 0.2)
    assert heard == [SettingsChanged(device_id)] * 2
    me = (await client.get("/v1/devices/me", headers=bearer(token))).json()
    assert me["device_profile"] == "home" and me["profile"]["name"] == "Kim Soon-ja"  # the owner's, untouched


@pytest.mark.parametrize("value", ["school", "DAYCARE", None, 1])
async def test_anything_but_home_or_daycare_is_refused(
    api: tuple[httpx.AsyncClient, LocalChannel[SettingsChanged]], value: Any
) -> None:
    client, _ = api
    _, token = await register(client)
    answer = await client.patch("/v1/devices/me", json={"device_profile": value}, headers=bearer(token))
    assert answer.status_code == 422
    assert "device_profile" in answer.text
    assert (await client.get("/v1/devices/me", headers=bearer(token))).json()["device_profile"] == "home"


def test_a_session_profile_runs_the_rule_only_under_daycare() -> None:
    policy = DaycarePolicy(smoothing_windows=1, min_windows=1)
    home = SessionProfile(DeviceProfile.HOME, policy, 0.5, None)  # the tags alone
    assert home.heard(2.0, ALL_THREE) == []
    home.use(DeviceProfile.DAYCARE)
    (event,) = home.heard(2.5, ALL_THREE)
    assert event.kind is IncidentKind.CHILD_SAFETY and event.emergency_class.key == "crime"
    home.use(DeviceProfile.DAYCARE)  # the same again: the rule keeps its refractory period
    assert home.heard(3.0, ALL_THREE) == []
    home.use(DeviceProfile.HOME)
    assert home.heard(3.5, ALL_THREE) == []


async def test_live_sessions_follow_a_profile_change(sqlite_db: Database) -> None:
    async def authenticate(token: str) -> Device | None:
        return None

    settings = GatewaySettings(daycare=DaycarePolicy(smoothing_windows=1, min_windows=1))
    registry = SessionRegistry(settings, FakeClassifier(), authenticate, EFFICIENTAT_MEL)
    channel: LocalChannel[SettingsChanged] = LocalChannel()
    watch = SettingsWatch([ProfileAndLanguages(registry, sqlite_db)], channel, check_interval_s=3600)
    async with sqlite_db.session() as session:
        device = Device(token_hash=uuid.uuid4().hex, owner_name="Lee", birth_year=1980, consent_recording=True,
                        consent_location=False, consent_share_profile=False)  # fmt: skip
        session.add(device)
    admitted = AdmittedSession("s1", device, "hash", lambda code, message: None)
    registry.admit(admitted)
    listening = registry.profile_for(admitted, RingBuffer(40.0, 16_000))  # silence: the tags make it
    assert listening.profile is DeviceProfile.HOME
    await watch.start()
    try:
        async with sqlite_db.session() as session:
            (await session.get_one(Device, device.id)).profile = DeviceProfile.DAYCARE
        await channel.publish(SettingsChanged(str(device.id)))
        for _ in range(100):
            if listening.profile is DeviceProfile.DAYCARE:
                break
            await asyncio.sleep(0.01)
        assert listening.profile is DeviceProfile.DAYCARE
        assert len(listening.heard(2.0, ALL_THREE)) == 1
        # The periodic read makes good a message lost.
        async with sqlite_db.session() as session:
            (await session.get_one(Device, device.id)).profile = DeviceProfile.HOME
        await watch.check()
        assert listening.profile is DeviceProfile.HOME
    finally:
        await watch.close()
        registry.release(admitted)


def test_the_cli_sets_and_shows_the_profile(monkeypatch: pytest.MonkeyPatch) -> None:
    seen: list[httpx.Request] = []
    answers = [(200, {"device_profile": "daycare"}), (200, {"device_profile": "daycare"}),
               (422, {"error": {"code": "invalid_request", "message": "device_profile: bad"}})]  # fmt: skip
    real = cli_household.call

    def answer(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        status, body = answers.pop(0)
        return httpx.Response(status, json=body)

    def call(*args: Any, **kwargs: Any) -> tuple[int, dict[str, Any] | None]:
        return real(*args, client=httpx.Client(transport=httpx.MockTransport(answer)), **kwargs)

    monkeypatch.setattr(cli_profile, "call", call)
    result = CliRunner().invoke(cli, ["device", "profile", "daycare", "--token", "t"])
    assert result.exit_code == EXIT_OK and result.stdout == "profile: daycare\n"
    assert "112" in result.stderr
    assert seen[0].method == "PATCH" and seen[0].content == b'{"device_profile":"daycare"}'
    result = CliRunner().invoke(cli, ["device", "profile", "--token", "t"])
    assert result.exit_code == EXIT_OK and seen[1].method == "GET"
    assert CliRunner().invoke(cli, ["device", "profile", "school", "--token", "t"]).exit_code == 2  # typer refuses it
    result = CliRunner().invoke(cli, ["device", "profile", "home", "--token", "t"])
    assert result.exit_code == EXIT_INPUT and "refused" in result.stderr
