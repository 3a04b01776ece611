"""A session's classification and its detection reports, without a socket or a database:
a slow incident write does not hold up the classification of the next windows, and the
detection is told, in order, once its write is done."""

from __future__ import annotations

import asyncio
from types import SimpleNamespace
from typing import cast

import torch

from services.gateway.audio import Window
from services.gateway.heard_queue import END, HeardQueue
from services.gateway.inference_client import WindowResult
from services.gateway.session_classifier import StreamClassifier
from services.gateway.session_detections import DetectionReporter
from services.gateway.session_incidents import SessionIncidents
from shared.detector import DetectionEvent, Detector, DetectorConfig
from shared.incidents import EvidencePolicy, IncidentLocation, OpenedIncident, ScorePoint
from shared.inference_wire import Ready
from shared.protocol import DetectionMessage, ErrorCode, ErrorMessage, Message
from shared.taxonomy import NUM_CLASSES, by_key

FIRE = by_key("fire").id


class FireEverywhere:
    """The inference client: every window scores 0.9 fire."""

    ready: Ready | None = None
    connected = True

    def __init__(self) -> None:
        self.windows = 0

    async def classify(self, windows: torch.Tensor) -> list[WindowResult]:
        self.windows += len(windows)
        scores = torch.zeros(len(windows), NUM_CLASSES)
        scores[:, FIRE] = 0.9
        return [WindowResult(row, (), 1.0, 2.0) for row in scores]


class SlowIncidents:
    """Incident writes that take until ``written`` is set, then fail (the database is away)."""

    def __init__(self) -> None:
        self.written = asyncio.Event()
        self.opened: list[DetectionEvent] = []
        self.backend = SimpleNamespace(evidence=EvidencePolicy(), household=None, anomaly=None)  # what the listening reads

    def open(
        self, event: DetectionEvent, scores: list[ScorePoint], location: IncidentLocation | None,
        signature: list[float] | None = None,
    ) -> asyncio.Task[OpenedIncident | None]:
        self.opened.append(event)
        return asyncio.create_task(self._write())

    async def _write(self) -> OpenedIncident | None:
        await self.written.wait()
        return None

    async def announce(self, opened: OpenedIncident) -> None:
        raise AssertionError("nothing was opened")


def window(end_s: float) -> Window:
    return Window(torch.zeros(4, 4), end_s)


async def test_a_slow_incident_write_does_not_hold_up_classification() -> None:
    sent: list[Message] = []

    async def send(message: Message) -> None:
        sent.append(message)

    incidents = SlowIncidents()
    model = FireEverywhere()
    queue = HeardQueue(max_windows=64)
    reporter = DetectionReporter(send, cast(SessionIncidents, incidents), lambda current: None)
    detector = Detector(DetectorConfig.build(0.5, smoothing_windows=1, hop_s=0.5))
    classifier = StreamClassifier("s", model, detector, queue, reporter, send, lambda: None, None)
    reporting = reporter.start("reporter")
    running = asyncio.create_task(classifier.run())

    for i in range(4):
        await queue.put(window(2.0 + 0.5 * i))
    await asyncio.sleep(0.05)
    assert len(incidents.opened) == 1  # the first window fired; its write is under way
    for i in range(4, 20):  # 8 s more audio while the database takes its time
        await queue.put(window(2.0 + 0.5 * i))
    await asyncio.sleep(0.05)
    assert classifier.windows_classified == model.windows == 20
    assert not any(isinstance(m, DetectionMessage) for m in sent)  # told once written

    incidents.written.set()
    await queue.put(END)
    await asyncio.wait_for(running, 1.0)
    assert reporting.done() and reporter.detections == 1
    detection, unavailable = sent
    assert isinstance(detection, DetectionMessage) and detection.class_ == "fire" and detection.incident_id is None
    assert isinstance(unavailable, ErrorMessage) and unavailable.code is ErrorCode.INCIDENT_UNAVAILABLE
