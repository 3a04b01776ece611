"""The novelty gate in a live session: the model is not asked about steady sound it has just
called normal (the held windows are counted), an alarm that starts is judged at once and
detected, and every window still reaches the detector, in order."""

from __future__ import annotations

import asyncio
from typing import cast

import numpy as np
import torch

from services.gateway.audio import Window
from services.gateway.heard_queue import END, HeardQueue
from services.gateway.inference_client import WindowResult
from services.gateway.metrics import GATEWAY_METRICS
from services.gateway.novelty_gate import GatePolicy, NoveltyGate
from services.gateway.session_classifier import StreamClassifier
from services.gateway.session_detections import DetectionReporter
from services.gateway.session_incidents import SessionIncidents
from shared.detector import Detector, DetectorConfig
from shared.features.spec import EFFICIENTAT_MEL
from shared.features.stream import clip_windows
from shared.protocol import DetectionMessage, Message
from shared.taxonomy import NUM_CLASSES, by_key
from tests.unit.test_session_detections import SlowIncidents

FIRE = by_key("fire").id
RATE = EFFICIENTAT_MEL.sample_rate


class LoudIsFire:
    """The inference client: a window scores fire when its last second holds a loud tone."""

    ready = None
    connected = True

    def __init__(self) -> None:
        self.windows = 0

    async def classify(self, windows: torch.Tensor) -> list[WindowResult]:
        self.windows += len(windows)
        scores = torch.zeros(len(windows), NUM_CLASSES)
        loud = windows[:, -50:, :].amax(dim=(1, 2)) > 1.5  # efficientat_mel units: quiet room 0.7, tone 2.6
        scores[:, FIRE] = torch.where(loud, 0.9, 0.01)
        scores[:, 0] = 1 - scores[:, FIRE]
        return [WindowResult(row, (), 1.0, 2.0) for row in scores]


def held_total() -> float:
    return GATEWAY_METRICS.registry.get_sample_value("hearo_gateway_held_windows_total") or 0.0


async def test_steady_sound_is_held_and_an_alarm_is_still_detected() -> None:
    rng = np.random.default_rng(0)
    quiet = 0.003 * rng.standard_normal(30 * RATE)
    t = np.arange(10 * RATE) / RATE
    alarm = 0.5 * np.sin(2 * np.pi * 3100 * t) + 0.003 * rng.standard_normal(t.size)
    features = clip_windows(EFFICIENTAT_MEL, np.concatenate([quiet, alarm]).astype(np.float32), EFFICIENTAT_MEL.frames_for(0.5))
    sent: list[Message] = []

    async def send(message: Message) -> None:
        sent.append(message)

    config = DetectorConfig.build(0.5, smoothing_windows=3, hop_s=0.5)
    model = LoudIsFire()
    queue = HeardQueue(max_windows=256)
    incidents = SlowIncidents()
    incidents.written.set()
    reporter = DetectionReporter(send, cast(SessionIncidents, incidents), lambda current: None)
    gate = NoveltyGate.for_detector(GatePolicy(), EFFICIENTAT_MEL, config)
    classifier = StreamClassifier("s", model, Detector(config), queue, reporter, send, lambda: None, None, gate)
    reporting = reporter.start("reporter")
    running = asyncio.create_task(classifier.run())
    held_before = held_total()

    for index, window in enumerate(features):
        await queue.put(Window(window, EFFICIENTAT_MEL.window_seconds + 0.5 * index))
        await asyncio.sleep(0)  # one window a pass, as in real time
    await queue.put(END)
    await asyncio.wait_for(running, 5.0)
    await asyncio.wait_for(reporting, 5.0)

    assert classifier.windows_classified == len(features)  # every window reached the detector
    assert model.windows < 0.5 * len(features)  # the quiet half-minute was mostly held
    assert held_total() - held_before == len(features) - model.windows
    assert len(incidents.opened) == 1 and incidents.opened[0].emergency_class.id == FIRE
    assert incidents.opened[0].stream_time_s <= 30.0 + 2.0 + 1.5  # as without the gate: the alarm fills windows
    assert [m.class_ for m in sent if isinstance(m, DetectionMessage)] == ["fire"]
