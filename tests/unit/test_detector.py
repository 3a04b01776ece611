from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pytest

from shared.detector import DetectionEvent, Detector, DetectorConfig
from shared.taxonomy import NUM_CLASSES, by_key

HOP = 0.5
FIRE = by_key("fire").id
CRIME = by_key("crime").id


def scores(**by_class: float) -> np.ndarray:
    row = np.zeros(NUM_CLASSES)
    for key, value in by_class.items():
        row[by_key(key).id] = value
    return row


def run(detector: Detector, rows: list[np.ndarray], start_s: float = 2.0) -> list[DetectionEvent]:
    """Feed consecutive windows (one hop apart) and collect every event."""
    events: list[DetectionEvent] = []
    for i, row in enumerate(rows):
        events += detector.update(row, start_s + i * HOP)
    return events


def make(threshold: float = 0.5, **kwargs: float) -> Detector:
    return Detector(DetectorConfig.build(threshold, hop_s=HOP, **kwargs))


def test_fires_once_when_smoothed_score_reaches_threshold() -> None:
    detector = make(smoothing_windows=3)
    rows = [scores(fire=0.1)] * 3 + [scores(fire=0.9)] * 10
    events = run(detector, rows)
    assert len(events) == 1
    event = events[0]
    assert event.emergency_class.key == "fire"
    # Smoothed over 3: (0.1 + 0.9 + 0.9) / 3 = 0.633 at the second loud window (index 4).
    assert event.confidence == pytest.approx((0.1 + 0.9 + 0.9) / 3)
    assert event.stream_time_s == pytest.approx(2.0 + 4 * HOP)


def test_single_loud_window_is_smoothed_away() -> None:
    detector = make(smoothing_windows=3)
    rows = [scores(fire=0.0)] * 4 + [scores(fire=0.95)] + [scores(fire=0.0)] * 4
    assert run(detector, rows) == []


def test_no_decision_before_k_windows() -> None:
    detector = make(smoothing_windows=3)
    assert detector.update(scores(fire=1.0), 2.0) == []
    assert detector.update(scores(fire=1.0), 2.5) == []
    assert [e.emergency_class.key for e in detector.update(scores(fire=1.0), 3.0)] == ["fire"]


def test_per_class_thresholds() -> None:
    detector = make(0.5, overrides={"crime": 0.8}, smoothing_windows=1)
    events = run(detector, [scores(crime=0.7, fire=0.7)])
    assert [e.emergency_class.key for e in events] == ["fire"]
    events = run(make(0.5, overrides={"crime": 0.8}, smoothing_windows=1), [scores(crime=0.85)])
    assert [e.emergency_class.key for e in events] == ["crime"]


def test_thresholds_come_from_settings_then_model_then_default() -> None:
    config = DetectorConfig.build(0.5, {"fire": 0.4}, {"fire": 0.85, "crime": 0.3})
    assert config.thresholds["fire"] == 0.4  # the explicit setting wins over the model's
    assert config.thresholds["crime"] == 0.3  # the model's where nothing is set
    assert config.thresholds["gas"] == 0.5  # the default where neither says
    with pytest.raises(ValueError, match="never fires"):
        DetectorConfig.build(0.5, model_thresholds={"normal": 0.5})


def test_normal_never_fires() -> None:
    detector = make(0.1, smoothing_windows=1)
    assert run(detector, [scores(normal=1.0)] * 5) == []


def test_hysteresis_keeps_one_event_through_dips_above_release() -> None:
    # threshold 0.5, release 0.3: dips to 0.35 do not end the event.
    detector = make(0.5, smoothing_windows=1, release_ratio=0.6, refractory_s=0.0)
    rows = [scores(fire=v) for v in (0.6, 0.35, 0.6, 0.31, 0.7, 0.6)]
    assert len(run(detector, rows)) == 1


def test_new_event_after_release_and_refractory() -> None:
    detector = make(0.5, smoothing_windows=1, release_ratio=0.6, refractory_s=5.0)
    loud, quiet = scores(fire=0.8), scores(fire=0.1)
    # onset at 2.0; released at 2.5; back at 3.0 (< 5 s later): same event, not reported.
    events = run(detector, [loud, quiet, loud, quiet], start_s=2.0)
    assert [e.stream_time_s for e in events] == [2.0]
    # 10 s later the class is out of its refractory period: a second detection.
    events = run(detector, [loud], start_s=12.0)
    assert [e.stream_time_s for e in events] == [12.0]


