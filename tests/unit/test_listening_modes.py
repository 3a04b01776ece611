"""The listening mode: PATCH/GET /v1/devices/me ``listening_mode`` and ``inactivity_span_s``
(422 for anything else), the anomaly model's state, the change published for live sessions
(``ModeWatch`` sets the mode and model on the device's session listeners), and ``hearo device mode``."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator, Coroutine
from datetime import datetime
from typing import Any, cast

import httpx
import numpy as np
import pytest
import torch
from typer.testing import CliRunner

from hearo.cli import app as cli
from hearo.cli_mode import parse_span
from hearo.incident_client import EXIT_OK
from services.gateway.settings_watch import SettingsChanged, SettingsWatch
from services.gateway.session_anomaly import AnomalyBackend, SessionAnomaly
from services.gateway.audio import Window
from services.gateway.heard_queue import END, HeardQueue
from services.gateway.inference_client import WindowResult
from services.gateway.session_classifier import StreamClassifier
from services.gateway.session_detections import DetectionReporter
from services.gateway.session_incidents import SessionIncidents
from shared.anomaly import AnomalyPolicy, WindowDescriber, train_model, window_features
from shared.anomaly.features import CLASSES, FEATURE_LENGTH
from shared.anomaly.store import store_model
from shared.db import Database
from shared.detector import Detector, DetectorConfig
from shared.device_modes import ListeningMode
from shared.incidents import EvidencePolicy
from shared.protocol import Message
from shared.pubsub import LocalChannel
from shared.taxonomy import NUM_CLASSES, by_key
from tests.alerting_support import make_device
from tests.devices_support import devices_app, http_client
from tests.unit.test_anomaly_model import home_pairs
from tests.unit.test_devices import bearer, register


@pytest.fixture
async def api(sqlite_db: Database) -> AsyncIterator[tuple[httpx.AsyncClient, LocalChannel[SettingsChanged]]]:
    app = devices_app(sqlite_db)
    async with http_client(app) as client:
        yield client, app.state.settings_changes


async def test_set_and_read_the_mode_and_the_models_state(api: tuple[httpx.AsyncClient, LocalChannel[SettingsChanged]],
                                                           sqlite_db: Database) -> None:  # fmt: skip
    client, channel = api
    device_id, token = await register(client)
    me = (await client.get("/v1/devices/me", headers=bearer(token))).json()
    assert (me["listening_mode"], me["inactivity_span_s"]) == ("standard", None)
    assert me["anomaly"]["active_version"] is None and me["anomaly"]["learned_share"] == 0.0
    async with channel.subscribe() as heard:
        patched = await client.patch(
            "/v1/devices/me", headers=bearer(token), json={"listening_mode": "alone", "inactivity_span_s": 43200}
        )
        assert patched.status_code == 200, patched.text
        assert (patched.json()["listening_mode"], patched.json()["inactivity_span_s"]) == ("alone", 43200)
        assert await asyncio.wait_for(anext(heard), 1) == SettingsChanged(device_id)
    model = train_model(home_pairs(500, np.random.default_rng(0)), budget_per_week=1.0, hop_s=0.5)
    now = patched.json()["updated_at"]
    await store_model(sqlite_db, uuid.UUID(device_id), model, datetime.fromisoformat(now), datetime.fromisoformat(now))
    me = (await client.get("/v1/devices/me", headers=bearer(token))).json()
    assert me["anomaly"]["active_version"] == 1 and me["anomaly"]["threshold"] == round(model.threshold, 3)
    cleared = await client.patch("/v1/devices/me", headers=bearer(token), json={"inactivity_span_s": None})
    assert cleared.json()["inactivity_span_s"] is None and cleared.json()["listening_mode"] == "alone"


@pytest.mark.parametrize("body", [
    {"listening_mode": "party"}, {"listening_mode": None}, {"inactivity_span_s": 60},
    {"inactivity_span_s": 8 * 86400}, {"inactivity_span_s": "12h"},
])  # fmt: skip
async def test_bad_modes_and_spans_are_refused(api: tuple[httpx.AsyncClient, LocalChannel[SettingsChanged]],
                                               body: dict[str, object]) -> None:  # fmt: skip
    client, _ = api
    _, token = await register(client)
    response = await client.patch("/v1/devices/me", headers=bearer(token), json=body)
    assert response.status_code == 422, response.text
    assert next(iter(body)) in response.text


class _Incidents:
    """What a listener needs of its session's incidents: the device and the backend's db and
    spawn (and, for a session's reporter, its anomaly backend and no countdown listening)."""

    def __init__(self, db: Database, device_id: uuid.UUID, anomaly: AnomalyBackend | None = None) -> None:
        self.device = type("D", (), {"id": device_id})()
        self.backend = self
        self.db = db
        self.session_id = "s"
        self.tasks: list[asyncio.Task[object]] = []
        self.anomaly = anomaly
        self.evidence = EvidencePolicy()
        self.household = None

    def spawn(self, work: Coroutine[Any, Any, object], name: str) -> asyncio.Task[object]:
        task = asyncio.ensure_future(work)
        self.tasks.append(task)
        return task


async def test_a_mode_change_reaches_the_live_sessions_listener(api: tuple[httpx.AsyncClient, LocalChannel[SettingsChanged]],
                                                                 sqlite_db: Database) -> None:  # fmt: skip
    client, channel = api
    device_id, token = await register(client)
    backend = AnomalyBackend(AnomalyPolicy())
    incidents = _Incidents(sqlite_db, uuid.UUID(device_id))
    listener = backend.listen(incidents)  # type: ignore[arg-type]
    assert isinstance(listener, SessionAnomaly)
    await asyncio.gather(*incidents.tasks)
    assert listener.scorer.mode is ListeningMode.STANDARD
    watch = SettingsWatch([backend], channel, check_interval_s=60)
    await watch.start()
    try:
        await client.patch("/v1/devices/me", headers=bearer(token), json={"listening_mode": "away"})
        for _ in range(50):
            if listener.scorer.mode is ListeningMode.AWAY:
                break
            await asyncio.sleep(0.02)
        assert listener.scorer.mode is ListeningMode.AWAY and listener.model_version is None
    finally:
        await watch.close()


class _CrimeAfterFiveSeconds:
    """The inference client: from 5 s of stream on, the model hears crime (0.99) in every window."""

    ready = None
    connected = True

    def __init__(self) -> None:
        self.end_s: list[float] = []

    async def classify(self, windows: torch.Tensor) -> list[WindowResult]:
        scores = torch.full((len(windows), NUM_CLASSES), 0.01)
        scores[:, by_key("crime").id] = 0.99 if self.end_s and self.end_s[-1] >= 5.0 else 0.01
        return [WindowResult(row, (), 1.0, 2.0) for row in scores]


async def test_the_session_feeds_each_windows_class_scores_to_its_anomaly_listener(sqlite_db: Database) -> None:
    device_id = await make_device(sqlite_db)
    incidents = _Incidents(sqlite_db, device_id, AnomalyBackend(AnomalyPolicy(sample_every_s=1.0)))
    reporter = DetectionReporter(_ignore, cast(SessionIncidents, incidents), lambda current: None)
    model = _CrimeAfterFiveSeconds()
    queue = HeardQueue(max_windows=64)
    classifier = StreamClassifier("s", model, Detector(DetectorConfig.build(0.999, smoothing_windows=1, hop_s=0.5)),
                                  queue, reporter, _ignore, lambda: None, None)  # fmt: skip
    running = asyncio.create_task(classifier.run())
    for i in range(20):
        model.end_s.append(2.0 + 0.5 * i)
        await queue.put(Window(torch.zeros(8, 16), 2.0 + 0.5 * i, level_dbfs=-50.0))
        await asyncio.sleep(0)
    await queue.put(END)
    await asyncio.wait_for(running, 5.0)
    listener = reporter.anomaly()
    assert listener is not None
    kept = np.asarray(listener._pairs)  # the learning samples, as they will be written
    crime = CLASSES.start + by_key("crime").id - 1
    assert kept.shape[2] == FEATURE_LENGTH and set(np.round(kept[:, 1, crime], 2)) == {-4.6, 4.6}
    await asyncio.gather(*incidents.tasks)


async def test_standard_mode_learns_the_same_vectors_while_describing_only_its_samples(sqlite_db: Database) -> None:
    """The learning pairs are each window's full vector as describing every window gives it
    (the level jumps included), though a session in standard mode computes only the sampled ones."""
    device_id = await make_device(sqlite_db)
    incidents = _Incidents(sqlite_db, device_id, AnomalyBackend(AnomalyPolicy(sample_every_s=2.0)))
    listener = DetectionReporter(_ignore, cast(SessionIncidents, incidents), lambda current: None).anomaly()
    assert listener is not None
    rng = np.random.default_rng(4)
    reference, expected = WindowDescriber(), []
    for i in range(30):
        window = Window(torch.from_numpy(rng.normal(size=(8, 16)).astype(np.float32)), 2.0 + 0.5 * i,
                        level_dbfs=float(rng.uniform(-60, -10)))  # fmt: skip
        scores = rng.uniform(0.01, 0.99, NUM_CLASSES)
        listener.heard(window, scores, ())
        expected.append(reference.describe(window_features(window.features.numpy(), window.level_dbfs), scores))
    kept = np.asarray(listener._pairs)
    assert len(kept) >= 6  # 15 s of windows, a sample every 2 s
    for previous, current in kept:
        i = next(i for i, vector in enumerate(expected) if np.array_equal(vector, current))
        assert i > 0 and np.array_equal(previous, expected[i - 1])
    assert any(pair[1][-1] != 0.0 for pair in kept)  # the jumps are there
    await asyncio.gather(*incidents.tasks)


async def _ignore(message: Message) -> None:
    pass


def test_spans() -> None:
    assert (parse_span("12h"), parse_span("90m"), parse_span("1.5d"), parse_span("3600"), parse_span("default")) == (
        43200, 5400, 129600, 3600, None)  # fmt: skip


def test_the_cli_sets_and_shows_the_mode(monkeypatch: pytest.MonkeyPatch) -> None:
    calls: list[tuple[str, str, object]] = []

    def call(api: str, token: str, method: str, path: str, body: object = None) -> tuple[int, dict[str, object]]:
        calls.append((method, path, body))
        return EXIT_OK, {"listening_mode": "alone", "inactivity_span_s": 43200,
                         "anomaly": {"active_version": None, "learning_since": None, "learned_share": 0.1,
                                     "learning_days": 3.0, "budget_per_week": 1.0}}  # fmt: skip

    monkeypatch.setattr("hearo.cli_mode.call", call)
    runner = CliRunner()
    result = runner.invoke(cli, ["device", "mode", "alone", "--inactivity", "12h", "--token", "t"])
    assert result.exit_code == EXIT_OK, result.output
    assert calls == [("PATCH", "/v1/devices/me", {"listening_mode": "alone", "inactivity_span_s": 43200})]
    assert "mode: alone  inactivity: 12 h" in result.output and "still being learned" in result.output
    assert runner.invoke(cli, ["device", "mode", "--token", "t"]).exit_code == EXIT_OK
    assert calls[-1] == ("GET", "/v1/devices/me", None)
    refused = runner.invoke(cli, ["device", "mode", "away", "--inactivity", "soon", "--token", "t"])
    assert refused.exit_code != EXIT_OK and "not a span" in refused.output
