"""shared.anomaly: features, the cues (mixture, class scores, moment, impact), the calibration's budget,
the scorer's modes, the older format set aside, inactivity."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import numpy as np
import pytest
from sqlalchemy import update

from shared.anomaly import AnomalyPolicy, AnomalyScorer, WindowDescriber, window_features, train_model
from shared.anomaly.calibration import WEEK_S, calibrate
from shared.anomaly.features import CLASSES, FEATURE_LENGTH, LOGIT_CLIP, MOMENT, SPECTRAL_LENGTH, SUDDEN, ActivityFloor
from shared.anomaly.inactivity import inactivity_due
from shared.anomaly.model import CUES, AnomalyModel
from shared.anomaly.store import active_models, record_samples, store_model, train_device
from shared.db import Database
from shared.db.anomaly_tables import AnomalyModelRow
from shared.taxonomy import by_key
from tests.alerting_support import make_device
from shared.anomaly.scoring import media_only
from shared.device_modes import ListeningMode

HOP_S = 0.5


def home_pairs(n: int, rng: np.random.Generator) -> np.ndarray:
    """A hand-made home: three kinds of sound (quiet, talk, kitchen), each window like the one before."""
    kinds = np.array([[0.0] * FEATURE_LENGTH, [3.0] * 10 + [0.0] * (FEATURE_LENGTH - 10), [-2.0] * FEATURE_LENGTH])
    first = kinds[rng.integers(3, size=n)] + rng.normal(size=(n, FEATURE_LENGTH))
    second = first + 0.3 * rng.normal(size=(n, FEATURE_LENGTH))
    return np.stack([first, second], axis=1)


def alarms_per_week(model: AnomalyModel, pairs: np.ndarray, weeks: float) -> float:
    """Alarm events when new windows of a home are judged (pairs, as the scorer: any cue)."""
    scores = model.scores(pairs.reshape(-1, FEATURE_LENGTH)).reshape(-1, 2, len(CUES)).min(axis=1)
    return float(np.count_nonzero((scores >= model.thresholds).any(axis=1))) / weeks


def fresh_week(rng: np.random.Generator, weeks: float) -> np.ndarray:
    return home_pairs(int(weeks * WEEK_S / HOP_S / 2), rng)


def test_the_budget_holds_on_new_sound_of_the_same_home_and_an_unusual_one_is_flagged() -> None:
    rng = np.random.default_rng(1)
    model = train_model(home_pairs(20_000, rng), budget_per_week=1.0, hop_s=HOP_S)
    # A quarter of a week of fresh windows (each pair two windows): at most the budget, with room for chance.
    assert alarms_per_week(model, fresh_week(rng, 0.25), weeks=0.25) <= 4.0
    assert model.budget_per_week == pytest.approx(1.0)  # shared among the cues
    unusual = np.full(FEATURE_LENGTH, 8.0)
    assert model.score(unusual)[0] > model.threshold and model.abnormal(unusual)
    assert not model.abnormal(np.zeros(FEATURE_LENGTH))
    # Stored and read back, it scores alike.
    again = AnomalyModel.from_json(model.to_json())
    assert again.score(unusual) == pytest.approx(model.score(unusual))
    assert list(again.thresholds) == list(model.thresholds)


def test_a_class_score_the_home_never_raised_is_an_anomaly_where_the_home_that_raises_it_is_not() -> None:
    rng = np.random.default_rng(4)
    quiet_home = home_pairs(20_000, rng)
    tv_home = quiet_home.copy()
    crime = CLASSES.start + by_key("crime").id - 1
    tv_home[:2_000, :, crime] += 6.0  # a tenth of its windows sound like crime (its TV's films)
    window = np.zeros(FEATURE_LENGTH)
    window[crime] = 7.0  # as ordinary a sound as any, but the nine-class model hears crime in it
    quiet, tv = (train_model(pairs, budget_per_week=1.0, hop_s=HOP_S) for pairs in (quiet_home, tv_home))
    sound, classes, moment, impact = quiet.score(window)
    assert sound < quiet.thresholds[0] and moment < quiet.thresholds[2] and impact < quiet.thresholds[3]
    assert classes >= quiet.thresholds[1]
    scorer = AnomalyScorer(ListeningMode.AWAY, quiet, refractory_s=0.0)
    scorer.judge(window, 0.5)
    scored = scorer.judge(window, 1.0)
    assert scored is not None and scored.cue == "classes"
    assert not tv.abnormal(window)
    # Each home's own week stays within its budget with the class cue in it.
    assert alarms_per_week(tv, fresh_week(rng, 0.25), weeks=0.25) <= 4.0


def test_a_cue_left_out_never_alarms_and_stays_out_when_stored() -> None:
    policy = AnomalyPolicy()
    assert policy.cues == ("classes", "impact")  # the spectrum's density is off by default (docs/anomaly.md)
    model = train_model(home_pairs(2_000, np.random.default_rng(8)), budget_per_week=1.0, hop_s=HOP_S,
                        cues=policy.cues)  # fmt: skip
    assert model.cues == ("classes", "impact") and model.threshold == model.thresholds[1]
    assert model.budget_per_week == pytest.approx(1.0)
    unlike_anything = np.zeros(FEATURE_LENGTH)
    unlike_anything[: SUDDEN.start] = 12.0  # only its spectrum's shape is unusual (nothing sudden in it)
    assert not model.abnormal(unlike_anything)
    assert train_model(home_pairs(2_000, np.random.default_rng(8)), budget_per_week=1.0,
                       hop_s=HOP_S).score(unlike_anything)[0] > 100  # fmt: skip
    assert AnomalyModel.from_json(model.to_json()).cues == ("classes", "impact")
    # A model stored before the impact cue is judged by its own cues.
    older = model.to_json()
    for key in ("impact_from", "impact_scale"):
        del older[key]
    del older["calibrations"]["impact"]
    assert AnomalyModel.from_json(older).cues == ("classes",)
    with pytest.raises(ValueError):
        train_model(home_pairs(2_000, np.random.default_rng(8)), budget_per_week=1.0, hop_s=HOP_S, cues=("pitch",))
    with pytest.raises(ValueError):
        AnomalyPolicy(cues=())


def test_an_impact_is_suddenness_across_the_spectrum_and_a_jump_together() -> None:
    kitchen = home_pairs(20_000, np.random.default_rng(3))
    kitchen[:2_000, :, SUDDEN] += 4.0  # a tenth of its windows: pans and doors, sudden at an even level
    model = train_model(kitchen, budget_per_week=1.0, hop_s=HOP_S, cues=AnomalyPolicy().cues)

    def window(sudden: float, jump: float) -> np.ndarray:
        features = np.zeros(FEATURE_LENGTH)
        features[SUDDEN], features[MOMENT.start] = sudden, jump
        return features

    assert 5.0 < model.thresholds[CUES.index("moment")]
    assert not model.abnormal(window(5.0, 0.0))  # the kitchen's clatter, a little louder
    assert not model.abnormal(window(0.0, 5.0))  # a jump in level, nothing sudden in it
    fall = window(5.0, 5.0)
    scorer = AnomalyScorer(ListeningMode.AWAY, model, refractory_s=0.0)
    scorer.judge(fall, 0.5)
    scored = scorer.judge(fall, 1.0)
    assert scored is not None and scored.cue == "impact"
    # Sudden in a few bands only (a beep, a syllable): not across the spectrum.
    narrow = window(0.0, 5.0)
    narrow[SUDDEN.start: SUDDEN.start + 3] = 8.0
    assert not model.abnormal(narrow)


def test_the_window_vector_has_the_class_logits_and_the_level_jump_over_the_moment_before() -> None:
    describer = WindowDescriber()
    scores = np.full(9, 0.01, dtype=np.float32)
    scores[by_key("accident").id] = 1.0  # saturated: clipped
    quiet = np.zeros(SPECTRAL_LENGTH, dtype=np.float32)
    quiet[-1] = -60.0
    first = describer.describe(quiet, scores)
    assert first.shape == (FEATURE_LENGTH,) and first[MOMENT.start] == 0.0  # no moment before the first
    assert first[CLASSES.start + by_key("accident").id - 1] == LOGIT_CLIP
    assert first[CLASSES.start] == pytest.approx(np.log(0.01 / 0.99))
    for _ in range(11):
        describer.describe(quiet, scores)
    thud = quiet.copy()
    thud[-1] = -30.0
    assert describer.describe(thud, scores)[MOMENT.start] == pytest.approx(30.0)
    # The three windows just before overlap the thud's own audio: the jump is over the seconds before them.
    for _ in range(3):
        describer.describe(thud, scores)
    assert describer.describe(thud, scores)[MOMENT.start] == pytest.approx(0.0)
    with pytest.raises(ValueError):
        describer.describe(quiet[:10], scores)


def test_the_threshold_is_where_the_fitted_tail_predicts_the_budget_and_never_below_the_learning_data() -> None:
    scores = np.random.default_rng(2).exponential(1.0, size=50_000)
    calibration = calibrate(scores, budget_per_week=1.0, hop_s=HOP_S)
    assert calibration.threshold >= scores.max()
    assert calibration.expected_per_week(calibration.threshold, HOP_S) == pytest.approx(1.0, rel=1e-6)
    assert calibration.share_above(calibration.tail_from) == pytest.approx(0.02)
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
    assert features.shape == (SPECTRAL_LENGTH,) and features[-1] == -30.0
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
    assert scored is not None and scored.score >= scored.threshold and scored.cue in CUES
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


async def test_a_model_and_samples_of_the_older_vector_are_set_aside_until_the_next_training(
    sqlite_db: Database,
) -> None:
    device_id = await make_device(sqlite_db)
    old = train_model(home_pairs(500, np.random.default_rng(6)), budget_per_week=1.0, hop_s=HOP_S)
    params = old.to_json()
    del params["calibrations"]  # as the one-cue format stored it
    with pytest.raises(ValueError, match="older format"):
        AnomalyModel.from_json(params)
    now = datetime.now(UTC)
    await store_model(sqlite_db, device_id, old, now, now)
    async with sqlite_db.session() as session:
        await session.execute(update(AnomalyModelRow).where(AnomalyModelRow.device_id == device_id).values(params=params))
    assert await active_models(sqlite_db, [device_id]) == {}  # the device learns on; nothing judges
    older = np.zeros((300, 2, SPECTRAL_LENGTH)).tolist()  # samples of the 33-number vector
    await record_samples(sqlite_db, device_id, older, now, now, 60_000)
    policy = AnomalyPolicy()
    assert await train_device(sqlite_db, device_id, policy, HOP_S) is None  # too few of the current vector
    await record_samples(sqlite_db, device_id, home_pairs(300, np.random.default_rng(7)).tolist(), now, now, 60_000)
    assert await train_device(sqlite_db, device_id, policy, HOP_S) == 2
    assert (await active_models(sqlite_db, [device_id]))[device_id].version == 2
