"""Turns a stream of per-window class scores into detection events: one per event, not per window.

For each emergency class (``normal`` never fires), every window:

1. smoothing: the class's score is averaged over the last ``smoothing_windows`` consecutive
   windows; no decision is taken until that many are in hand, and a gap in the stream
   (windows dropped because inference fell behind) starts the average afresh;
2. onset: an idle class whose smoothed score reaches its threshold starts an event, and the
   event is reported unless the class already reported within ``refractory_s`` (then the
   event is taken as the tail of the one reported);
3. hysteresis: the event lasts while the smoothed score stays at or above
   ``release_ratio * threshold``; only after it falls below can the class start another.

A second source can report the same classes: matches of a standard alarm pattern
(``shared.alarm_patterns``: temporal-three for ``fire``, temporal-four for ``gas``). A
gateway session gets matches and windows from its ``AudioPipeline`` in stream order, one
channel, and gives each match to ``observe_match`` as it comes; a caller holding a clip's
matches apart queues them with ``hear_patterns``, and ``update`` then observes those up to its
window's end before the window itself (``observe_heard_patterns`` takes the rest at the end).
Either way both sources meet the detector in stream order.
A class has one event whichever source sees it: a match while the scores hold the class's
event, or within ``pattern_hold_s`` of the class's previous match, continues the event; a
match that starts one is reported under the same refractory rule, and scores crossing the
threshold during a pattern event are its tail. So the model and the pattern detector
hearing one alarm make one detection.

A *partial* match (one group of the rhythm, fewer than a match needs: an alarm that has
just started, or an appliance saying "done") never fires by itself; it is evidence fused
with the scores. For ``partial_hold_s`` either side of it, the class's threshold (and with it
the release level) is ``partial_pattern_ratio`` times its own, so a smoothed score of at
least ``partial_pattern_ratio * threshold`` fires the class where the score alone would not:
a 6 s smoke alarm, one and a half temporal-three cycles, is caught by a model that is only
half sure. Such an event names the partial pattern (``DetectionEvent.partial_pattern``);
otherwise it is an onset like any other (refractory period, a pattern event's tail).

A home's cancels may have *learned* a higher threshold for a class (``learned_thresholds``,
``shared.incidents.threshold_learning``): it applies to the model's scores alone, to an
event's onset and its release level. A pattern match, full or partial, and spoken evidence
are judged against the class's own threshold as before, so what a home's false alarms taught
never suppresses an alarm's rhythm; ``retune`` takes a new set mid-stream.

Time is the stream time of each window's end (seconds of audio since the session started),
never the wall clock, so a file streamed at any speed gives the same detections.
"""

from __future__ import annotations

import math
from collections import deque
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Any, Protocol

import numpy as np

from shared.incident_state import IncidentKind
from shared.taxonomy import CLASSES, NORMAL, NUM_CLASSES, EmergencyClass, by_key

# A window arriving more than this many hops after the previous one means windows were lost.
_GAP_HOPS = 1.5


