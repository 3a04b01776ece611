"""The speech gate keeps the recogniser off during music and noise and passes speech."""

from __future__ import annotations

import numpy as np

from shared.spoken import SpeechGate
from tests.unit.spoken_support import in_room, speak

SR = 16_000


def _segments(audio: np.ndarray) -> list:
    gate = SpeechGate()
    out = []
    for lo in range(0, audio.size, 3200):
        out += gate.feed(audio[lo: lo + 3200])
    return out + gate.flush()


def _music(seconds: float, seed: int = 0) -> np.ndarray:
    """Chords with a melody and a beat: notes of 0.25-0.6 s, harmonics, a steady pulse."""
    rng = np.random.default_rng(seed)
    out, t0 = [], 0.0
    while t0 < seconds:
        length = rng.uniform(0.25, 0.6)
        t = np.arange(int(length * SR)) / SR
        f = 220 * 2 ** (rng.integers(0, 24) / 12)
        note = sum(np.sin(2 * np.pi * f * k * t) / k for k in range(1, 6)) * np.exp(-t * 1.5)
        out.append(note)
        t0 += length
    return (np.concatenate(out)[: int(seconds * SR)] * 0.1).astype(np.float32)


def test_noise_and_hum_never_open_the_recogniser() -> None:
    rng = np.random.default_rng(1)
    t = np.arange(10 * SR) / SR
    white = rng.standard_normal(10 * SR) * 0.1
    hum = sum(np.sin(2 * np.pi * 60 * k * t) / k for k in range(1, 12)) * 0.1
    beeps = np.sin(2 * np.pi * 2000 * t) * (np.sin(2 * np.pi * 2 * t) > 0) * 0.2
    for audio in (white, hum, beeps):
        assert _segments(audio.astype(np.float32)) == []


def test_music_does_not_open_the_recogniser() -> None:
    segments = _segments(_music(20.0))
    gate_pass = sum(s.end_s - s.start_s for s in segments) / 20.0
    assert gate_pass <= 0.1


def test_the_acoustic_model_saying_no_speech_holds_a_segment_back() -> None:
    speech = in_room(speak("espeak-ng", "en+m3", "Somebody left the door open in the kitchen"))
    assert len(_segments(speech)) >= 1
    gate = SpeechGate()
    for end in np.arange(2.0, speech.size / SR + 2, 0.5):
        gate.note_model_speech(float(end), 0.01)
    assert gate.feed(speech) + gate.flush() == []
    assert gate.rejected["model"] >= 1


def test_speech_passes_with_its_times() -> None:
    speech = speak("espeak-ng", "ko+m5", "살려주세요 제발 도와주세요")
    spoken_s = speech.size / SR
    segments = _segments(in_room(speech, lead_s=2.0))
    assert segments
    assert 1.5 <= segments[0].start_s <= 2.1
    # The recogniser hears what the segments span, so they must cover the words.
    assert segments[-1].end_s >= 2.0 + 0.9 * spoken_s
    assert sum(s.end_s - s.start_s for s in segments) >= 0.9 * spoken_s
    # WebRTC's VAD marks most of the speech voiced.
    assert sum(s.voiced_s for s in segments) >= 0.5 * spoken_s
