"""Near misses of the distress phrases (hearo/near_misses.py): the keyword network's hardest
"not a phrase" speech must never be a phrase, a listed form of one, or an evaluation sentence."""

from __future__ import annotations

import re

import numpy as np
import pytest

from hearo.keyword_training import POSITIVE_TEXTS
from hearo.near_misses import near_miss
from hearo.spoken_eval import EN_CONVERSATION, KO_CONVERSATION
from shared.spoken import load_phrases

_SPOKEN = {"call 911": "call nine one one"}


def _phrases(language: str) -> list[str]:
    return [_SPOKEN.get(p.text, p.text) for p in load_phrases() if p.language == language]


def _norm(text: str) -> str:
    return re.sub(r"[^0-9a-z가-힣]", "", text.lower())


@pytest.mark.parametrize("language", ["ko", "en"])
def test_a_near_miss_is_never_a_phrase_a_listed_form_or_an_evaluation_sentence(language: str) -> None:
    rng = np.random.default_rng(0)
    never = [text for _, text, _ in POSITIVE_TEXTS] + list(KO_CONVERSATION) + list(EN_CONVERSATION)
    drawn = [near_miss(language, _phrases(language), rng, never) for _ in range(3000)]
    refused = {_norm(t) for t in never + _phrases(language)}
    assert not [d for d in drawn if _norm(d) in refused]
    assert len(set(drawn)) > 500  # varied enough to be learned as sounds, not by heart


def test_korean_near_misses_change_one_sound_of_a_phrase() -> None:
    rng = np.random.default_rng(1)
    phrases = _phrases("ko")
    for drawn in (near_miss("ko", phrases, rng) for _ in range(500)):
        same_shape = [p for p in phrases if len(p) == len(drawn) and sum(a != b for a, b in zip(p, drawn)) == 1]
        assert same_shape, drawn
        phrase = same_shape[0]
        i = next(k for k, (a, b) in enumerate(zip(phrase, drawn)) if a != b)
        # The vowel is kept (요/여 are said alike), and the final consonant is one that sounds.
        vowel = lambda ch: (ord(ch) - 0xAC00) // 28 % 21  # noqa: E731
        assert vowel(phrase[i]) == vowel(drawn[i]), (phrase, drawn)
        final = lambda ch: (ord(ch) - 0xAC00) % 28  # noqa: E731
        assert final(drawn[i]) == final(phrase[i]) or final(drawn[i]) in (0, 1, 4, 7, 8, 16, 17, 21), drawn


def test_english_requests_carry_on_only_the_phrases_that_start_one() -> None:
    rng = np.random.default_rng(2)
    drawn = [near_miss("en", _phrases("en"), rng) for _ in range(2000)]
    carried = [d for d in drawn if len(d.split()) > 4]
    assert carried
    assert all(re.match(r"(help|somebody help|let me out)\b", d.lower()) for d in carried), carried[:5]
    assert not [d for d in drawn if d.lower().startswith(("i'm trapped ", "i can't breathe "))]


def test_an_unknown_language_is_refused() -> None:
    with pytest.raises(ValueError, match="language"):
        near_miss("fr", ["au secours"], np.random.default_rng(0))