@dataclass(frozen=True)
class DetectorConfig:
    """Detector parameters. ``thresholds`` maps every emergency class key to its onset threshold;
    ``learned_thresholds`` some of them to a higher one for the scores alone (module docstring)."""

    thresholds: Mapping[str, float]
    release_ratio: float = 0.6
    smoothing_windows: int = 3
    refractory_s: float = 30.0
    hop_s: float = 0.5
    # A pattern match this soon after the class's previous one continues its event: more
    # than two cycles of temporal-four (5.8 s each), so one missed cycle does not split it.
    pattern_hold_s: float = 12.0
    # A partial pattern match scales its class's threshold by this for this long either side
    # of it: two temporal-three cycles, long enough for the model's windows over the alarm.
    partial_pattern_ratio: float = 0.5
    partial_hold_s: float = 8.0
    learned_thresholds: Mapping[str, float] = field(default_factory=dict)

    def __post_init__(self) -> None:
        expected = {c.key for c in CLASSES if c.is_emergency}
        if set(self.thresholds) != expected:
            raise ValueError(
                f"thresholds must name exactly the emergency classes {sorted(expected)}, "
                f"got {sorted(self.thresholds)}"
            )
        for key, value in self.thresholds.items():
            if not 0.0 < value <= 1.0:
                raise ValueError(f"threshold for {key!r} must be in (0, 1], got {value}")
        if not 0.0 < self.release_ratio <= 1.0:
            raise ValueError(f"release_ratio must be in (0, 1], got {self.release_ratio}")
        if self.smoothing_windows < 1:
            raise ValueError(f"smoothing_windows must be >= 1, got {self.smoothing_windows}")
        if self.refractory_s < 0 or self.hop_s <= 0 or self.pattern_hold_s < 0:
            raise ValueError("refractory_s and pattern_hold_s must be >= 0 and hop_s > 0")
        if not 0.0 < self.partial_pattern_ratio <= 1.0:
            raise ValueError(f"partial_pattern_ratio must be in (0, 1], got {self.partial_pattern_ratio}")
        if self.partial_hold_s < 0:
            raise ValueError(f"partial_hold_s must be >= 0, got {self.partial_hold_s}")
        for key, value in self.learned_thresholds.items():
            if key not in self.thresholds or not self.thresholds[key] <= value <= 1.0:
                raise ValueError(f"a learned threshold raises an emergency class's own, up to 1; got {key!r}: {value}")

    def score_threshold(self, class_key: str) -> float:
        """What the class's smoothed score alone must reach to start an event."""
        return self.learned_thresholds.get(class_key, self.thresholds[class_key])

    @classmethod
    def build(
        cls,
        default_threshold: float,
        overrides: Mapping[str, float] | None = None,
        model_thresholds: Mapping[str, float] | None = None,
        **kwargs: Any,
    ) -> DetectorConfig:
        """Each emergency class's threshold: its key in ``overrides`` (explicit settings) if
        there, else in ``model_thresholds`` (those the served model was tuned to), else
        ``default_threshold``.

        Raises KeyError for an unknown class key and ValueError for ``normal``, which never fires.
        """
        thresholds = {c.key: default_threshold for c in CLASSES if c.is_emergency}
        for key, value in {**(model_thresholds or {}), **(overrides or {})}.items():
            if not by_key(key).is_emergency:
                raise ValueError(f"class {key!r} never fires; it takes no threshold")
            thresholds[key] = value
        return cls(thresholds=thresholds, **kwargs)


class PatternMatch(Protocol):
    """A match of a standard alarm pattern (``shared.alarm_patterns.AlarmPatternMatch``); ``partial``:
    fewer cycles than a match needs, evidence only."""

    @property
    def pattern(self) -> str: ...
    @property
    def class_key(self) -> str: ...
    @property
    def confidence(self) -> float: ...
    @property
    def stream_time_s(self) -> float: ...
    @property
    def partial(self) -> bool: ...


@dataclass(frozen=True)
class DetectionEvent:
    """The onset of an event: ``confidence`` is the smoothed score that crossed the threshold,
    or the match's confidence when ``pattern`` (the alarm pattern that was heard) is set.

    ``partial_pattern`` names the alarm pattern partly heard when that evidence lowered the
    threshold and the score alone would not have crossed it (see the module docstring)."""

    emergency_class: EmergencyClass
    confidence: float
    stream_time_s: float
    pattern: str | None = None
    partial_pattern: str | None = None
    spoken: str | None = None  # "heard: '살려주세요' ×2" when spoken evidence made the detection
    # What the incident it opens is (incidents.kind): a rule beside the nine classes sets its
    # own (the daycare profile's ``child_safety``: shared/daycare/rule.py).
    kind: IncidentKind = IncidentKind.EMERGENCY


