"""The keyword network: the shipped weights, its windows, and what it hears in generated speech
(voices held out of its training and calibration: docs/spoken.md)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from shared.spoken import SpokenListener, load_phrases
from shared.spoken.keyword_net import WEIGHTS, WINDOW, KeywordNet, NetKeywords, load_keyword_net, segment_windows
from shared.spoken.recognisers import recogniser_for
from tests.unit.spoken_support import in_room, speak

SR = 16_000


def test_the_shipped_network_loads_strictly_for_the_reviewed_phrases(tmp_path: Path) -> None:
    net = load_keyword_net()
    assert set(net.phrase_keys) == {p.key for p in load_phrases()}
    assert all(0.5 <= net.thresholds[k] < 1.0 for k in net.phrase_keys)
    assert sum(p.numel() for p in net.model.parameters()) < 500_000
    # A phrase list that differs from the network's is refused, not silently half-heard.
    state = torch.load(WEIGHTS, map_location="cpu", weights_only=True)
    state["phrase_keys"] = [*state["phrase_keys"][:-1], "en.unlisted"]
    state["thresholds"]["en.unlisted"] = 0.5
    torch.save(state, tmp_path / "other.pt")
    with pytest.raises(ValueError, match="retrain"):
        load_keyword_net(tmp_path / "other.pt")
    state["phrase_keys"] = state["phrase_keys"][:-1]  # and weights of another shape do not load
    with pytest.raises(RuntimeError):
        KeywordNet(state)


def test_a_segment_is_cut_into_two_second_windows_every_quarter_second() -> None:
    short = segment_windows(np.ones(SR, dtype=np.float32) * 0.5)
    assert short.shape == (1, WINDOW)
    assert np.allclose(short[0, WINDOW // 4: WINDOW // 4 + SR], 0.5, atol=1e-3)  # centred in faint noise
    long = segment_windows(np.arange(int(3.1 * SR), dtype=np.float32))
    assert long.shape[0] == 6  # 0, .25, .5, .75, 1.0 and one that ends at the end
    assert long[-1, -1] == int(3.1 * SR) - 1


def test_two_languages_of_one_listener_run_the_network_once_per_segment(monkeypatch: pytest.MonkeyPatch) -> None:
    net = load_keyword_net()
    calls = []
    original = net.window_scores
    monkeypatch.setattr(net, "window_scores", lambda windows: calls.append(len(windows)) or original(windows))
    segment = (np.random.default_rng(0).standard_normal(3 * SR) * 0.01).astype(np.float32)
    NetKeywords("ko", net).recognise(segment)
    NetKeywords("en", net).recognise(segment)
    assert len(calls) == 1


def _heard(languages: tuple[str, ...], audio: np.ndarray) -> list[tuple[str, str]]:
    listener = SpokenListener(languages, {lang: recogniser_for(lang, "network") for lang in languages})
    return [(h.class_key, h.text) for h in listener.feed(audio) + listener.flush()]


@pytest.mark.parametrize(("engine", "voice", "text", "heard"), [
    ("espeak-ng", "ko+Annie", "살려주세요", ("help", "살려주세요")),
    ("espeak-ng", "ko+m6", "갇혔어요", ("trapped", "갇혔어요")),
    ("flite", "kal16", "Help me!", ("help", "help me")),
    ("flite", "rms", "I'm trapped!", ("trapped", "I'm trapped")),
    ("espeak-ng", "en-us+f3", "I can't breathe!", ("medical", "I can't breathe")),
])
def test_a_distress_phrase_in_a_held_out_voice_is_heard(engine: str, voice: str, text: str, heard: tuple[str, str]) -> None:
    assert heard in _heard(("ko", "en"), in_room(speak(engine, voice, text)))


@pytest.mark.parametrize(("engine", "voice", "text"), [
    ("espeak-ng", "ko+Annie", "오늘 저녁은 뭐 먹을까"),
    ("espeak-ng", "ko+m6", "불 좀 꺼 주세요"),
    ("flite", "rms", "Can you help me with the dishes?"),
    ("flite", "slt", "The fire drill is on Tuesday."),
])
def test_everyday_speech_is_not_heard_as_distress(engine: str, voice: str, text: str) -> None:
    assert _heard(("ko", "en"), in_room(speak(engine, voice, text))) == []


def test_a_device_that_listens_for_english_only_hears_no_korean_phrase() -> None:
    audio = in_room(speak("espeak-ng", "ko+Annie", "살려주세요"))
    assert _heard(("en",), audio) == []
