"""The keyword network's training material and calibration (hearo/keyword_training.py)."""

from __future__ import annotations

import numpy as np

from hearo.keyword_training import NEGATIVE_TEXTS, POSITIVE_TEXTS, Corpus, babble, calibrate, make_window, voices
from hearo.spoken_eval import EN_CONVERSATION, EN_VAL, KO_CONVERSATION, KO_VAL
from shared.spoken import load_phrases
from shared.spoken.keyword_net import WINDOW

SR = 16_000


def test_every_phrase_is_trained_and_no_evaluation_sentence_or_voice_is() -> None:
    trained = {key for _, _, keys in POSITIVE_TEXTS for key in keys}
    assert trained == {p.key for p in load_phrases()}
    everyday = {t for items in NEGATIVE_TEXTS.values() for t in items}
    assert not everyday & (set(KO_CONVERSATION) | set(EN_CONVERSATION))
    for split in ("train", "calibration"):
        used = {voice for pairs in voices(split).values() for _, voice in pairs}
        assert not used & {f"ko+{v}" for v in KO_VAL}
        assert not used & {voice for _, voice in EN_VAL}
        assert not {v.split("+")[-1] for v in used} & {v.split("+")[-1] for _, v in EN_VAL if "+" in v}
    assert not {v for pairs in voices("train").values() for v in pairs} & {v for pairs in voices("calibration").values() for v in pairs}


def test_babble_never_says_a_phrase() -> None:
    rng = np.random.default_rng(0)
    said = [babble(lang, rng) for lang in ("ko", "en") for _ in range(500)]
    texts = {p.text.lower().replace(" ", "") for p in load_phrases()}
    assert not any(t in s.lower().replace(" ", "") for s in said for t in texts if len(t) > 3)


def test_a_phrase_is_placed_whole_inside_its_window() -> None:
    rng = np.random.default_rng(1)
    material = {"speech": [rng.normal(0, 0.1, 3 * SR).astype(np.float32)], "sound": [rng.normal(0, 0.1, 3 * SR).astype(np.float32)]}
    tone = np.sin(2 * np.pi * 440 * np.arange(int(1.8 * SR)) / SR).astype(np.float32)
    for _ in range(20):
        window = make_window(tone, True, material, rng)
        assert window.shape == (WINDOW,) and np.isfinite(window).all() and np.abs(window).max() <= 1.0


class _ScoresByLevel:
    """A stand-in network: every phrase scores the window's peak level."""

    phrase_keys = ("en.help", "en.fire")

    def window_scores(self, windows: np.ndarray) -> np.ndarray:
        peak = np.abs(windows).max(axis=1, keepdims=True)
        return np.repeat(np.clip(peak, 0, 1), 2, axis=1)


def test_calibration_holds_the_false_share() -> None:
    rng = np.random.default_rng(2)
    quiet = [rng.uniform(0.05, 0.95) * np.ones(SR, dtype=np.float32) for _ in range(400)]
    loud = [np.ones(SR, dtype=np.float32) * 0.99 for _ in range(50)]
    targets = np.zeros((450, 2), dtype=np.float32)
    targets[400:, 0] = 1.0
    corpus = Corpus(quiet + loud, targets, ["x"] * 450)
    material = {"speech": [np.zeros(3 * SR, dtype=np.float32)], "sound": [np.zeros(3 * SR, dtype=np.float32)]}
    report = calibrate(_ScoresByLevel(), corpus, material)  # type: ignore[arg-type]
    for key in ("en.help", "en.fire"):
        assert report["figures"][key]["false_share"] <= 0.002
        assert report["thresholds"][key] >= 0.5
