"""A stream's windows judged under a listening mode: cheap, on the stream path.

Each window's cue scores come from the device's :class:`~shared.anomaly.model.AnomalyModel`;
the alarm needs two windows in a row at or above a cue's threshold (the lower of the two, as
the model was calibrated), then none for ``refractory_s``. The alarm names the cue its
learning data makes rarest (the fewest expected a week at that score).

* **away**: any such window is abnormal: loud, sudden or unlike the home's sound.
* **alone**: the same, unless the model's AudioSet tags say it is a programme or murmur
  (TV, radio, music, speech) with no impact or shout among them: someone living alone keeps
  the television on, and a film's crash is not theirs.
* **standard**: nothing is judged here (the nine classes only).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from shared.anomaly.model import CUES, AnomalyModel
from shared.device_modes import ListeningMode

# Tags (AudioSet labels, lower case, matched as substrings) that make a window a programme or murmur ...
MEDIA_TAGS = ("music", "speech", "television", "radio", "conversation", "narration", "singing", "chatter")
# ... unless one of these is among them.
ALARMING_TAGS = ("shout", "yell", "scream", "bang", "smash", "crash", "glass", "shatter", "slam", "thump", "breaking")
TAG_FLOOR = 0.2  # a tag below this probability says nothing


@dataclass(frozen=True)
class ScoredWindow:
    """An anomaly: the cue (one of :data:`~shared.anomaly.model.CUES`), its smoothed score,
    the threshold it crossed and the stream time."""

    cue: str
    score: float
    threshold: float
    stream_time_s: float


def media_only(tags: Sequence[tuple[str, float]]) -> bool:
    """The tags describe a programme or murmur and nothing alarming."""
    heard = [label.lower() for label, p in tags if p >= TAG_FLOOR]
    if any(word in label for label in heard for word in ALARMING_TAGS):
        return False
    return bool(heard) and any(word in heard[0] for word in MEDIA_TAGS)


class AnomalyScorer:
    """Judges one stream's windows (``judge``); ``mode`` and ``model`` may change at any time."""

    def __init__(self, mode: ListeningMode, model: AnomalyModel | None, refractory_s: float) -> None:
        self.mode = mode
        self.model = model
        self.refractory_s = refractory_s
        self._previous: np.ndarray | None = None
        self._quiet_until = -np.inf

    @property
    def judging(self) -> bool:
        return self.model is not None and self.mode is not ListeningMode.STANDARD

    def pass_over(self) -> None:
        """A window not judged (``judging`` is False): the next judged one has no window before it."""
        self._previous = None

    def judge(
        self, features: np.ndarray, stream_time_s: float, tags: Sequence[tuple[str, float]] = ()
    ) -> ScoredWindow | None:
        """The window's anomaly, or None."""
        model = self.model
        if model is None or not self.judging:
            self.pass_over()
            return None
        raw = model.score(features)
        previous, self._previous = self._previous, raw
        if previous is None or stream_time_s < self._quiet_until:
            return None
        smoothed = np.minimum(raw, previous)
        over = np.flatnonzero(smoothed >= model.thresholds)
        if not over.size:
            return None
        if self.mode is ListeningMode.ALONE and media_only(tags):
            return None
        self._quiet_until = stream_time_s + self.refractory_s
        cue = min(over, key=lambda i: model.calibrations[i].share_above(float(smoothed[i])))
        return ScoredWindow(CUES[cue], float(smoothed[cue]), float(model.thresholds[cue]), stream_time_s)