class SpokenEvidence(Protocol):
    """The spoken-words source the detector consults (``shared.spoken.SpokenFusion``): it says,
    at each window, which classes its heard phrases fire given the smoothed scores."""

    def decide(self, stream_time_s: float, smoothed: np.ndarray | None,
               thresholds: Mapping[str, float]) -> list[Any]: ...


@dataclass
class _ClassState:
    in_event: bool = False  # the scores hold an event
    last_report_s: float | None = None
    last_pattern_s: float | None = None  # the latest alarm pattern match
    last_partial: tuple[float, str] | None = None  # the latest partial match: when, which pattern

    def in_pattern_event(self, stream_time_s: float, hold_s: float) -> bool:
        return self.last_pattern_s is not None and abs(stream_time_s - self.last_pattern_s) <= hold_s

    def partial_pattern(self, stream_time_s: float, hold_s: float) -> str | None:
        """The pattern of a partial match within ``hold_s`` of ``stream_time_s``, if any."""
        if self.last_partial is None or abs(stream_time_s - self.last_partial[0]) > hold_s:
            return None
        return self.last_partial[1]

    def refractory(self, stream_time_s: float, refractory_s: float) -> bool:
        # Either way in time: pattern matches and windows reach the detector in stream
        # order only roughly (a match is dated by its last pulse's end).
        return self.last_report_s is not None and abs(stream_time_s - self.last_report_s) < refractory_s


