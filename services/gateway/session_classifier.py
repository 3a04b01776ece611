"""A session's classification: what the reader queued (``HeardQueue``: windows and alarm
pattern matches in stream order) goes through the shared inference client and the session's
``Detector``, in that order, and out as ``scores`` and detections.

Each pass takes everything queued (one inference request for every waiting window), then
walks it in stream order: a match is observed when it comes (``Detector.observe_match``), a
window with its scores; the detections of the matches before a window are reported with
the window's. While inference is down the matches are still observed, and each window still
consults the spoken evidence (``Detector.unheard``): the alarm patterns and a repeated or
shouted distress phrase need no model. The detections go to the ``DetectionReporter``, which
records their incidents without holding up the next pass.
"""

from __future__ import annotations

import asyncio
import logging
import math
import time
from collections import deque
from collections.abc import Awaitable, Callable
from typing import Protocol

import numpy as np
import torch

from services.gateway.audio import Window
from services.gateway.heard_queue import END, HeardQueue, Queued
from services.gateway.inference_client import InferenceError, WindowResult
from services.gateway.metrics import GATEWAY_METRICS, DropReason
from services.gateway.novelty_gate import NoveltyGate
from services.gateway.rate_limit import TokenBucket
from services.gateway.session_detections import DetectionReporter
from services.gateway.session_profile import SessionProfile
from services.gateway.session_spoken import SessionSpoken
from shared.alarm_patterns import AlarmPatternMatch
from shared.detector import DetectionEvent, Detector
from shared.incidents import IncidentLocation, ScorePoint
from shared.incidents.sound_signature import BANDS, sound_signature
from shared.inference_wire import Ready
from shared.protocol import ClassScore, ErrorCode, ErrorMessage, Message, ScoresMessage, TagScore
from shared.taxonomy import CLASSES

log = logging.getLogger(__name__)

# An incident's score timeline: the detected class's smoothed scores over this long before it.
TIMELINE_S = 10.0


class WindowClassifier(Protocol):
    """What a session needs of the inference client (``InferenceClient`` is one)."""

    @property
    def ready(self) -> Ready | None: ...

    @property
    def connected(self) -> bool: ...

    async def classify(self, windows: torch.Tensor) -> list[WindowResult]: ...


