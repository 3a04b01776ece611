"""A session's detector carries what its device's cancels taught, from its start, and follows a
step or an undo while it streams (``SessionRegistry.detector_for`` and ``retune``,
``ThresholdWatch``), on a real SQLite database with the in-process channel."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from pathlib import Path

import pytest

from services.gateway.device_thresholds import DeviceThresholds, ThresholdsChanged
from services.gateway.session_incidents import IncidentBackend
from services.gateway.session_registry import AdmittedSession, SessionRegistry
from services.gateway.settings import GatewaySettings
from services.gateway.threshold_watch import ThresholdWatch
from shared.clips import LocalClipStore
from shared.db import Database, Device
from shared.features.spec import EFFICIENTAT_MEL
from shared.incident_events import LocalIncidentEvents
from shared.incident_state import CancelKind, IncidentAction
from shared.incident_watcher import IncidentWatcher
from shared.incidents import act_on_incident, open_incident
from shared.incidents.threshold_learning import LearningPolicy
from shared.pubsub import LocalChannel
from tests.alerting_support import make_device
from tests.gateway_support import FakeClassifier

BEEP = [1.0, 0.5, 0.0, -0.5, -1.0, 0.0]


@dataclass
class Gateway:
    db: Database
    registry: SessionRegistry
    thresholds: DeviceThresholds
    watch: ThresholdWatch


@pytest.fixture
async def gateway(sqlite_db: Database, tmp_path: Path) -> AsyncIterator[Gateway]:
    events = LocalIncidentEvents()
    channel: LocalChannel[ThresholdsChanged] = LocalChannel()
    thresholds = DeviceThresholds(sqlite_db, LearningPolicy(), lambda: registry.detector_config.thresholds, channel)
    backend = IncidentBackend(
        sqlite_db, events, IncidentWatcher(sqlite_db, events), LocalClipStore(tmp_path, "secret", "http://hearo.test"),
        learning=thresholds,
    )

    async def authenticate(token: str) -> Device | None:
        return None

    registry = SessionRegistry(GatewaySettings(), FakeClassifier(), authenticate, EFFICIENTAT_MEL, backend)
    watch = ThresholdWatch(registry, channel, thresholds)
    await watch.start()
    try:
        yield Gateway(sqlite_db, registry, thresholds, watch)
    finally:
        await watch.close()


async def admitted(gateway: Gateway, device_id: uuid.UUID) -> AdmittedSession:
    async with gateway.db.session() as session:
        device = await session.get_one(Device, device_id)
    admitted = AdmittedSession(uuid.uuid4().hex, device, "token-hash", lambda code, message: None)
    gateway.registry.admit(admitted)
    return admitted


async def false_alarms(gateway: Gateway, device: uuid.UUID, count: int) -> None:
    for _ in range(count):
        opened = await open_incident(gateway.db, device_id=device, class_key="fire", confidence=0.6, sound_signature=BEEP)
        await act_on_incident(
            gateway.db, opened.incident.id, IncidentAction.CANCEL, device_id=device, kind=CancelKind.FALSE_ALARM,
            learning=gateway.thresholds,
        )


async def until(check: Callable[[], bool], timeout_s: float = 3.0) -> None:
    deadline = asyncio.get_running_loop().time() + timeout_s
    while not check():
        assert asyncio.get_running_loop().time() < deadline, "the sessions were not retuned"
        await asyncio.sleep(0.02)


async def test_a_session_starts_with_what_its_device_learned(gateway: Gateway) -> None:
    taught, other = await make_device(gateway.db), await make_device(gateway.db)
    await false_alarms(gateway, taught, 5)
    detector = await gateway.registry.detector_for(await admitted(gateway, taught))
    assert dict(detector.config.learned_thresholds) == {"fire": 0.55}
    assert detector.config.thresholds == gateway.registry.detector_config.thresholds  # the own ones stay
    fresh = await gateway.registry.detector_for(await admitted(gateway, other))
    assert dict(fresh.config.learned_thresholds) == {}


async def test_a_live_session_follows_a_step_and_an_undo(gateway: Gateway) -> None:
    device = await make_device(gateway.db)
    session = await admitted(gateway, device)
    detector = await gateway.registry.detector_for(session)
    assert dict(detector.config.learned_thresholds) == {}

    await false_alarms(gateway, device, 5)  # the fifth makes the step, heard by the watch
    await until(lambda: detector.config.learned_thresholds == {"fire": 0.55})
    fire = next(c for c in (await gateway.thresholds.settings(device))["classes"] if c["class"] == "fire")
    await gateway.thresholds.undo(device, fire["adjustments"][0]["id"])
    await until(lambda: detector.config.learned_thresholds == {})

    gateway.registry.release(session)  # a released session is no longer retuned
    await false_alarms(gateway, device, 5)
    await gateway.watch.retune({device})
    assert detector.config.learned_thresholds == {}


async def test_the_database_away_at_the_start_leaves_the_base(
    gateway: Gateway, monkeypatch: pytest.MonkeyPatch
) -> None:
    device = await make_device(gateway.db)
    await false_alarms(gateway, device, 5)

    async def away(device_ids: object) -> dict[uuid.UUID, dict[str, float]]:
        raise ConnectionError("the database is away")

    monkeypatch.setattr(gateway.thresholds, "learned", away)
    detector = await gateway.registry.detector_for(await admitted(gateway, device))
    assert dict(detector.config.learned_thresholds) == {}  # the session starts; a later change retunes it
