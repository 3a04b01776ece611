"""The keyword network's training material and calibration (hearo/keyword_training.py)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from hearo.keyword_training import (
    NEGATIVE_TEXTS,
    POSITIVE_TEXTS,
    Corpus,
    babble,
    calibrate,
    make_window,
    voices,
    warp_formants,
)
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


def test_formant_warp_moves_energy_along_frequency_and_keeps_time() -> None:
    features = torch.zeros(3, 1, 10, 64)
    features[:, :, 4, 20] = 1.0  # one frame, one bin
    up = warp_formants(features, np.random.default_rng(0), share=1.0, factor=(1.15, 1.15))
    down = warp_formants(features, np.random.default_rng(0), share=1.0, factor=(0.87, 0.87))
    for warped, lo, hi in ((up, 21, 24), (down, 17, 20)):
        assert warped.shape == features.shape
        assert torch.all(warped[:, :, [f for f in range(10) if f != 4]] == 0)  # time untouched
        peak = int(warped[0, 0, 4].argmax())
        assert lo <= peak <= hi
    same = warp_formants(features, np.random.default_rng(0), share=1.0, factor=(1.0, 1.0))
    assert torch.allclose(same, features)
    untouched = warp_formants(features, np.random.default_rng(0), share=0.0)
    assert torch.equal(untouched, features)


def test_a_missing_synthesiser_voice_is_named_with_its_package(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import hearo.keyword_training as training

    monkeypatch.setattr(training, "FESTIVAL_VOICES", tmp_path)  # no festival voice installed there
    with pytest.raises(RuntimeError, match="apt-get install .*festvox-kallpc16k festvox-kdlpc16k"):
        training._check_synthesisers({"ko": [], "en": [("festival", "kal")]})
    training._check_synthesisers({"ko": [], "en": []})  # nothing to synthesise needs nothing


def test_a_stopped_run_resumes_exactly_where_its_checkpoint_left_it(tmp_path: Path) -> None:
    from hearo.keyword_training import _Run
    from shared.spoken.keyword_net import KeywordCNN

    def fresh() -> _Run:
        torch.manual_seed(0)
        model = KeywordCNN(3)
        optimiser = torch.optim.AdamW(model.parameters(), lr=1e-3)
        schedule = torch.optim.lr_scheduler.OneCycleLR(optimiser, max_lr=1e-3, total_steps=10)
        return _Run(model, optimiser, schedule, np.random.default_rng(0))

    def step(run: _Run) -> None:
        x = torch.from_numpy(run.rng.normal(size=(2, 1, 40, 64)).astype(np.float32))
        loss = run.model(x).square().mean()
        run.optimiser.zero_grad()
        loss.backward()
        run.optimiser.step()
        run.schedule.step()

    straight = fresh()
    for _ in range(2):
        step(straight)
    straight.save(tmp_path / "checkpoint.pt", 2, 0.5)
    step(straight)

    resumed = fresh()
    assert resumed.resume(tmp_path / "checkpoint.pt") == (3, 0.5)
    step(resumed)
    for a, b in zip(straight.model.state_dict().values(), resumed.model.state_dict().values()):
        assert torch.equal(a, b)
    assert straight.rng.random() == resumed.rng.random()
    assert not (tmp_path / "checkpoint.partial").exists()
