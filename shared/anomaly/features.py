"""What the anomaly model knows of a window: a short vector, cheap enough for every window.

The window's log-mel frames ``[T, n_mels]`` are pooled into :data:`BANDS` bands; each band
gives its mean over the window (the timbre and loudness of what is heard) and how far its
loudest frames stand above its median (the 99th percentile minus the median: how sudden or
impulsive it is: a breaking glass, a slam or a fall stands out here even over a loud room),
and the window's RMS level in dBFS closes the spectral part (:func:`window_features`, about
30 µs a window).

:class:`WindowDescriber` adds what a session knows besides the audio, for the whole vector
(:data:`FEATURE_LENGTH`, as stored for learning and scored):

* **the nine-class model's view**: the window's eight emergency class scores as logits, clipped
  to +-:data:`LOGIT_CLIP` (a breaking glass raises ``crime``, a fall ``accident``, a forced
  door ``trapped`` or ``crime``, often well under the nine-class detector's thresholds);
* **the moment**: how far the window's level stands above the loudest of the windows that
  ended 2 to 5.5 s before it (the few seconds just before its own audio, which overlaps the
  three windows before it), so a sound is judged against the room as it was a moment ago, not
  only against the learning days.

:func:`impact_parts` reads two numbers off the vector for the ``impact`` cue: how sudden the
window is across most of the spectrum (a fall, a blow or a slam is broadband; a beep, a syllable
or a note is sudden in a few bands) and the moment.

Activity (for inactivity in alone mode) needs no model: a window is a sound of activity when
its level stands :data:`ACTIVITY_MARGIN_DB` above the room's floor. :class:`ActivityFloor`
follows the floor as a low percentile of the levels: each window moves it up by
:data:`FLOOR_RISE_DB` when louder and down by :data:`FLOOR_FALL_DB` when quieter, so it settles
where a sixth of the windows are quieter (rise / (rise + fall)). One quiet moment does not drop
it, and a steady machine or a TV left on becomes the floor within minutes and stops counting
as life in the home.
"""

from __future__ import annotations

import functools
from collections import deque

import numpy as np

from shared.taxonomy import NUM_CLASSES

BANDS = 16
SPECTRAL_LENGTH = 2 * BANDS + 1
CLASS_LENGTH = NUM_CLASSES - 1  # the emergency classes (``normal``, id 0, says nothing more)
FEATURE_LENGTH = SPECTRAL_LENGTH + CLASS_LENGTH + 1
# Where each part lies in the vector.
SPECTRAL = slice(0, SPECTRAL_LENGTH)
CLASSES = slice(SPECTRAL_LENGTH, SPECTRAL_LENGTH + CLASS_LENGTH)
MOMENT = slice(FEATURE_LENGTH - 1, FEATURE_LENGTH)
SUDDEN = slice(BANDS, 2 * BANDS)  # each band's 99th percentile minus its median
# An impact is sudden across most of the spectrum: the band at this rank from the least sudden
# (the 25th percentile of the 16) stands out only when a quarter of the bands and more do.
BROADBAND_RANK = BANDS // 4
LOGIT_CLIP = 8.0
# The moment: windows that ended 2 s (no shared audio at a 0.5 s hop) to 5.5 s before this one.
MOMENT_GAP = 4
MOMENT_SPAN = 8
ACTIVITY_MARGIN_DB = 10.0
# How fast the floor follows a louder room, dB per window (0.5 s): 1.2 dB a minute; a quieter one, 6 dB.
FLOOR_RISE_DB = 0.01
FLOOR_FALL_DB = 0.05


