"""hearo bench load's accounting: detections held against each home's planned event."""

from __future__ import annotations

import pytest

from hearo.load_bench.accounting import HeardDetection, Spread, judge, summarise
from hearo.load_bench.audio import PlannedEvent, event_for

FIRE_AT_6 = PlannedEvent("fire", onset_s=6.0, duration_s=10.0)


def heard(class_key: str, stream_time_s: float, latency_s: float = 3.0, lag_s: float = 0.05) -> HeardDetection:
    return HeardDetection(class_key, stream_time_s, latency_s, lag_s)


def test_the_first_detection_of_the_event_class_inside_the_event_is_the_hit() -> None:
    outcome = judge(FIRE_AT_6, [heard("fire", 9.0, latency_s=3.05, lag_s=0.05)], tolerance_s=2.0)
    assert outcome.hit == heard("fire", 9.0, latency_s=3.05, lag_s=0.05)
    assert outcome.spurious == ()
    assert outcome.detector_latency_s == pytest.approx(3.0)


def test_other_classes_detections_outside_the_event_and_repeats_are_spurious() -> None:
    timeline = [
        heard("fire", 3.5),  # before onset - tolerance (4.0)
        heard("crime", 8.0),  # another class during the event
        heard("fire", 8.5),  # the hit
        heard("fire", 12.0),  # a second detection of the same event
        heard("fire", 18.5),  # after end + tolerance (18.0)
    ]
    outcome = judge(FIRE_AT_6, list(reversed(timeline)), tolerance_s=2.0)
    assert outcome.hit is not None and outcome.hit.stream_time_s == 8.5
    assert [d.stream_time_s for d in outcome.spurious] == [3.5, 8.0, 12.0, 18.5]


def test_a_detection_within_tolerance_of_the_event_counts() -> None:
    assert judge(FIRE_AT_6, [heard("fire", 4.5)], tolerance_s=2.0).hit is not None
    assert judge(FIRE_AT_6, [heard("fire", 17.9)], tolerance_s=2.0).hit is not None


def test_no_detection_of_the_event_class_is_a_miss() -> None:
    outcome = judge(FIRE_AT_6, [heard("gas", 9.0)], tolerance_s=2.0)
    assert outcome.hit is None and outcome.detector_latency_s is None
    assert len(outcome.spurious) == 1


def test_summary_counts_and_spreads_over_homes() -> None:
    outcomes = [
        judge(FIRE_AT_6, [heard("fire", 9.0, latency_s=3.0 + i * 0.1, lag_s=0.1 * i)], 2.0) for i in range(10)
    ] + [judge(FIRE_AT_6, [heard("crime", 9.0)], 2.0), judge(FIRE_AT_6, [], 2.0)]
    summary = summarise(outcomes)
    assert (summary.events, summary.detected, summary.missed, summary.spurious) == (12, 10, 2, 1)
    assert summary.spurious_classes == {"crime": 1}
    assert summary.latency.max == pytest.approx(3.9)
    assert summary.latency.p50 == pytest.approx(3.45)
    assert 3.8 < summary.latency.p99 <= 3.9  # type: ignore[operator]
    assert summary.detector_latency == Spread(3.0, 3.0, 3.0)
    assert summary.lag.max == pytest.approx(0.9)


def test_nothing_detected_leaves_the_spreads_empty() -> None:
    summary = summarise([judge(FIRE_AT_6, [], 2.0)])
    assert summary.missed == 1 and summary.latency == Spread()


def test_homes_get_different_onsets_with_the_whole_event_inside_the_recording() -> None:
    events = [event_for(i, seconds=30.0, event_s=10.0) for i in range(50)]
    assert len({e.onset_s for e in events}) == 50
    assert all(4.0 <= e.onset_s and e.onset_s + e.duration_s <= 30.0 for e in events)