class StreamClassifier:
    """Classifies one session's queued stream until its end marker (``run``).

    ``location`` gives the position to record with an incident (None: the registered one);
    ``scores`` limits the ``scores`` messages (None: none are sent); ``gate`` holds back the
    windows the model need not judge (None: it judges every one); ``profile`` adds its rules'
    detections (the daycare profile's: ``session_profile``; None: the detector's alone);
    ``spoken`` takes each window's tags and names the phrases heard in ``scores`` and the
    countdown's evidence (``session_spoken``; None: no spoken words).
    """

    def __init__(
        self,
        session_id: str,
        classifier: WindowClassifier,
        detector: Detector,
        queue: HeardQueue,
        reporter: DetectionReporter,
        send: Callable[[Message], Awaitable[None]],
        location: Callable[[], IncidentLocation | None],
        scores: TokenBucket | None,
        gate: NoveltyGate | None = None,
        profile: SessionProfile | None = None,
        spoken: SessionSpoken | None = None,
    ) -> None:
        self.session_id = session_id
        self.classifier = classifier
        self.detector = detector
        self.windows_classified = 0
        self._queue = queue
        self._reporter = reporter
        self._send = send
        self._location = location
        self._scores = scores
        self._gate = gate
        self._profile = profile
        self._spoken = spoken
        self._last_result: WindowResult | None = None  # what a window the gate holds back is scored
        self._loop = asyncio.get_running_loop()
        timeline_windows = math.ceil(TIMELINE_S / detector.config.hop_s) + 1
        self._smoothed: deque[tuple[float, np.ndarray]] = deque(maxlen=timeline_windows)
        # The windows a detection's sound signature is taken from: those the detector averages.
        self._recent: deque[Window] = deque(maxlen=detector.config.smoothing_windows)
        self._inference_down = False  # told the client inference is unavailable
        self._evidence = reporter.listen(detector.config, session_id, spoken)  # the countdown keeps listening
        self._household = reporter.household(detector.config, session_id)  # the home's other devices hear it
        self._anomaly = reporter.anomaly()  # away and alone modes: the home's own sound

    async def run(self) -> None:
        """Classify until the end marker, then wait until every detection is told."""
        while True:
            taken = await self._queue.take()
            await self._judge(taken)
            if taken[-1] is END:
                await self._reporter.finish()
                return

    async def _judge(self, taken: list[Queued]) -> None:
        windows = [item for item in taken if isinstance(item, Window)]
        sent = self._through_gate(windows)
        judged = await self._classify(sent) if sent else []
        results = None if judged is None else self._aligned(windows, sent, judged)
        scored = iter(results or ())
        events: list[DetectionEvent] = []  # of the matches since the last window scored
        for item in taken:
            if isinstance(item, Window):
                self._recent.append(item)
            if isinstance(item, AlarmPatternMatch):
                if self._evidence is not None:
                    self._evidence.matched(item)
                if self._household is not None:
                    self._household.matched(item)
                events += self.detector.observe_match(item)
            elif isinstance(item, Window) and results is None:
                # Inference is down: spoken words still count (repetition or shouting, no model
                # score), and so do the daycare rule's cues heard in the sound itself.
                events += self.detector.unheard(item.end_s)
                if self._profile is not None:
                    events += self._profile.heard(item.end_s, ())
                await self._report(events)
                events = []
            elif isinstance(item, Window):
                result = next(scored)
                self.windows_classified += 1
                events += self.detector.update(result.scores.numpy(), item.end_s)
                if self._anomaly is not None:
                    self._anomaly.heard(item, result.scores.numpy(), result.tags)
                if self._profile is not None:
                    events += self._profile.heard(item.end_s, result.tags)
                if self._spoken is not None:
                    self._spoken.note_tags(item.end_s, result.tags)
                if self.detector.smoothed is not None:
                    self._smoothed.append((item.end_s, self.detector.smoothed))
                    if self._evidence is not None:
                        self._evidence.heard(item.end_s, self.detector.smoothed)
                    if self._household is not None:
                        self._household.heard(item, self.detector.smoothed)
                await self._report(events)
                events = []
        await self._report(events)
        if results:
            await self._send_scores(windows[-1], results[-1])

    def _through_gate(self, windows: list[Window]) -> list[Window]:
        """The windows the model must judge: from the first one the gate admits, every later
        one of this pass too (the gate learns a window's scores only when they come back)."""
        if self._gate is None:
            return windows
        for index, window in enumerate(windows):
            if self._gate.admit(window.features, window.end_s):
                return windows[index:]
        return []

    def _aligned(self, windows: list[Window], sent: list[Window], judged: list[WindowResult]) -> list[WindowResult]:
        """A result per window: those held back by the gate (always the first of the pass) take
        the last judged window's."""
        held = len(windows) - len(sent)
        if self._gate is not None:
            for window, result in zip(sent, judged):
                self._gate.judged(window.features, window.end_s, result.scores.numpy())
        if held:
            GATEWAY_METRICS.windows_held(held)
        last = self._last_result
        if held and last is None:
            raise RuntimeError("the novelty gate held back a stream's first window")
        results = ([last] * held if last is not None else []) + judged
        if results:
            self._last_result = results[-1]
        return results

    async def _classify(self, windows: list[Window]) -> list[WindowResult] | None:
        """The windows' results, or None when inference failed (the client is told once)."""
        sent_at = time.monotonic()
        try:
            results = await self.classifier.classify(torch.stack([w.features for w in windows]))
        except InferenceError as exc:
            # Whatever failed (the connection, a timeout, an overloaded service), these windows
            # are never retried: the client is told inference is unavailable, and the count says so.
            GATEWAY_METRICS.windows_dropped(DropReason.INFERENCE_UNAVAILABLE, len(windows))
            log.warning("session %s: %d windows unclassified: %s", self.session_id, len(windows), exc)
            if not self._inference_down:
                self._inference_down = True
                await self._send(
                    ErrorMessage(
                        code=ErrorCode.INFERENCE_UNAVAILABLE,
                        message=("the model service is unavailable; until it returns only alarm patterns and "
                                 "spoken words are checked"),
                    )
                )
            return None
        GATEWAY_METRICS.windows_classified(len(results), time.monotonic() - sent_at)
        self._inference_down = False
        self._queue.caught_up()
        return results

    async def _report(self, events: list[DetectionEvent]) -> None:
        signature = self._signature() if events else None
        for event in events:
            if self._evidence is not None:
                self._evidence.detected(event)
            await self._reporter.report(event, self._timeline(event), self._location(), signature)

    def _signature(self) -> list[float] | None:
        """The sound signature of the latest windows (shared.incidents.sound_signature)."""
        frames = torch.cat([window.features for window in self._recent]) if self._recent else None
        # None before the first window (a pattern heard first), or for a spec narrower than its bands.
        return sound_signature(frames.numpy()) if frames is not None and frames.shape[-1] >= BANDS else None

    def _timeline(self, event: DetectionEvent) -> list[ScorePoint]:
        """The detected class's smoothed scores over the last ``TIMELINE_S``, timed from the detection."""
        column = event.emergency_class.id
        return [ScorePoint(round(t - event.stream_time_s, 3), float(row[column])) for t, row in self._smoothed]

    async def _send_scores(self, window: Window, result: WindowResult) -> None:
        if self._scores is None or not self._scores.take(self._loop.time()):
            return
        scores = result.scores.tolist()
        ranked = sorted(CLASSES, key=lambda c: scores[c.id], reverse=True)
        await self._send(
            ScoresMessage(
                stream_time_s=round(window.end_s, 3),
                top=[ClassScore(class_=c.key, class_id=c.id, score=round(scores[c.id], 4)) for c in ranked],
                tags=[TagScore(label=label, score=round(score, 4)) for label, score in result.tags] or None,
                spoken=self._spoken.heard_lately(window.end_s) if self._spoken is not None else None,
            )
        )