@dataclass
class Detector:
    """One session's detector; feed it every classified window in stream order.

    >>> detector = Detector(DetectorConfig.build(0.5, smoothing_windows=1))
    >>> [e.emergency_class.key for e in detector.update([0.1, 0, 0, 0, 0, 0.9, 0, 0, 0], 2.0)]
    ['fire']
    """

    config: DetectorConfig
    _history: np.ndarray = field(init=False)
    _filled: int = field(init=False, default=0)
    _last_time_s: float | None = field(init=False, default=None)
    _states: list[_ClassState] = field(init=False)
    _thresholds: np.ndarray = field(init=False)  # the scores' (learned where learned)
    _own: np.ndarray = field(init=False)  # the classes' own, for partial pattern fusion
    _heard: deque[PatternMatch] = field(init=False, default_factory=deque)  # not yet observed
    spoken: SpokenEvidence | None = None
    """Spoken distress words (``shared.spoken.SpokenFusion``), consulted at every window."""
    smoothed: np.ndarray | None = field(init=False, default=None)
    """The latest window's smoothed scores (read-only), or None before ``smoothing_windows``
    consecutive windows are in hand."""

    def __post_init__(self) -> None:
        self._history = np.zeros((self.config.smoothing_windows, NUM_CLASSES), dtype=np.float64)
        self._states = [_ClassState() for _ in CLASSES]
        self.retune(self.config.learned_thresholds)

    def retune(self, learned: Mapping[str, float]) -> None:
        """Take a new set of learned thresholds (all of them: a class left out is back to its
        own) from the next window on. Raises ValueError as ``DetectorConfig`` does."""
        self.config = replace(self.config, learned_thresholds=dict(learned))
        self._own = np.array([self.config.thresholds.get(c.key, np.inf) for c in CLASSES], dtype=np.float64)
        self._thresholds = np.array(
            [self.config.score_threshold(c.key) if c.is_emergency else np.inf for c in CLASSES], dtype=np.float64
        )

    def update(self, scores: Sequence[float] | np.ndarray, stream_time_s: float) -> list[DetectionEvent]:
        """Take one window's class scores (ordered as the taxonomy) ending at ``stream_time_s``.

        Returns the events of the heard pattern matches up to ``stream_time_s``, then those
        whose onset is this window (usually none). Raises ValueError if the scores are not one
        per class or time goes backwards.
        """
        row = np.asarray(scores, dtype=np.float64)
        if row.shape != (NUM_CLASSES,):
            raise ValueError(f"expected {NUM_CLASSES} class scores, got shape {row.shape}")
        if self._last_time_s is not None:
            if stream_time_s <= self._last_time_s:
                raise ValueError(f"stream time went from {self._last_time_s} to {stream_time_s}")
            if stream_time_s - self._last_time_s > _GAP_HOPS * self.config.hop_s:
                self._filled = 0
        self._last_time_s = stream_time_s
        events = self.observe_heard_patterns(stream_time_s)

        k = self.config.smoothing_windows
        self._history[self._filled % k] = row
        self._filled += 1
        if self._filled < k:
            self.smoothed = None
            return events + self._observe_spoken(stream_time_s)
        smoothed = self._history.mean(axis=0)
        smoothed.flags.writeable = False
        self.smoothed = smoothed
        events += self._observe_spoken(stream_time_s)

        cfg = self.config
        for emergency_class, state in zip(CLASSES, self._states):
            if emergency_class is NORMAL:
                continue
            score = float(smoothed[emergency_class.id])
            own = float(self._thresholds[emergency_class.id])
            partial = state.partial_pattern(stream_time_s, cfg.partial_hold_s)
            # A partial pattern lowers the class's own threshold: what was learned never mutes a rhythm.
            threshold = float(self._own[emergency_class.id]) * cfg.partial_pattern_ratio if partial is not None else own
            if state.in_event:
                state.in_event = score >= threshold * cfg.release_ratio
                continue
            if score < threshold:
                continue
            state.in_event = True
            tail = state.in_pattern_event(stream_time_s, cfg.pattern_hold_s)
            if not tail and not state.refractory(stream_time_s, cfg.refractory_s):
                state.last_report_s = stream_time_s
                fused = partial if score < own else None
                events.append(DetectionEvent(emergency_class, score, stream_time_s, partial_pattern=fused))
        return events

    def unheard(self, stream_time_s: float) -> list[DetectionEvent]:
        """Take a window the model could not judge (the inference service is down), ending at
        ``stream_time_s``: the spoken evidence is still consulted, with repetition or shouting
        as its only support (no model score backs it), and the queued pattern matches up to it
        are observed. The smoothing starts afresh at the next scored window. Raises ValueError
        if time goes backwards."""
        if self._last_time_s is not None and stream_time_s <= self._last_time_s:
            raise ValueError(f"stream time went from {self._last_time_s} to {stream_time_s}")
        self._last_time_s = stream_time_s
        self._filled = 0
        self.smoothed = None
        return self.observe_heard_patterns(stream_time_s) + self._observe_spoken(stream_time_s)

    def observe_pattern(
        self, class_key: str, confidence: float, stream_time_s: float, pattern: str | None = None
    ) -> list[DetectionEvent]:
        """Take a match of a standard alarm pattern for ``class_key`` heard at ``stream_time_s``.

        Returns the event when the match starts one that is reported (see the module
        docstring), else nothing. Raises KeyError for an unknown class key and ValueError
        for ``normal`` or a confidence outside [0, 1].
        """
        emergency_class = _emergency(class_key)
        if not 0.0 <= confidence <= 1.0:
            raise ValueError(f"confidence must be in [0, 1], got {confidence}")
        state = self._states[emergency_class.id]
        continues = state.in_event or state.in_pattern_event(stream_time_s, self.config.pattern_hold_s)
        state.last_pattern_s = stream_time_s
        if continues or state.refractory(stream_time_s, self.config.refractory_s):
            return []
        state.last_report_s = stream_time_s
        return [DetectionEvent(emergency_class, confidence, stream_time_s, pattern)]

    def observe_partial_pattern(self, class_key: str, stream_time_s: float, pattern: str) -> None:
        """Take a partial match of ``pattern`` for ``class_key`` heard at ``stream_time_s``:
        evidence that lowers the class's threshold around it (see the module docstring), never
        an event by itself. Raises KeyError for an unknown class key and ValueError for ``normal``.
        """
        self._states[_emergency(class_key).id].last_partial = (stream_time_s, pattern)

    def _observe_spoken(self, stream_time_s: float) -> list[DetectionEvent]:
        """The events spoken evidence starts at this window: one per class under the same
        rules as a pattern match (an event already running, or the refractory period, joins it)."""
        if self.spoken is None:
            return []
        events = []
        for decision in self.spoken.decide(stream_time_s, self.smoothed, self.config.thresholds):
            emergency_class = _emergency(decision.class_key)
            state = self._states[emergency_class.id]
            if state.in_event or state.refractory(stream_time_s, self.config.refractory_s):
                continue
            state.last_report_s = stream_time_s
            events.append(DetectionEvent(emergency_class, decision.confidence, stream_time_s, spoken=decision.summary))
        return events

    def hear_patterns(self, matches: Iterable[PatternMatch]) -> None:
        """Queue pattern matches, oldest first, for ``update`` to observe in stream order."""
        self._heard.extend(matches)

    def observe_heard_patterns(self, until_s: float = math.inf) -> list[DetectionEvent]:
        """Observe the queued matches heard up to ``until_s``; returns the events they start."""
        events: list[DetectionEvent] = []
        while self._heard and self._heard[0].stream_time_s <= until_s:
            events += self.observe_match(self._heard.popleft())
        return events

    def observe_match(self, match: PatternMatch) -> list[DetectionEvent]:
        """Observe one match now (a partial one as evidence, a full one as ``observe_pattern``);
        for a caller that already has matches and windows in stream order (a gateway session)."""
        if match.partial:
            self.observe_partial_pattern(match.class_key, match.stream_time_s, match.pattern)
            return []
        return self.observe_pattern(match.class_key, match.confidence, match.stream_time_s, match.pattern)


