"""What came back, held against what was planned: hits, misses, spurious detections, latency.

Pure functions over plain records, so a synthetic timeline tests them. Latency is measured on
the client's clock from the moment the frame holding the event's onset was sent to the
moment the ``detection`` arrived: at real-time pacing that is what a home waits. It splits
into the detector's part (the detection's ``stream_time_s`` less the onset: how much audio it
needed, the same at any load) and the servers' lag (arrival less the sending of the audio up
to ``stream_time_s``: what load adds).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np

from hearo.load_bench.audio import PlannedEvent


@dataclass(frozen=True)
class HeardDetection:
    """One ``detection`` message as a client received it."""

    class_key: str
    stream_time_s: float
    latency_s: float  # arrival less the sending of the onset frame (client clock)
    lag_s: float  # arrival less the sending of the frame holding stream_time_s


@dataclass(frozen=True)
class ClientOutcome:
    """One home's result: the detection that matched its event (None: missed) and the rest."""

    hit: HeardDetection | None
    spurious: tuple[HeardDetection, ...]

    @property
    def detector_latency_s(self) -> float | None:
        return None if self.hit is None else self.hit.latency_s - self.hit.lag_s


def judge(event: PlannedEvent, detections: Sequence[HeardDetection], tolerance_s: float) -> ClientOutcome:
    """The first detection of the event's class within [onset - tolerance, end + tolerance]
    (by stream time) is the hit; every other detection, another class or outside that span or
    a second one of the same event, is spurious."""
    start, end = event.onset_s - tolerance_s, event.onset_s + event.duration_s + tolerance_s
    hit: HeardDetection | None = None
    spurious: list[HeardDetection] = []
    for detection in sorted(detections, key=lambda d: d.stream_time_s):
        if hit is None and detection.class_key == event.class_key and start <= detection.stream_time_s <= end:
            hit = detection
        else:
            spurious.append(detection)
    return ClientOutcome(hit, tuple(spurious))


@dataclass(frozen=True)
class Spread:
    """p50, p99 and max of some seconds; all None when there were none."""

    p50: float | None = None
    p99: float | None = None
    max: float | None = None

    @classmethod
    def of(cls, values: Sequence[float]) -> Spread:
        if not values:
            return cls()
        p50, p99 = np.percentile(np.asarray(values, dtype=np.float64), [50, 99])
        return cls(round(float(p50), 3), round(float(p99), 3), round(max(values), 3))


@dataclass(frozen=True)
class DetectionSummary:
    """The homes' outcomes taken together."""

    events: int
    detected: int
    missed: int
    spurious: int
    latency: Spread = field(default_factory=Spread)
    detector_latency: Spread = field(default_factory=Spread)
    lag: Spread = field(default_factory=Spread)
    spurious_classes: dict[str, int] = field(default_factory=dict)


def summarise(outcomes: Sequence[ClientOutcome]) -> DetectionSummary:
    """Counts and latency spreads over every home's outcome."""
    hits = [o.hit for o in outcomes if o.hit is not None]
    spurious = [d for o in outcomes for d in o.spurious]
    classes: dict[str, int] = {}
    for detection in spurious:
        classes[detection.class_key] = classes.get(detection.class_key, 0) + 1
    return DetectionSummary(
        events=len(outcomes),
        detected=len(hits),
        missed=len(outcomes) - len(hits),
        spurious=len(spurious),
        latency=Spread.of([h.latency_s for h in hits]),
        detector_latency=Spread.of([h.latency_s - h.lag_s for h in hits]),
        lag=Spread.of([h.lag_s for h in hits]),
        spurious_classes=classes,
    )
