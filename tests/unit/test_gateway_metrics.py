"""The gateway's Prometheus series move where their events happen (issue 15): windows
classified and their round trips, windows dropped by reason, detections by class; and a
session's log lines carry its ids.

``GATEWAY_METRICS`` is one per process, so each test compares a series before and after."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any, cast

import pytest
import torch

from services.gateway import sessions
from services.gateway.audio import Window
from services.gateway.heard_queue import HeardQueue
from services.gateway.metrics import GATEWAY_METRICS, DropReason
from services.gateway.session_detections import DetectionReporter
from services.gateway.session_incidents import SessionIncidents
from services.gateway.sessions import StreamSession
from shared.detector import DetectionEvent
from shared.incidents import IncidentLocation, OpenedIncident, ScorePoint
from shared.log_format import log_ids
from shared.protocol import DetectionMessage, ErrorMessage, Message
from shared.taxonomy import by_key
from tests.gateway_support import DEVICE_TOKENS, FakeClassifier, audio, make_client, send_audio, session, start, stop
from tests.unit.test_session_incidents import detect, make_harness


def sample(name: str, **labels: str) -> float:
    return GATEWAY_METRICS.registry.get_sample_value(name, labels) or 0.0


def dropped(reason: DropReason) -> float:
    return sample("hearo_gateway_dropped_windows_total", reason=reason.value)


@pytest.fixture
def classifier() -> FakeClassifier:
    return FakeClassifier()


def test_classified_windows_are_counted_with_one_round_trip_per_classify_call(classifier: FakeClassifier) -> None:
    windows, round_trips = sample("hearo_gateway_windows_total"), sample("hearo_gateway_classify_seconds_count")
    with make_client(classifier) as client, session(client) as ws:
        send_audio(ws, audio(3.0))
        stopped = stop(ws)[-1]
    assert stopped["windows"] == 5
    assert sample("hearo_gateway_windows_total") - windows == 5
    assert sample("hearo_gateway_classify_seconds_count") - round_trips == len(classifier.calls)


def test_windows_answered_late_are_counted_late(classifier: FakeClassifier) -> None:
    classifier.delay_s = 0.6  # over LATE_AFTER_S
    late = sample("hearo_gateway_late_windows_total")
    with make_client(classifier) as client, session(client) as ws:
        send_audio(ws, audio(2.0))
        stopped = stop(ws)[-1]
    assert sample("hearo_gateway_late_windows_total") - late == stopped["windows"] > 0


def test_a_detection_sent_is_counted_by_its_class(classifier: FakeClassifier) -> None:
    fire, crime = (sample("hearo_gateway_detections_total", **{"class": key}) for key in ("fire", "crime"))
    with make_client(classifier) as client, session(client) as ws:
        send_audio(ws, audio(3.0) + audio(6.0, loud=True) + audio(3.0))
        assert stop(ws)[-1]["detections"] == 1
    assert sample("hearo_gateway_detections_total", **{"class": "fire"}) - fire == 1
    assert sample("hearo_gateway_detections_total", **{"class": "crime"}) == crime


class UnrecordableIncidents:
    """Incident writes that fail (the database is away): the detection is still told."""

    def open(
        self, event: DetectionEvent, scores: list[ScorePoint], location: IncidentLocation | None,
        signature: list[float] | None = None,
    ) -> asyncio.Task[OpenedIncident | None]:
        async def write() -> OpenedIncident | None:
            return None

        return asyncio.create_task(write())


async def test_a_detection_with_an_incident_is_counted_when_it_is_told() -> None:
    sent: list[Message] = []

    async def send(message: Message) -> None:
        sent.append(message)

    fire = sample("hearo_gateway_detections_total", **{"class": "fire"})
    reporter = DetectionReporter(send, cast(SessionIncidents, UnrecordableIncidents()), lambda current: None)
    reporter.start("reporter")
    await reporter.report(DetectionEvent(by_key("fire"), 0.9, 4.0), [], None)
    await reporter.finish()
    assert [type(m) for m in sent] == [DetectionMessage, ErrorMessage]  # told, then "not recorded"
    assert sample("hearo_gateway_detections_total", **{"class": "fire"}) - fire == 1


def test_windows_lost_while_inference_is_down_are_dropped_as_inference_unavailable(
    classifier: FakeClassifier,
) -> None:
    classifier.fail = True
    windows, lost = sample("hearo_gateway_windows_total"), dropped(DropReason.INFERENCE_UNAVAILABLE)
    with make_client(classifier) as client, session(client) as ws:
        send_audio(ws, audio(4.0))
        assert stop(ws)[-1]["windows"] == 0
    # 4 s: windows end at 2.006 ... 3.506 s, and the end completes 3 more.
    assert dropped(DropReason.INFERENCE_UNAVAILABLE) - lost == sum(classifier.calls) == 7
    assert sample("hearo_gateway_windows_total") == windows


async def test_every_window_a_full_live_queue_drops_is_counted_behind() -> None:
    queue, behind = HeardQueue(max_windows=2), dropped(DropReason.BEHIND)
    told = [queue.put_dropping_oldest(Window(torch.zeros(1), end_s)) for end_s in (2.0, 2.5, 3.0, 3.5, 4.0)]
    assert told == [False, False, True, False, False]  # the client is told once ...
    assert dropped(DropReason.BEHIND) - behind == 3  # ... every drop is counted


def test_a_live_session_behind_counts_each_window_classified_or_dropped(
    classifier: FakeClassifier, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(sessions, "AHEAD_SLACK_S", 1e9)  # every client is live
    windows, behind = sample("hearo_gateway_windows_total"), dropped(DropReason.BEHIND)
    held = sample("hearo_gateway_held_windows_total")
    with make_client(classifier, window_queue_size=2) as client, session(client) as ws:
        classifier.gate = asyncio.Event()
        send_audio(ws, audio(6.0))
        assert ws.receive_json()["code"] == "behind"
        gate = classifier.gate
        client.portal.call(gate.set)  # type: ignore[union-attr]
        stopped = stop(ws)[-1]
    # Judged: by the model, or held back by the novelty gate with the last judged scores.
    judged = sample("hearo_gateway_windows_total") - windows + sample("hearo_gateway_held_windows_total") - held
    assert judged == stopped["windows"]
    # 6 s: windows end at 2.006 ... 5.506 s, and the end completes 3 more (which wait for room).
    assert judged + dropped(DropReason.BEHIND) - behind == 11


class IdsOfEachLine(logging.Handler):
    """Keeps each line's message with the ids bound where it was logged."""

    def __init__(self) -> None:
        super().__init__(logging.INFO)
        self.lines: list[tuple[str, dict[str, object]]] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.lines.append((record.getMessage(), log_ids()))


