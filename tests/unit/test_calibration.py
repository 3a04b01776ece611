"""Choosing the operating point: clip F1 within a per-clip and a household false-alarm budget."""

from __future__ import annotations

import math

import numpy as np

from services.inference.training.calibration import CalibrationBudget, calibrate, count_alarms
from shared.taxonomy import NUM_CLASSES, by_key

FIRE = by_key("fire").id


def _clip(fire: float, windows: int = 5) -> np.ndarray:
    scores = np.full((windows, NUM_CLASSES), 0.01)
    scores[:, FIRE] = fire
    return scores


def _household(peak: float, hours: float = 0.5) -> np.ndarray:
    """A long stream at 0.5 s hops with one 3-window bump of the fire score to ``peak``."""
    scores = np.full((int(hours * 7200), NUM_CLASSES), 0.02)
    scores[1000:1003, FIRE] = peak
    return scores


def _logit(p: float) -> float:
    return math.log(p / (1 - p))


# Calibration clips: 200 normal (one of them scores 0.55 for fire), 20 fire clips at 0.62-0.95.
NORMALS = [_clip(0.02) for _ in range(199)] + [_clip(0.55)]
FIRES = [_clip(f) for f in np.linspace(0.62, 0.95, 20)]
SCORES = NORMALS + FIRES
TARGETS = [0] * len(NORMALS) + [FIRE] * len(FIRES)


def test_without_household_audio_the_best_clip_f1_within_the_clip_budget() -> None:
    point = calibrate(SCORES, TARGETS, [], CalibrationBudget(max_clip_false_alarm=0.0))
    assert 0.55 < point.thresholds["fire"] <= 0.62  # above the normal clip, below every fire clip
    assert point.evaluate(SCORES, TARGETS)["false_alarm_rate"] == 0.0


def test_the_household_budget_holds_with_its_margin() -> None:
    """A household stream peaking at 0.7 pushes the threshold above it by the margin, so the
    stream no longer fires, at the price of the weaker fire clips."""
    household = [_household(0.7)]
    budget = CalibrationBudget(max_clip_false_alarm=0.0, household_margin=1.0)
    point = calibrate(SCORES, TARGETS, household, budget)
    assert _logit(point.thresholds["fire"]) >= _logit(0.7) + 1.0
    assert count_alarms(household[0], point.detector()) == 0
    assert point.notes["household_peak"]["fire"] == 0.7
    # The same stream fires under the thresholds chosen without it: the budget did the work.
    unconstrained = calibrate(SCORES, TARGETS, [], budget)
    assert count_alarms(household[0], unconstrained.detector()) == 1


def test_a_class_no_threshold_can_serve_is_reported_deaf() -> None:
    point = calibrate(SCORES, TARGETS, [_household(0.9995)], CalibrationBudget())
    assert "fire" in point.notes["deaf"]
    assert point.thresholds["fire"] >= 0.99


def test_count_alarms_follows_the_detector_refractory_period() -> None:
    scores = np.full((600, NUM_CLASSES), 0.02)
    scores[100:104, FIRE] = 0.9  # one event
    scores[110:114, FIRE] = 0.9  # 5 s later: inside the 30 s refractory period
    scores[400:404, FIRE] = 0.9  # 150 s later: a second alarm
    point = calibrate(SCORES, TARGETS, [], CalibrationBudget(max_clip_false_alarm=0.0))
    assert count_alarms(scores, point.detector()) == 2