def test_event_longer_than_refractory_is_still_one_detection() -> None:
    detector = make(0.5, smoothing_windows=3, refractory_s=30.0)
    rows = [scores(fire=0.9)] * 200  # 100 s of continuous alarm
    assert len(run(detector, rows)) == 1


def test_refractory_is_per_class() -> None:
    detector = make(0.5, smoothing_windows=1, refractory_s=30.0)
    events = run(detector, [scores(fire=0.9), scores(fire=0.9, crime=0.9)])
    assert [(e.emergency_class.key, e.stream_time_s) for e in events] == [("fire", 2.0), ("crime", 2.5)]


def test_gap_in_stream_restarts_smoothing() -> None:
    detector = make(0.5, smoothing_windows=3)
    detector.update(scores(fire=0.9), 2.0)
    detector.update(scores(fire=0.9), 2.5)
    # Windows 3.0..4.5 were dropped: the next window alone is not 3 consecutive ones.
    assert detector.update(scores(fire=0.9), 5.0) == []
    assert detector.update(scores(fire=0.9), 5.5) == []
    assert len(detector.update(scores(fire=0.9), 6.0)) == 1


def test_same_input_same_output_whatever_the_speed() -> None:
    rng = np.random.default_rng(7)
    rows = [rng.uniform(0, 1, NUM_CLASSES) * rng.uniform(0, 1) for _ in range(300)]
    first = run(make(0.6, refractory_s=10.0), rows)
    second = run(make(0.6, refractory_s=10.0), rows)
    assert first == second
    assert first  # the random walk does cross the thresholds somewhere


def test_rejects_bad_input() -> None:
    detector = make()
    with pytest.raises(ValueError, match="class scores"):
        detector.update(np.zeros(3), 2.0)
    detector.update(scores(), 2.0)
    with pytest.raises(ValueError, match="stream time"):
        detector.update(scores(), 2.0)


def test_config_validation() -> None:
    with pytest.raises(ValueError, match="never fires"):
        DetectorConfig.build(0.5, overrides={"normal": 0.5})
    with pytest.raises(KeyError, match="unknown class"):
        DetectorConfig.build(0.5, overrides={"earthquake": 0.5})
    with pytest.raises(ValueError, match="threshold"):
        DetectorConfig.build(1.5)
    with pytest.raises(ValueError, match="smoothing_windows"):
        DetectorConfig.build(0.5, smoothing_windows=0)
    with pytest.raises(ValueError, match="exactly the emergency classes"):
        DetectorConfig(thresholds={"fire": 0.5})


# -- alarm pattern matches fused with the scores ------------------------------------------------


def test_a_pattern_match_reports_its_class_once_per_alarm() -> None:
    detector = make(0.5, refractory_s=30.0)
    events = detector.observe_pattern("fire", 0.9, 6.5, "temporal3")
    assert [(e.emergency_class.key, e.confidence, e.stream_time_s, e.pattern) for e in events] == [
        ("fire", 0.9, 6.5, "temporal3")
    ]
    # A T3 alarm sounding for two minutes matches every 4 s: one event, past the refractory too.
    assert [e for t in np.arange(10.5, 130.0, 4.0) for e in detector.observe_pattern("fire", 0.95, float(t))] == []


def test_a_new_pattern_event_after_silence_and_refractory() -> None:
    detector = make(0.5, refractory_s=30.0, pattern_hold_s=12.0)
    assert len(detector.observe_pattern("gas", 0.8, 10.0)) == 1
    assert detector.observe_pattern("gas", 0.8, 30.0) == []  # a new pattern event, but refractory
    assert len(detector.observe_pattern("gas", 0.8, 80.0)) == 1


def test_model_and_pattern_hearing_one_alarm_make_one_detection() -> None:
    # The model first: its event holds the class, the matches continue it.
    detector = make(0.5, smoothing_windows=1, refractory_s=0.0)
    assert len(run(detector, [scores(fire=0.8)] * 10)) == 1
    assert detector.observe_pattern("fire", 0.9, 6.5) == []
    # The pattern first: the scores crossing the threshold later are its tail, even with
    # no refractory period at all.
    detector = make(0.5, smoothing_windows=1, refractory_s=0.0)
    assert len(detector.observe_pattern("fire", 0.9, 6.5)) == 1
    assert run(detector, [scores(fire=0.1)] * 4 + [scores(fire=0.9)] * 4, start_s=6.0) == []
    # Other classes are untouched by a fire pattern.
    assert [e.emergency_class.key for e in run(detector, [scores(crime=0.9)], start_s=10.5)] == ["crime"]


