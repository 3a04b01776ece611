"""A per-stream gate in front of the model: a window goes to inference only when something
may have changed since the model last judged the stream (issue 14, docs/performance.md).

Most household audio is quiet or steady, and a steady sound the model has just called
normal will be called normal again. A window the gate holds back takes the scores of the
last window the model judged, so the detector's smoothing sees an unbroken run of windows.
The gate only ever holds back windows that are safe to hold back; it lets a window through
when any of these is true:

* the stream is new: fewer windows judged than the detector's smoothing averages;
* a window judged lately was not clearly normal: some emergency class scored at least
  ``alert_ratio`` of its threshold in a window judged within the span a sound stays in the
  detector's view (a window and the smoothing's windows: 3.5 s at the defaults). Then every
  window is judged until the stream has been clearly normal that long, so the smoothing that
  makes a detection sees the model's own scores. Lately, not last: an alarm's rhythm moves
  through the window and its scores rise and fall from one window to the next;
* the newest hop of audio is new to the last judged window: in some band (the mel bands
  pooled to ``bands``) its mean level lies ``change_db`` or more outside the range that
  window's frames spanned (its 10th to 90th percentile), or its loudest frame rose ``rise_db``
  or more above that window's loudest (a bang, a shout, an alarm's onset). A range, not a
  mean: speech and television rise and fall all the time, and a hop of them is no news to a
  window of them;
* such news came less than a window ago: the model then sees the new sound as it fills its
  window (a sound that fills a quarter of the window scores lower than one that fills it);
* the model has not judged the stream for ``max_skip_s``.

The alarm-pattern detector hears the raw audio beside the model, so the gate never delays
an alarm rhythm. ``hearo eval --gate`` applies the same gate to clips and household tracks
(``gated_scores``), which measures what it costs in recall.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from pydantic import BaseModel, ConfigDict, Field

from shared.detector import DetectorConfig
from shared.features.spec import FeatureSpec
from shared.taxonomy import CLASSES

# Decibels per unit of a spec's normalised log-mel: the gate's thresholds are in dB, the
# features are not. BEATs: (ln fbank - 15.42) / 13.11; EfficientAT: (ln mel + 4.5) / 5.
_DB_PER_UNIT = {
    "beats_fbank": 13.11164 * 10 / math.log(10),
    "efficientat_mel": 5.0 * 10 / math.log(10),
}


class GatePolicy(BaseModel):
    """The gate's settings (``HEARO_GATEWAY_NOVELTY_GATE``, JSON); ``enabled`` false judges every window."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    enabled: bool = True
    change_db: float = Field(default=4.0, gt=0.0)
    rise_db: float = Field(default=6.0, gt=0.0)
    alert_ratio: float = Field(default=0.5, gt=0.0, le=1.0)
    max_skip_s: float = Field(default=5.0, gt=0.0)
    bands: int = Field(default=16, ge=1)


@dataclass
class GateCounts:
    judged: int = 0
    held: int = 0

    def add(self, other: GateCounts) -> None:
        self.judged += other.judged
        self.held += other.held

    def report(self, policy: GatePolicy) -> dict[str, Any]:
        """The policy, and how many windows the model judged (``hearo eval --gate``)."""
        total = self.judged + self.held
        return {**policy.model_dump(), "windows": total, "judged": self.judged,
                "judged_share": round(self.judged / total, 4) if total else None}