@pytest.fixture
def gateway_lines() -> Iterator[IdsOfEachLine]:
    logger = logging.getLogger("services.gateway")
    handler, level = IdsOfEachLine(), logger.level
    logger.addHandler(handler)
    logger.setLevel(logging.INFO)
    yield handler
    logger.removeHandler(handler)
    logger.setLevel(level)


def test_a_sessions_lines_carry_its_session_and_device_ids_until_it_ends(
    classifier: FakeClassifier, gateway_lines: IdsOfEachLine, monkeypatch: pytest.MonkeyPatch
) -> None:
    left_bound: list[dict[str, object]] = []
    run = StreamSession.run

    async def run_then_note_ids(self: StreamSession) -> None:
        await run(self)
        left_bound.append(log_ids())  # in the task that ran the session

    monkeypatch.setattr(StreamSession, "run", run_then_note_ids)
    classifier.fail = True  # so that the classifier's own task logs too
    ready: list[dict[str, Any]] = []
    with make_client(classifier) as client:
        for token in ("token-a", "token-b"):
            with client.websocket_connect("/v1/stream") as ws:
                ws.send_json(start(token))
                ready.append(ws.receive_json())
                send_audio(ws, audio(2.5))
                stop(ws)
    for token, opened in zip(("token-a", "token-b"), ready, strict=True):
        ids = {"session_id": opened["session_id"], "device_id": str(DEVICE_TOKENS[token])}
        lines = [message for message, bound in gateway_lines.lines if bound == ids]
        assert any(" open: " in line for line in lines) and any(" closed: " in line for line in lines)
        assert any("unclassified" in line for line in lines)  # logged in the session's classifier task
    assert all(bound for _, bound in gateway_lines.lines), gateway_lines.lines
    assert left_bound == [{}, {}]


async def test_a_blocked_event_loop_shows_in_the_loop_lag() -> None:
    """The probe's timer wakes late by about as long as the loop was held."""
    count, total = sample("hearo_gateway_loop_lag_seconds_count"), sample("hearo_gateway_loop_lag_seconds_sum")
    under = sample("hearo_gateway_loop_lag_seconds_bucket", le="0.1")
    probe = asyncio.create_task(GATEWAY_METRICS.probe_loop_lag())
    await asyncio.sleep(0.05)
    time.sleep(0.4)  # every session of the process would wait this long
    await asyncio.sleep(0.3)
    probe.cancel()
    assert sample("hearo_gateway_loop_lag_seconds_count") - count >= 1
    assert sample("hearo_gateway_loop_lag_seconds_sum") - total >= 0.15
    grew = sample("hearo_gateway_loop_lag_seconds_count") - count
    assert sample("hearo_gateway_loop_lag_seconds_bucket", le="0.1") - under < grew  # one wake was late


def test_the_time_a_detection_waits_for_its_incident_is_recorded(tmp_path: Path, classifier: FakeClassifier) -> None:
    opened = sample("hearo_gateway_incident_open_seconds_count")
    harness = make_harness(tmp_path, classifier)
    with harness.client, session(harness.client) as ws:
        detection, _ = detect(ws)
        ws.send_json({"type": "cancel", "incident_id": detection["incident_id"]})
        stop(ws)
    assert sample("hearo_gateway_incident_open_seconds_count") - opened == 1
