"""The daycare rule: crying, adult shouting and impacts heard within a short span -> ``child_safety``.

Three cues, each a window's level from 0 to 1, heard two ways, each counting at the higher: in
the sound itself (:mod:`shared.daycare.acoustic`: a child's pitch held in long wails, a loud
adult voice, a sudden rise across the spectrum that dies away), and in what the model says of
every window, its AudioSet tags ("what it hears", the top few per window as the inference
service sends them; a tag not among them counts as 0):

* **crying**: the highest of "Crying, sobbing", "Baby cry, infant cry", "Whimper", "Wail, moan";
* **adult shouting**: the higher of "Shout" and "Yell", less ``children_weight`` times the
  higher of "Children shouting" and "Children playing" (children's play is loud too, and is
  not this); never below 0;
* **impacts**: the highest of "Slap, smack", "Whack, thwack", "Thump, thud".

Where the tags call the window music (``music_veto``), only the tags count: a melody's notes
sound like a cry, a voice and blows to the sound's cues.

Each cue's level is averaged over the last ``smoothing_windows`` consecutive windows (a gap
in the stream starts the average afresh, as the detector's does); a window where the average
reaches the cue's threshold *hears* the cue. The rule raises when, at some window, every cue
was heard in at least ``min_windows`` windows of the last ``span_s`` seconds; then not again
for ``refractory_s``. The raise is a :class:`~shared.detector.DetectionEvent` of class
``crime`` (so it is reported to 112 by the usual routing) and kind ``child_safety``; its
confidence is the weakest cue's peak average within the span.

It hears patterns of sound, not intent: a staff member raising their voice over a crying
child while a chair falls matches it; a child hurt in silence does not. The thresholds were
chosen on a composed tuning set and household audio, and measured on a held-apart set
(``hearo daycare-eval``, docs/daycare.md).

>>> rule = ChildSafetyRule(DaycarePolicy(smoothing_windows=1, min_windows=1))
>>> rule.update(2.0, {"Crying, sobbing": 0.9, "Shout": 0.5, "Slap, smack": 0.6})[0].kind.value
'child_safety'
"""

from __future__ import annotations

import enum
from collections import deque
from collections.abc import Mapping

from pydantic import BaseModel, ConfigDict, Field

from shared.detector import DetectionEvent
from shared.incident_state import IncidentKind
from shared.taxonomy import by_key

CRYING_TAGS = ("Crying, sobbing", "Baby cry, infant cry", "Whimper", "Wail, moan")
SHOUTING_TAGS = ("Shout", "Yell")
CHILDREN_TAGS = ("Children shouting", "Children playing")
IMPACT_TAGS = ("Slap, smack", "Whack, thwack", "Thump, thud")
MUSIC_TAG = "Music"
# The class a child_safety incident carries: its routing (112) and its label in reports.
CHILD_SAFETY_CLASS = "crime"
# A window arriving more than this many hops after the previous one means windows were lost.
_GAP_HOPS = 1.5


class Cue(enum.StrEnum):
    CRYING = "crying"
    ADULT_SHOUTING = "adult_shouting"
    IMPACTS = "impacts"