def _emergency(class_key: str) -> EmergencyClass:
    """The emergency class ``class_key`` names; KeyError if none, ValueError for ``normal``."""
    emergency_class = by_key(class_key)
    if not emergency_class.is_emergency:
        raise ValueError(f"class {class_key!r} never fires")
    return emergency_class


def clip_decision(
    scores: np.ndarray,
    config: DetectorConfig,
    window_end_s: Sequence[float] | None = None,
    patterns: Iterable[PatternMatch] = (),
    spoken: SpokenEvidence | None = None,
) -> tuple[int, float]:
    """What the service would report for a clip whose windows scored ``scores`` [W, 9] and in
    which the alarm pattern detector heard ``patterns`` (and, with ``spoken``, the phrases its
    spoken evidence holds): (class id of the first detection, its confidence), or (0, 0.0) when
    nothing fires.

    Window ``i`` ends at ``window_end_s[i]`` (default ``2 s + i * hop_s``). A fresh ``Detector``
    takes the windows in order with the matches queued as a session queues them, so each is
    observed before the first window ending at or after it, and those heard after the last
    window at the end of the clip. The first detection is the earliest in stream time; on a
    tie (several classes firing on one window) the highest confidence wins.
    """
    rows = np.asarray(scores, dtype=np.float64)
    ends = [2.0 + i * config.hop_s for i in range(len(rows))] if window_end_s is None else window_end_s
    if len(ends) != len(rows):
        raise ValueError(f"{len(rows)} windows but {len(ends)} end times")
    detector = Detector(config, spoken=spoken)
    detector.hear_patterns(patterns)
    for row, end_s in zip(rows, ends):
        if events := detector.update(row, end_s):
            return _first(events)
    if events := detector.observe_heard_patterns():
        return _first(events)
    return NORMAL.id, 0.0


def _first(events: list[DetectionEvent]) -> tuple[int, float]:
    best = min(events, key=lambda event: (event.stream_time_s, -event.confidence))
    return best.emergency_class.id, best.confidence
