"""The novelty gate: steady sound the model called normal is not judged again; a change, a
stream not yet normal, or too long without a judgement always is; and what the detector sees
behind it is the model's own scores wherever an emergency could be building."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from services.gateway.novelty_gate import GatePolicy, NoveltyGate, gated_scores
from shared.detector import Detector, DetectorConfig
from shared.features.spec import BEATS_FBANK, EFFICIENTAT_MEL, FeatureSpec
from shared.features.stream import clip_windows
from shared.taxonomy import CLASSES, NUM_CLASSES, by_key

RATE = EFFICIENTAT_MEL.sample_rate
HOP_S = 0.5
CONFIG = DetectorConfig.build(0.5, {}, None, smoothing_windows=3, hop_s=HOP_S)


def windows_of(audio: np.ndarray, spec: FeatureSpec = EFFICIENTAT_MEL) -> tuple[list[torch.Tensor], list[float]]:
    hop_frames = spec.frames_for(HOP_S)
    windows = clip_windows(spec, audio.astype(np.float32), hop_frames)
    hop = hop_frames * spec.frame_shift / spec.sample_rate
    return list(windows), [spec.window_seconds + i * hop for i in range(len(windows))]


def room(seconds: float, level: float = 0.003, seed: int = 0) -> np.ndarray:
    return level * np.random.default_rng(seed).standard_normal(int(seconds * RATE))


def tone(seconds: float, hz: float, level: float = 0.3) -> np.ndarray:
    t = np.arange(int(seconds * RATE)) / RATE
    return level * np.sin(2 * np.pi * hz * t)


def normal_scores(n: int) -> np.ndarray:
    scores = np.full((n, NUM_CLASSES), 0.02)
    scores[:, 0] = 0.95
    return scores


def gate(policy: GatePolicy | None = None, spec: FeatureSpec = EFFICIENTAT_MEL) -> NoveltyGate:
    return NoveltyGate.for_detector(policy or GatePolicy(), spec, CONFIG)


def test_steady_room_noise_is_judged_rarely() -> None:
    features, ends = windows_of(room(60))
    _, admitted = gated_scores(gate(), features, ends, normal_scores(len(features)))
    # The first windows (the smoothing's) and one every max_skip_s at most.
    assert admitted[:3].all()
    assert admitted.sum() <= 3 + 60 / 5 + 1
    assert admitted.mean() < 0.3


def test_a_sound_that_starts_is_judged_at_once() -> None:
    audio = np.concatenate([room(20), room(10) + tone(10, 3100)])
    features, ends = windows_of(audio)
    _, admitted = gated_scores(gate(), features, ends, normal_scores(len(features)))
    onset = next(i for i, end in enumerate(ends) if end > 20.0)  # the first window with the tone in it
    assert admitted[onset]


def test_a_short_bang_is_judged() -> None:
    audio = room(30)
    start = int(20.2 * RATE)
    audio[start: start + RATE // 20] += 0.8 * np.random.default_rng(1).standard_normal(RATE // 20)
    features, ends = windows_of(audio)
    _, admitted = gated_scores(gate(), features, ends, normal_scores(len(features)))
    assert admitted[next(i for i, end in enumerate(ends) if end > 20.25)]


def test_a_stream_not_clearly_normal_is_judged_every_window() -> None:
    features, ends = windows_of(room(30))
    scores = normal_scores(len(features))
    fire = by_key("fire").id
    scores[10:, fire] = 0.6 * CONFIG.thresholds["fire"]  # above half its threshold: watch closely
    _, admitted = gated_scores(gate(), features, ends, scores)
    # From the first judged window that showed it, every window is judged.
    first = next(i for i in range(10, len(admitted)) if admitted[i])
    assert first - 10 < 5.0 / HOP_S and admitted[first:].all()


def test_the_model_judges_at_least_every_max_skip() -> None:
    features, ends = windows_of(room(40))
    _, admitted = gated_scores(gate(GatePolicy(max_skip_s=2.0)), features, ends, normal_scores(len(features)))
    judged_at = [end for end, judged in zip(ends, admitted) if judged]
    assert max(np.diff(judged_at)) <= 2.0 + 1e-9


def test_off_or_an_unknown_spec_judges_everything() -> None:
    features, ends = windows_of(room(20))
    for off in (gate(GatePolicy(enabled=False)),
                gate(spec=FeatureSpec("mine", RATE, 128, 800, 320, 200, "its own"))):
        seen, admitted = gated_scores(off, features, ends, normal_scores(len(features)))
        assert admitted.all() and not off.active


def test_beats_features_are_gated_on_their_own_scale() -> None:
    features, ends = windows_of(np.concatenate([room(20, seed=2)[: 20 * 16_000]]), BEATS_FBANK)
    _, admitted = gated_scores(gate(spec=BEATS_FBANK), features, ends, normal_scores(len(features)))
    assert admitted.mean() < 0.5


def test_held_windows_take_the_last_judged_scores_and_the_detector_still_fires() -> None:
    """A steady alarm the model scores above threshold: every window is judged once the scores
    rise, and the detector fires exactly where it fires without the gate."""
    audio = np.concatenate([room(20), room(20) + tone(20, 3100)])
    features, ends = windows_of(audio)
    fire = by_key("fire").id
    scores = normal_scores(len(features))
    loud = [i for i, end in enumerate(ends) if end > 21.0]
    scores[loud, fire] = 0.9
    scores[loud, 0] = 0.05
    seen, admitted = gated_scores(gate(), features, ends, scores)
    assert np.array_equal(seen[loud], scores[loud])

    def first_detection(rows: np.ndarray) -> float:
        detector = Detector(CONFIG)
        events = [e for row, end in zip(rows, ends) for e in detector.update(row, end)]
        assert events and events[0].emergency_class is CLASSES[fire]
        return events[0].stream_time_s

    assert first_detection(seen) == first_detection(scores)


@pytest.mark.parametrize("field", ["change_db", "rise_db", "max_skip_s"])
def test_policy_refuses_nonsense(field: str) -> None:
    with pytest.raises(ValueError):
        GatePolicy(**{field: 0})


def test_an_alarm_whose_scores_rise_and_fall_with_its_rhythm_keeps_the_gate_open() -> None:
    """A temporal-three alarm moves through the window: its scores swing from one window to the
    next. One low window judged must not close the gate on the high ones after it."""
    features, ends = windows_of(room(30))
    scores = normal_scores(len(features))
    fire = by_key("fire").id
    swing = [0.9, 0.2, 0.8, 0.25] * len(features)
    scores[10:, fire] = swing[: len(features) - 10]
    seen, admitted = gated_scores(gate(), features, ends, scores)
    first = next(i for i in range(10, len(admitted)) if admitted[i] and scores[i, fire] > 0.5)
    assert admitted[first:].all() and np.array_equal(seen[first:], scores[first:])