def window_features(frames: np.ndarray, level_dbfs: float) -> np.ndarray:
    """The vector of one window: ``frames`` log-mel ``[T, n_mels]`` (``n_mels`` a multiple of
    :data:`BANDS` at least as large), ``level_dbfs`` its RMS level. float32 [SPECTRAL_LENGTH]."""
    x = np.asarray(frames, dtype=np.float32)
    if x.ndim != 2 or x.shape[0] == 0 or x.shape[1] < BANDS or x.shape[1] % BANDS:
        raise ValueError(f"need log-mel frames [T > 0, a multiple of {BANDS} mels], got shape {x.shape}")
    pooled = x @ _pooling(x.shape[1])
    ordered = np.sort(pooled, axis=0)
    peak, median = ordered[(ordered.shape[0] - 1) * 99 // 100], ordered[(ordered.shape[0] - 1) // 2]
    return np.concatenate([pooled.mean(axis=0), peak - median, [np.float32(level_dbfs)]]).astype(np.float32)


def impact_parts(features: np.ndarray) -> np.ndarray:
    """``features`` [N, FEATURE_LENGTH] → [N, 2]: how sudden the window is across the spectrum
    (a thud, a blow, a slam; speech, a beep or music are sudden in a few bands only) and its
    moment (the level jump over the seconds before)."""
    broadband = np.partition(features[:, SUDDEN], BROADBAND_RANK, axis=1)[:, BROADBAND_RANK]
    return np.stack([broadband, features[:, MOMENT.start]], axis=1)


class WindowDescriber:
    """One stream's anomaly vectors, window by window (it keeps the moment's recent levels)."""

    def __init__(self) -> None:
        self._levels: deque[float] = deque(maxlen=MOMENT_GAP + MOMENT_SPAN - 1)

    def describe(self, spectral: np.ndarray, class_scores: np.ndarray) -> np.ndarray:
        """The vector [FEATURE_LENGTH] of the next window: ``spectral`` from
        :func:`window_features`, ``class_scores`` the default model's nine sigmoid scores."""
        return assemble(spectral, class_scores, self.moment(float(spectral[-1])))

    def moment(self, level_dbfs: float) -> float:
        """The next window's level jump over the seconds before it (0 for a stream's first
        seconds). Every window must pass through here, in order, whether or not its vector is
        wanted: a session that needs few vectors (``assemble``) keeps the levels cheaply."""
        before = list(self._levels)[: -(MOMENT_GAP - 1)] if len(self._levels) >= MOMENT_GAP else []
        self._levels.append(level_dbfs)
        return level_dbfs - max(before) if before else 0.0


def assemble(spectral: np.ndarray, class_scores: np.ndarray, jump: float) -> np.ndarray:
    """The vector [FEATURE_LENGTH] of a window: ``spectral`` from :func:`window_features`,
    ``class_scores`` the default model's nine sigmoid scores, ``jump`` its moment
    (``WindowDescriber.moment``)."""
    if spectral.shape != (SPECTRAL_LENGTH,) or class_scores.shape != (NUM_CLASSES,):
        raise ValueError(f"need [{SPECTRAL_LENGTH}] spectral features and [{NUM_CLASSES}] class scores")
    p = np.clip(np.asarray(class_scores[1:], dtype=np.float64), 1e-6, 1 - 1e-6)
    logits = np.clip(np.log(p / (1 - p)), -LOGIT_CLIP, LOGIT_CLIP)
    return np.concatenate([spectral, logits, [jump]]).astype(np.float32)


class ActivityFloor:
    """The room's floor level, followed window by window; ``heard`` says whether a window is
    a sound of activity (``margin_db`` above the floor)."""

    def __init__(
        self, margin_db: float = ACTIVITY_MARGIN_DB, rise_db: float = FLOOR_RISE_DB, fall_db: float = FLOOR_FALL_DB
    ) -> None:
        self.margin_db = margin_db
        self.rise_db = rise_db
        self.fall_db = fall_db
        self.floor_db: float | None = None

    def heard(self, level_dbfs: float) -> bool:
        if self.floor_db is None:
            self.floor_db = level_dbfs
            return False
        active = level_dbfs >= self.floor_db + self.margin_db
        self.floor_db += self.rise_db if level_dbfs > self.floor_db else -self.fall_db
        return active


@functools.cache
def _pooling(n_mels: int) -> np.ndarray:
    # Averaging adjacent mels as one matrix product: several times faster than a reshape and mean.
    return np.kron(np.eye(BANDS, dtype=np.float32), np.full((n_mels // BANDS, 1), BANDS / n_mels, np.float32))
