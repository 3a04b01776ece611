"""shared.anomaly: features, the mixture, the calibration's budget, the scorer's modes, inactivity."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import numpy as np
import pytest

from shared.anomaly import AnomalyPolicy, AnomalyScorer, window_features, train_model
from shared.anomaly.calibration import WEEK_S, calibrate
from shared.anomaly.features import FEATURE_LENGTH, ActivityFloor
from shared.anomaly.inactivity import inactivity_due
from shared.anomaly.model import AnomalyModel
from shared.anomaly.scoring import media_only
from shared.device_modes import ListeningMode

HOP_S = 0.5


def home_pairs(n: int, rng: np.random.Generator) -> np.ndarray:
    """A hand-made home: three kinds of sound (quiet, talk, kitchen), each window like the one before."""
    kinds = np.array([[0.0] * FEATURE_LENGTH, [3.0] * 10 + [0.0] * (FEATURE_LENGTH - 10), [-2.0] * FEATURE_LENGTH])
    first = kinds[rng.integers(3, size=n)] + rng.normal(size=(n, FEATURE_LENGTH))
    second = first + 0.3 * rng.normal(size=(n, FEATURE_LENGTH))
    return np.stack([first, second], axis=1)


def alarms_per_week(model: AnomalyModel, rng: np.random.Generator, weeks: float) -> float:
    """Alarm events when a week of new windows from the same home is judged (pairs, as the scorer)."""
    pairs = home_pairs(int(weeks * WEEK_S / HOP_S / 2), rng)
    scores = model.scores(pairs.reshape(-1, FEATURE_LENGTH)).reshape(-1, 2).min(axis=1)
    return float(np.count_nonzero(scores >= model.threshold)) / weeks


def test_the_budget_holds_on_new_sound_of_the_same_home_and_an_unusual_one_is_flagged() -> None:
    rng = np.random.default_rng(1)
    model = train_model(home_pairs(20_000, rng), budget_per_week=1.0, hop_s=HOP_S)
    # A quarter of a week of fresh windows (each pair two windows): at most the budget, with room for chance.
    assert alarms_per_week(model, rng, weeks=0.25) <= 4.0
    unusual = np.full(FEATURE_LENGTH, 8.0)
    assert model.score(unusual) > model.threshold
    assert model.score(np.zeros(FEATURE_LENGTH)) < model.threshold
    # Stored and read back, it scores alike.
    again = AnomalyModel.from_json(model.to_json())
    assert again.score(unusual) == pytest.approx(model.score(unusual)) and again.threshold == model.threshold


def test_the_threshold_is_where_the_fitted_tail_predicts_the_budget_and_never_below_the_learning_data() -> None:
    scores = np.random.default_rng(2).exponential(1.0, size=50_000)
    calibration = calibrate(scores, budget_per_week=1.0, hop_s=HOP_S)
    assert calibration.threshold >= scores.max()
    assert calibration.expected_per_week(calibration.threshold, HOP_S) == pytest.approx(1.0, rel=1e-6)
    looser = calibrate(scores, budget_per_week=10.0, hop_s=HOP_S)
    assert looser.threshold < calibration.threshold
    with pytest.raises(ValueError):
        calibrate(scores[:10], budget_per_week=1.0, hop_s=HOP_S)
    with pytest.raises(ValueError):
        train_model(home_pairs(50, np.random.default_rng(0)), budget_per_week=1.0, hop_s=HOP_S)


def test_features_of_a_window() -> None:
    frames = np.zeros((200, 128), dtype=np.float32)
    frames[100:104, 64:] = 6.0  # a short loud burst in the upper bands
    features = window_features(frames, -30.0)
    assert features.shape == (FEATURE_LENGTH,) and features[-1] == -30.0
    assert features[16 + 15] > 0 and features[16 + 0] == 0  # sudden in the upper bands only
    with pytest.raises(ValueError):
        window_features(np.zeros((10, 20)), -30.0)


def test_activity_is_a_window_well_above_the_floor_and_a_steady_sound_becomes_the_floor() -> None:
    floor = ActivityFloor(margin_db=10.0, rise_db=0.1, fall_db=0.5)
    levels = np.random.default_rng(0).normal(-60.0, 2.0, size=400)  # a quiet room
    assert not any(floor.heard(float(level)) for level in levels)
    assert floor.heard(-40.0)  # someone moves
    assert not floor.heard(-75.0) and floor.heard(-40.0)  # one quiet moment does not drop the floor
    for _ in range(400):
        floor.heard(-40.0)  # a TV left on
    assert not floor.heard(-40.0)


def scorer_model() -> AnomalyModel:
    return train_model(home_pairs(2_000, np.random.default_rng(3)), budget_per_week=1.0, hop_s=HOP_S)


def test_the_scorer_needs_two_windows_then_keeps_quiet_for_the_refractory_period() -> None:
    model = scorer_model()
    unusual, usual = np.full(FEATURE_LENGTH, 8.0), np.zeros(FEATURE_LENGTH)
    scorer = AnomalyScorer(ListeningMode.AWAY, model, refractory_s=60.0)
    assert scorer.judge(usual, 0.5) is None
    assert scorer.judge(unusual, 1.0) is None  # one window is not enough
    scored = scorer.judge(unusual, 1.5)
    assert scored is not None and scored.score >= scored.threshold == model.threshold
    assert scorer.judge(unusual, 2.0) is None and scorer.judge(unusual, 60.0) is None
    assert scorer.judge(unusual, 62.0) is not None
    scorer.mode = ListeningMode.STANDARD
    assert scorer.judge(unusual, 200.0) is None and scorer.judge(unusual, 200.5) is None


def test_alone_mode_lets_the_television_be_unless_something_crashes() -> None:
    model = scorer_model()
    unusual = np.full(FEATURE_LENGTH, 8.0)
    tv = (("Television", 0.7), ("Speech", 0.5))
    assert media_only(tv) and not media_only((("Speech", 0.6), ("Glass", 0.4))) and not media_only(())
    alone = AnomalyScorer(ListeningMode.ALONE, model, refractory_s=0.0)
    alone.judge(unusual, 0.5, tv)
    assert alone.judge(unusual, 1.0, tv) is None
    assert alone.judge(unusual, 1.5, (("Speech", 0.6), ("Shout", 0.5))) is not None
    away = AnomalyScorer(ListeningMode.AWAY, model, refractory_s=0.0)
    away.judge(unusual, 0.5, tv)
    assert away.judge(unusual, 1.0, tv) is not None


def test_inactivity_is_flagged_once_a_spell_in_the_days_hours() -> None:
    policy = AnomalyPolicy(timezone="UTC", day_starts_hour=7, day_ends_hour=22)
    last = datetime(2026, 12, 1, 6, 0, tzinfo=UTC)
    span = 12 * 3600
    assert not inactivity_due(last + timedelta(hours=11, minutes=59), last, span, None, policy)
    assert inactivity_due(last + timedelta(hours=12), last, span, None, policy)
    assert not inactivity_due(last + timedelta(hours=13), last, span, last + timedelta(hours=12), policy)
    night = datetime(2026, 12, 1, 11, 0, tzinfo=UTC)  # runs out at 23:00: flagged at 07:00
    assert not inactivity_due(night + timedelta(hours=12, minutes=30), night, span, None, policy)
    assert inactivity_due(datetime(2026, 12, 2, 7, 0, tzinfo=UTC), night, span, None, policy)