def test_refractory_holds_between_sources_in_either_order() -> None:
    # Matches reach the detector in stream order only roughly: one dated a little after a
    # reported window is still within the refractory period.
    detector = make(0.5, smoothing_windows=1, refractory_s=30.0, pattern_hold_s=0.0)
    run(detector, [scores(fire=0.9), scores(fire=0.0)], start_s=8.0)
    assert detector.observe_pattern("fire", 0.9, 7.5) == []


def test_smoothed_scores_are_exposed() -> None:
    detector = make(0.5, smoothing_windows=2)
    detector.update(scores(fire=0.2), 2.0)
    assert detector.smoothed is None
    detector.update(scores(fire=0.6), 2.5)
    assert detector.smoothed is not None and detector.smoothed[FIRE] == pytest.approx(0.4)
    with pytest.raises(ValueError):
        detector.smoothed[FIRE] = 1.0


def test_pattern_matches_are_checked() -> None:
    detector = make()
    with pytest.raises(ValueError, match="never fires"):
        detector.observe_pattern("normal", 0.9, 1.0)
    with pytest.raises(KeyError):
        detector.observe_pattern("earthquake", 0.9, 1.0)
    with pytest.raises(ValueError, match="confidence"):
        detector.observe_pattern("fire", 1.5, 1.0)


# -- partial alarm pattern matches: evidence that lowers the threshold ----------------------------


@dataclass(frozen=True)
class Match:
    pattern: str
    class_key: str
    confidence: float
    stream_time_s: float
    partial: bool = False


def test_a_partial_match_alone_never_fires() -> None:
    detector = make(0.5, smoothing_windows=1, partial_pattern_ratio=0.5)
    detector.hear_patterns([Match("temporal3", "fire", 0.95, 2.5 + 4 * i, partial=True) for i in range(10)])
    assert run(detector, [scores()] * 100) == []
    assert detector.observe_heard_patterns() == []


def test_a_partial_match_lowers_its_class_threshold_by_the_ratio() -> None:
    # Threshold 0.5, ratio 0.5: 0.3 alone does not fire; after a partial fire match it does.
    rows = [scores(fire=0.3, crime=0.3)] * 10
    assert run(make(0.5, smoothing_windows=3, partial_pattern_ratio=0.5), rows) == []
    detector = make(0.5, smoothing_windows=3, partial_pattern_ratio=0.5)
    detector.hear_patterns([Match("temporal3", "fire", 0.6, 2.2, partial=True)])
    events = run(detector, rows)
    assert [(e.emergency_class.key, e.stream_time_s, e.pattern, e.partial_pattern) for e in events] == [
        ("fire", 3.0, None, "temporal3")  # the first smoothed window; crime keeps its own threshold
    ]
    assert events[0].confidence == pytest.approx(0.3)


def test_partial_evidence_needs_the_ratio_and_holds_for_a_bounded_time() -> None:
    config = {"smoothing_windows": 1, "partial_pattern_ratio": 0.5, "partial_hold_s": 8.0}
    detector = make(0.5, **config)
    detector.observe_partial_pattern("fire", 2.0, "temporal3")
    assert run(detector, [scores(fire=0.24)] * 4) == []  # under 0.5 x 0.5
    detector = make(0.5, **config)
    detector.observe_partial_pattern("fire", 2.0, "temporal3")
    assert run(detector, [scores(fire=0.3)], start_s=10.5) == []  # 8.5 s later: over
    detector = make(0.5, **config)
    detector.observe_partial_pattern("fire", 2.0, "temporal3")
    assert [e.stream_time_s for e in run(detector, [scores(fire=0.3)], start_s=10.0)] == [10.0]  # 8 s: still on


def test_a_score_over_the_threshold_is_the_model_s_own_detection() -> None:
    detector = make(0.5, smoothing_windows=1)
    detector.observe_partial_pattern("fire", 2.0, "temporal3")
    assert [(e.pattern, e.partial_pattern) for e in run(detector, [scores(fire=0.7)])] == [(None, None)]


