"""Per-class detection thresholds chosen on labelled clips (one rule for every model).

The trainer applies it to its validation split and stores the result in the model file;
``hearo thresholds`` applies it to any model (mn04 zero-shot, BEATs) on a manifest of the
operator's, for ``HEARO_GATEWAY_DETECTOR_THRESHOLDS``.
"""

from __future__ import annotations

import numpy as np

from shared.taxonomy import CLASSES, NUM_CLASSES

__all__ = ["MAX_FALSE_ALARM", "THRESHOLD_GRID", "choose_thresholds"]

# Fine at the low end: zero-shot AudioSet evidence scores (docs/audioset-map.md) rarely reach 0.5.
THRESHOLD_GRID = np.round(np.concatenate([np.arange(0.02, 0.2, 0.02), np.arange(0.2, 0.96, 0.05)]), 2)
# Per class; eight classes give a few percent of false alarms at most.
MAX_FALSE_ALARM = 0.005


def choose_thresholds(
    scores: list[np.ndarray], targets: np.ndarray, smoothing_windows: int, max_false_alarm: float = MAX_FALSE_ALARM
) -> dict[str, float]:
    """Per emergency class, the grid threshold with the best F1 for "the clip's smoothed score
    reaches it" against "the clip is this class", among those firing on at most
    ``max_false_alarm`` of the normal clips; when none does, the highest threshold. Ties go to
    the higher threshold. ``scores``: one [windows, 9] array per clip, in stream order."""
    k = smoothing_windows
    peaks = np.stack([
        np.convolve(s[:, c], np.ones(k) / k, mode="valid").max() if len(s) >= k else 0.0
        for s in scores for c in range(NUM_CLASSES)
    ]).reshape(len(scores), NUM_CLASSES)
    normal = targets == 0
    chosen: dict[str, float] = {}
    for c in CLASSES:
        if not c.is_emergency:
            continue
        positive = targets == c.id
        best, best_t = -1.0, float(THRESHOLD_GRID[-1])
        for t in THRESHOLD_GRID:
            fired = peaks[:, c.id] >= t
            if normal.any() and fired[normal].mean() > max_false_alarm:
                continue
            tp = float(np.sum(fired & positive))
            f1 = 2 * tp / (fired.sum() + positive.sum()) if fired.sum() + positive.sum() else 0.0
            if f1 >= best:
                best, best_t = f1, float(t)
        chosen[c.key] = best_t
    return chosen