class DaycarePolicy(BaseModel):
    """The rule's parameters and the incident's countdown (``HEARO_GATEWAY_DAYCARE``, JSON).

    The defaults are those chosen on the tuning set (docs/daycare.md)."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    crying_threshold: float = Field(default=0.7, gt=0.0, le=1.0)
    shouting_threshold: float = Field(default=0.3, gt=0.0, le=1.0)
    impact_threshold: float = Field(default=0.5, gt=0.0, le=1.0)
    children_weight: float = Field(default=0.5, ge=0.0)
    # A window the model hears as music at or above this: the sound's cues do not count in it
    # (a melody holds pitched, gliding notes and sharp onsets that the sound's cues take for a
    # cry, a raised voice and blows); the tags still do. None: never. 0.5: music more likely
    # than not (docs/daycare.md: the household false raises it removed, the positives it kept).
    music_veto: float | None = Field(default=0.5, gt=0.0, le=1.0)
    smoothing_windows: int = Field(default=3, ge=1)
    min_windows: int = Field(default=1, ge=1)
    span_s: float = Field(default=10.0, gt=0.0)
    refractory_s: float = Field(default=60.0, ge=0.0)
    # The child_safety incident's countdown: the staff are told at once and have this long to
    # acknowledge (a cancel) before it goes to 112.
    countdown_s: float = Field(default=30.0, ge=0.0)

    def threshold(self, cue: Cue) -> float:
        return {Cue.CRYING: self.crying_threshold, Cue.ADULT_SHOUTING: self.shouting_threshold,
                Cue.IMPACTS: self.impact_threshold}[cue]  # fmt: skip


def window_levels(tags: Mapping[str, float], acoustic: Mapping[Cue, float] | None, policy: DaycarePolicy) -> dict[Cue, float]:
    """One window's level of each cue as the rule takes it: the higher of the tags' and the
    sound's, the sound's left out where the model hears music (``music_veto``)."""
    levels = cue_levels(tags, policy.children_weight)
    if not acoustic or (policy.music_veto is not None and float(tags.get(MUSIC_TAG, 0.0)) >= policy.music_veto):
        return levels
    return {cue: max(level, acoustic.get(cue, 0.0)) for cue, level in levels.items()}


def cue_levels(tags: Mapping[str, float], children_weight: float) -> dict[Cue, float]:
    """One window's level of each cue from its tag scores (a missing tag is 0)."""

    def top(labels: tuple[str, ...]) -> float:
        return max(float(tags.get(label, 0.0)) for label in labels)

    return {
        Cue.CRYING: top(CRYING_TAGS),
        Cue.ADULT_SHOUTING: max(0.0, top(SHOUTING_TAGS) - children_weight * top(CHILDREN_TAGS)),
        Cue.IMPACTS: top(IMPACT_TAGS),
    }


class ChildSafetyRule:
    """One stream's rule (module docstring); feed it every window's tags in stream order,
    windows ``hop_s`` apart."""

    def __init__(self, policy: DaycarePolicy, hop_s: float = 0.5) -> None:
        self.policy = policy
        self.hop_s = hop_s
        self._recent: deque[dict[Cue, float]] = deque(maxlen=policy.smoothing_windows)
        self._heard: dict[Cue, deque[tuple[float, float]]] = {cue: deque() for cue in Cue}  # (time, average)
        self._last_time_s: float | None = None
        self._last_raise_s: float | None = None

    def update(
        self, stream_time_s: float, tags: Mapping[str, float], acoustic: Mapping[Cue, float] | None = None
    ) -> list[DetectionEvent]:
        """Take the window ending at ``stream_time_s``: its tags and, when given, the cue levels
        heard in its sound (:class:`shared.daycare.acoustic.AcousticCues`); each cue counts at
        the higher of the two. Returns the raise it makes (at most one). Raises ValueError when
        time goes backwards."""
        policy = self.policy
        if self._last_time_s is not None:
            if stream_time_s <= self._last_time_s:
                raise ValueError(f"stream time went from {self._last_time_s} to {stream_time_s}")
            if stream_time_s - self._last_time_s > _GAP_HOPS * self.hop_s:
                self._recent.clear()
        self._last_time_s = stream_time_s
        self._recent.append(window_levels(tags, acoustic, policy))
        since = stream_time_s - policy.span_s
        for cue, times in self._heard.items():
            while times and times[0][0] < since:
                times.popleft()
            if len(self._recent) == policy.smoothing_windows:
                average = sum(window[cue] for window in self._recent) / policy.smoothing_windows
                if average >= policy.threshold(cue):
                    times.append((stream_time_s, average))
        if any(len(times) < policy.min_windows for times in self._heard.values()):
            return []
        if self._last_raise_s is not None and stream_time_s - self._last_raise_s < policy.refractory_s:
            return []
        self._last_raise_s = stream_time_s
        confidence = min(max(average for _, average in times) for times in self._heard.values())
        return [DetectionEvent(by_key(CHILD_SAFETY_CLASS), min(confidence, 1.0), stream_time_s,
                               kind=IncidentKind.CHILD_SAFETY)]  # fmt: skip
