"""The threshold that keeps a device's anomaly alarms within its false-alarm budget.

The rule: take the learning period's smoothed scores (each the lower of two consecutive
windows' scores, as the scorer alarms on them), which are a uniform subsample of everything
the home sounded like. Above ``u``, their :data:`TAIL_SHARE` quantile, fit an exponential
tail (peaks over threshold: the mean excess ``sigma``). A threshold ``t`` is then expected to
be crossed by a share ``tail_share * exp(-(t - u) / sigma)`` of the windows; a week holds
``604800 / hop_s`` windows, and one unusual sound is crossed in about
:data:`WINDOWS_PER_EVENT` of them. ``t`` is set where the expected crossings make
``budget_per_week`` events a week, and never below the highest learning score (no sound of
the learning period itself would raise an alarm). A model calibrates each of its cues so, each
to its share of the device's budget (:mod:`shared.anomaly.model`).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np

TAIL_SHARE = 0.02
# A sudden sound of a second or two is in about four 2 s windows at a 0.5 s hop.
WINDOWS_PER_EVENT = 4.0
WEEK_S = 7 * 86400.0


@dataclass(frozen=True)
class Calibration:
    """``threshold`` and what it rests on: the tail's start ``tail_from`` and scale
    ``tail_scale``, the highest learning score, the samples, and the budget it was set to."""

    threshold: float
    tail_from: float
    tail_scale: float
    highest: float
    samples: int
    budget_per_week: float

    def share_above(self, score: float) -> float:
        """The share of windows the fitted tail predicts at or above ``score``."""
        return TAIL_SHARE * math.exp(-(score - self.tail_from) / self.tail_scale)

    def expected_per_week(self, threshold: float, hop_s: float) -> float:
        """Events a week the learning data predicts above ``threshold``."""
        return self.share_above(threshold) * WEEK_S / hop_s / WINDOWS_PER_EVENT

    def to_json(self) -> dict[str, Any]:
        return {"threshold": self.threshold, "tail_from": self.tail_from, "tail_scale": self.tail_scale,
                "highest": self.highest, "samples": self.samples, "budget_per_week": self.budget_per_week}

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Calibration:
        return cls(float(data["threshold"]), float(data["tail_from"]), float(data["tail_scale"]),
                   float(data["highest"]), int(data["samples"]), float(data["budget_per_week"]))


def calibrate(smoothed: np.ndarray, *, budget_per_week: float, hop_s: float) -> Calibration:
    """The :class:`Calibration` of learning scores ``smoothed`` (see the module docstring)."""
    if budget_per_week <= 0 or hop_s <= 0:
        raise ValueError("the budget and the hop must be positive")
    scores = np.asarray(smoothed, dtype=np.float64)
    if scores.size < 50:
        raise ValueError("need at least 50 learning scores to calibrate")
    u = float(np.quantile(scores, 1.0 - TAIL_SHARE))
    excess = scores[scores > u] - u
    sigma = float(excess.mean()) if excess.size else 1.0
    sigma = max(sigma, 1e-3)
    windows_per_week = WEEK_S / hop_s
    crossings = budget_per_week * WINDOWS_PER_EVENT / windows_per_week  # the share allowed
    t = u + sigma * math.log(TAIL_SHARE / crossings)
    highest = float(scores.max())
    return Calibration(max(t, highest), u, sigma, highest, int(scores.size), budget_per_week)
