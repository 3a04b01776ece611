"""The sound signature: the same beep alike at another loudness and time, other sounds not."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from shared.features.efficientat_mel import efficientat_logmel
from shared.incidents.sound_signature import BANDS, SIGNATURE_LENGTH, similarity, sound_signature

RATE = 32_000  # EfficientAT's log-mel rate


def beeps(pitch_hz: float, seconds: float = 3.0, level: float = 0.3, seed: int = 0) -> np.ndarray:
    """A piezo appliance beep (four 0.25 s beeps, then 2 s) over quiet room noise."""
    t = np.arange(round(RATE * seconds)) / RATE
    tone = sum(a * np.sin(2 * np.pi * pitch_hz * k * t) for k, a in ((1, 1.0), (2, 0.3), (3, 0.5), (4, 0.1)))
    on = (t % 4.0 < 2.0) & (t % 0.5 < 0.25)
    return level * tone / 1.9 * on + 0.01 * np.random.default_rng(seed).standard_normal(len(t))


def noise(seconds: float = 3.0, seed: int = 1) -> np.ndarray:
    return 0.01 * np.random.default_rng(seed).standard_normal(round(RATE * seconds))


def signature(audio: np.ndarray) -> list[float]:
    mel = efficientat_logmel(torch.from_numpy(audio.astype(np.float32))[None])[0]  # [128, T]
    return sound_signature(mel.T.numpy())


def test_the_same_beep_is_alike_at_another_loudness_and_time() -> None:
    first = signature(beeps(3100.0, seed=0))
    assert len(first) == SIGNATURE_LENGTH == 2 * BANDS
    assert similarity(first, signature(beeps(3100.0, level=0.75, seed=5))) >= 0.95  # 8 dB louder
    assert similarity(first, signature(np.roll(beeps(3100.0, seed=6), RATE // 3))) >= 0.95


@pytest.mark.parametrize("other", [beeps(2000.0), noise(), beeps(700.0)], ids=["2 kHz beep", "room noise", "700 Hz beep"])
def test_other_sounds_are_not_alike(other: np.ndarray) -> None:
    assert similarity(signature(beeps(3100.0)), signature(other)) < 0.9


def test_similarity_of_nothing_comparable_is_zero() -> None:
    one = signature(beeps(3100.0))
    assert similarity(one, one) == pytest.approx(1.0, abs=1e-3)
    assert similarity(one, None) == similarity(None, one) == 0.0
    assert similarity(one, one[:BANDS]) == 0.0  # another version's length
    assert similarity([0.0] * SIGNATURE_LENGTH, one) == 0.0
    assert sound_signature(np.zeros((10, 128))) == [0.0] * SIGNATURE_LENGTH  # digital silence: flat


@pytest.mark.parametrize("shape", [(0, 128), (10, 16), (128,)])
def test_frames_it_cannot_describe_are_refused(shape: tuple[int, ...]) -> None:
    with pytest.raises(ValueError):
        sound_signature(np.zeros(shape))
