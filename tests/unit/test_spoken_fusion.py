"""Fusion: a keyword alone does not fire; a keyword with repetition, shouting or the model's
class score does, once, with the phrase the dispatcher sees."""

from __future__ import annotations

import numpy as np

from shared.detector import Detector, DetectorConfig
from shared.spoken import SpokenFusion, SpokenHit, summarise
from shared.taxonomy import NUM_CLASSES, by_key

THRESHOLDS = {"crime": 0.9, "trapped": 0.99, "electric": 0.9, "gas": 0.9, "fire": 0.9, "medical": 0.9,
              "accident": 0.9, "help": 0.93}


def _hit(t: float, text: str = "살려주세요", class_key: str = "help", shouted: bool = False) -> SpokenHit:
    return SpokenHit(f"ko.{text}", class_key, "ko", text, 0.95, t - 0.8, t, shouted)


def _scores(**by_class: float) -> np.ndarray:
    row = np.zeros(NUM_CLASSES)
    row[0] = 0.9
    for key, value in by_class.items():
        row[by_key(key).id] = value
    return row


def _run(hits: list[SpokenHit], seconds: float = 30.0, **scores: float) -> list:
    detector = Detector(DetectorConfig(thresholds=THRESHOLDS), spoken=SpokenFusion())
    assert detector.spoken is not None
    detector.spoken.hear(hits)
    events = []
    for t in np.arange(2.0, seconds, 0.5):
        events += detector.update(_scores(**scores), float(t))
    return events


def test_a_keyword_alone_does_not_fire() -> None:
    assert _run([_hit(5.0)]) == []


def test_a_repeated_keyword_fires_once_with_what_was_heard() -> None:
    events = _run([_hit(5.0), _hit(7.5), _hit(9.0)])
    assert [(e.emergency_class.key, e.spoken) for e in events] == [("help", "heard: '살려주세요' ×2")]
    assert events[0].stream_time_s == 7.5


def test_a_shouted_keyword_fires() -> None:
    events = _run([_hit(5.0, shouted=True)])
    assert [e.emergency_class.key for e in events] == ["help"]


def test_a_keyword_with_the_models_class_score_fires_for_its_class() -> None:
    # help's threshold is 0.93: 0.5 of it is support; the score alone is far below.
    events = _run([_hit(6.0, "숨을 못 쉬겠어요", "medical")], medical=0.5)
    assert [(e.emergency_class.key, e.spoken) for e in events] == [("medical", "heard: '숨을 못 쉬겠어요'")]
    assert _run([_hit(6.0, "숨을 못 쉬겠어요", "medical")], medical=0.3) == []


def test_hits_far_apart_are_not_a_repetition() -> None:
    assert _run([_hit(5.0), _hit(40.0)], seconds=60.0) == []


def test_two_spots_of_one_utterance_are_not_a_repetition() -> None:
    assert _run([_hit(5.0), SpokenHit("ko.x", "help", "ko", "도와주세요", 0.9, 4.5, 5.1)]) == []


def test_the_scores_event_and_the_spoken_one_are_one_detection() -> None:
    events = _run([_hit(5.0), _hit(6.0)], help=0.95)
    assert len(events) == 1


def test_summary() -> None:
    assert summarise([_hit(1), _hit(2), _hit(3, "help")]) == "heard: '살려주세요' ×2, 'help'"


def test_while_the_model_is_down_repetition_still_fires_and_a_lone_keyword_does_not() -> None:
    """``Detector.unheard``: windows the model could not judge still consult the spoken evidence;
    the smoothing starts afresh when scores come back."""
    detector = Detector(DetectorConfig(thresholds=THRESHOLDS), spoken=SpokenFusion())
    assert detector.spoken is not None
    detector.spoken.hear([_hit(5.0, "숨을 못 쉬겠어요", "medical"), _hit(12.0), _hit(14.0)])
    for t in (2.0, 2.5, 3.0):
        detector.update(_scores(medical=0.6), t)
    assert detector.smoothed is not None
    events = [e for t in np.arange(3.5, 20.0, 0.5) for e in detector.unheard(float(t))]
    # The medical phrase had model support before the outage, none during it: no detection.
    assert [(e.emergency_class.key, e.spoken) for e in events] == [("help", "heard: '살려주세요' ×2")]
    assert detector.smoothed is None
    detector.update(_scores(), 20.5)
    assert detector.smoothed is None  # three scored windows again before a decision