def test_a_full_match_still_fires_by_itself_and_a_fused_event_is_one_detection() -> None:
    detector = make(0.5, smoothing_windows=1, refractory_s=0.0)
    detector.hear_patterns(
        [Match("temporal3", "fire", 0.8, 2.5, partial=True), Match("temporal3", "fire", 0.9, 6.5)]
    )
    events = run(detector, [scores(fire=0.3)] * 12)
    # The window ending at 2.5 s observes the partial match first and fires, fused; its event
    # holds the class, so the full match at 6.5 s continues it.
    assert [(e.stream_time_s, e.pattern, e.partial_pattern) for e in events] == [(2.5, None, "temporal3")]
    detector = make(0.5, smoothing_windows=1)
    assert [e.pattern for e in detector.observe_pattern("fire", 0.9, 6.5, "temporal3")] == ["temporal3"]


def test_partial_matches_are_checked() -> None:
    detector = make()
    with pytest.raises(ValueError, match="never fires"):
        detector.observe_partial_pattern("normal", 1.0, "temporal3")
    with pytest.raises(KeyError):
        detector.observe_partial_pattern("earthquake", 1.0, "temporal3")
    with pytest.raises(ValueError, match="partial_pattern_ratio"):
        DetectorConfig.build(0.5, partial_pattern_ratio=0.0)
    with pytest.raises(ValueError, match="partial_pattern_ratio"):
        DetectorConfig.build(0.5, partial_pattern_ratio=1.5)
    with pytest.raises(ValueError, match="partial_hold_s"):
        DetectorConfig.build(0.5, partial_hold_s=-1.0)


# -- learned thresholds: what a home's false alarms taught applies to the scores alone ------------


def learned(fire: float, smoothing_windows: int = 1, partial_pattern_ratio: float = 0.5) -> Detector:
    return Detector(DetectorConfig.build(
        0.5, hop_s=HOP, learned_thresholds={"fire": fire}, smoothing_windows=smoothing_windows,
        partial_pattern_ratio=partial_pattern_ratio,
    ))  # fmt: skip


def test_a_learned_threshold_raises_the_scores_onset_for_its_class_only() -> None:
    rows = [scores(fire=0.58, crime=0.58)] * 10
    events = run(learned(0.6, smoothing_windows=1), rows)
    assert [e.emergency_class.key for e in events] == ["crime"]  # crime keeps its own 0.5
    assert [e.emergency_class.key for e in run(learned(0.6, smoothing_windows=1), [scores(fire=0.62)])] == ["fire"]


def test_an_alarm_pattern_fires_whatever_was_learned() -> None:
    detector = learned(1.0, smoothing_windows=1)
    events = run(detector, [scores(fire=0.2)] * 4)
    events += detector.observe_match(Match("temporal3", "fire", 0.9, 4.0))
    assert [(e.emergency_class.key, e.pattern) for e in events] == [("fire", "temporal3")]


def test_a_partial_pattern_lowers_the_class_own_threshold_not_the_learned_one() -> None:
    # Own 0.5, learned 0.6, ratio 0.5: with a partial match 0.3 fires, as it did before learning.
    detector = learned(0.6, smoothing_windows=1, partial_pattern_ratio=0.5)
    detector.observe_partial_pattern("fire", 2.0, "temporal3")
    (event,) = run(detector, [scores(fire=0.3)])
    assert event.partial_pattern == "temporal3"


def test_retune_takes_a_new_set_from_the_next_window() -> None:
    detector = make(0.5, smoothing_windows=1)
    detector.retune({"fire": 0.7})
    assert run(detector, [scores(fire=0.6)] * 2) == []
    detector.retune({})  # undone: back to the class's own
    assert [e.stream_time_s for e in run(detector, [scores(fire=0.6)], start_s=3.0)] == [3.0]
    assert detector.config.score_threshold("fire") == 0.5


@pytest.mark.parametrize("bad", [{"fire": 0.4}, {"fire": 1.2}, {"normal": 0.9}, {"toast": 0.9}])
def test_a_learned_threshold_only_raises_an_emergency_class_up_to_one(bad: dict[str, float]) -> None:
    with pytest.raises(ValueError, match="learned"):
        DetectorConfig.build(0.5, learned_thresholds=bad)
    with pytest.raises(ValueError, match="learned"):
        make(0.5).retune(bad)