class NoveltyGate:
    """One stream's gate. ``admit`` each window in stream order; ``judged`` tells it the model's
    scores of each window it admitted. ``thresholds``: the detector's, ordered as the taxonomy
    (``Detector.thresholds`` values); the normal class (0) is ignored."""

    def __init__(
        self, policy: GatePolicy, spec: FeatureSpec, hop_s: float, smoothing_windows: int, thresholds: Sequence[float]
    ) -> None:
        self.policy = policy
        self.counts = GateCounts()
        self._db_per_unit = _DB_PER_UNIT.get(spec.name)
        self._hop_frames = max(1, spec.frames_for(hop_s))
        self._warmup = smoothing_windows
        self._alert = np.asarray(thresholds, dtype=np.float64) * policy.alert_ratio
        self._alert[0] = np.inf  # normal never keeps the gate open
        self._reference: tuple[np.ndarray, np.ndarray, np.ndarray] | None = None  # per band, dB: p10, p90, max
        self._reference_end_s = -math.inf
        self._window_s = spec.window_seconds
        self._in_view_s = spec.window_seconds + smoothing_windows * hop_s
        self._news_until_s = -math.inf  # windows ending up to here are judged: news is passing through
        self._alert_until_s = -math.inf  # and up to here: a window judged lately was not clearly normal
        self.last_scores: np.ndarray | None = None
        self._pool: np.ndarray | None = None  # [n_mels, bands]: mel bins -> band levels in dB

    @classmethod
    def for_detector(cls, policy: GatePolicy, spec: FeatureSpec, config: DetectorConfig) -> NoveltyGate:
        """A gate in front of a detector of ``config`` (its onset thresholds, smoothing and hop)."""
        thresholds = [0.0] + [config.thresholds[c.key] for c in CLASSES[1:]]
        return cls(policy, spec, config.hop_s, config.smoothing_windows, thresholds)

    @property
    def active(self) -> bool:
        """Whether it may hold anything back (off, or a spec it has no scale for: never)."""
        return self.policy.enabled and self._db_per_unit is not None

    def admit(self, features: torch.Tensor, end_s: float) -> bool:
        """Whether the window ``features`` [frames, n_mels] ending at ``end_s`` goes to the model.
        A window held back is counted, and takes ``last_scores``."""
        if self._admits(features, end_s):
            return True
        self.counts.held += 1
        return False

    def judged(self, features: torch.Tensor, end_s: float, scores: np.ndarray) -> None:
        """The model's scores of a window ``admit`` let through: the new reference."""
        self.counts.judged += 1
        self.last_scores = scores
        self._reference_end_s = end_s
        if bool(np.any(scores >= self._alert)):
            self._alert_until_s = end_s + self._in_view_s
        if self.active:
            bands = self._bands(features)
            low, high = _deciles(bands)
            self._reference = (low, high, bands.max(axis=0))

    def _admits(self, features: torch.Tensor, end_s: float) -> bool:
        if not self.active or self._reference is None or self.last_scores is None:
            return True
        policy = self.policy
        if self.counts.judged < self._warmup or end_s - self._reference_end_s >= policy.max_skip_s:
            return True
        if end_s <= self._news_until_s or end_s <= self._alert_until_s:
            return True
        hop = self._bands(features[-self._hop_frames:])
        low, high, loudest = self._reference
        level = hop.mean(axis=0)
        news = bool(np.any(level >= high + policy.change_db) or np.any(level <= low - policy.change_db)
                    or np.any(hop.max(axis=0) >= loudest + policy.rise_db))
        if news:
            self._news_until_s = end_s + self._window_s
        return news

    def _bands(self, features: torch.Tensor) -> np.ndarray:
        """The frames' levels in the pooled bands, in dB: [frames, bands]."""
        assert self._db_per_unit is not None
        frames = features.detach().float().numpy()
        return frames @ self._pooling(frames.shape[1])

    def _pooling(self, n_mels: int) -> np.ndarray:
        # One matmul per window instead of a numpy call per band (which cost the gateway a few
        # per cent of its CPU): column b averages band b's mel bins, in dB.
        if self._pool is None or self._pool.shape[0] != n_mels:
            assert self._db_per_unit is not None
            pool = np.zeros((n_mels, min(self.policy.bands, n_mels)), dtype=np.float32)
            for band, bins in enumerate(np.array_split(np.arange(n_mels), pool.shape[1])):
                pool[bins, band] = self._db_per_unit / len(bins)
            self._pool = pool
        return self._pool


def _deciles(values: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The 10th and 90th percentiles of each column, as ``np.percentile`` interpolates them, from
    one sort: ``np.percentile`` cost several times more per judged window."""
    ordered = np.sort(values, axis=0)
    last = ordered.shape[0] - 1
    out = []
    for q in (0.1, 0.9):
        position = q * last
        below = int(position)
        above = min(below + 1, last)
        out.append(ordered[below] + (ordered[above] - ordered[below]) * (position - below))
    return out[0], out[1]


def gated_scores(gate: NoveltyGate, features: Sequence[torch.Tensor], end_times: Sequence[float],
                 scores: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """What the detector sees of a stream behind ``gate``, given the model's ``scores`` of every
    window: each window's own scores where the gate admits it, else the last judged window's;
    and which windows were admitted. The gate decides from the windows before each one alone,
    so this is exactly what a live session behind it would see."""
    seen = np.empty_like(scores)
    admitted = np.zeros(len(scores), dtype=bool)
    for index, (window, end_s) in enumerate(zip(features, end_times)):
        if gate.admit(window, end_s):
            gate.judged(window, end_s, scores[index])
            admitted[index] = True
        assert gate.last_scores is not None  # the first window is always admitted
        seen[index] = gate.last_scores
    return seen, admitted
