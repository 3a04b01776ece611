"""The household sentence grammar the keyword network learns "not a phrase" from (hearo/everyday_sentences.py)."""

from __future__ import annotations

import re

import numpy as np
import pytest

from hearo.everyday_sentences import everyday_sentence
from hearo.spoken_eval import EN_CONVERSATION, KO_CONVERSATION
from shared.spoken import load_phrases

# English phrase texts as words ("call 911" is spoken "call nine one one").
_SPOKEN_EN = {"call 911": "call nine one one"}


def _words(text: str) -> str:
    return " " + " ".join(re.findall(r"[a-z0-9']+", text.lower())) + " "


def test_no_sentence_says_a_phrase_or_is_an_evaluation_sentence() -> None:
    rng = np.random.default_rng(0)
    phrases = load_phrases()
    ko_phrases = [p.text.replace(" ", "") for p in phrases if p.language == "ko"]
    en_phrases = [_words(_SPOKEN_EN.get(p.text.lower(), p.text)) for p in phrases if p.language == "en"]
    evaluation = set(KO_CONVERSATION) | set(EN_CONVERSATION)
    ko = [everyday_sentence("ko", rng) for _ in range(3000)]
    en = [everyday_sentence("en", rng) for _ in range(3000)]
    assert not [s for s in ko if any(p in s.replace(" ", "") for p in ko_phrases)]
    assert not [s for s in en if any(p in _words(s) for p in en_phrases)]
    assert not (set(ko) | set(en)) & evaluation
    # Varied enough to be learned as speech, not by heart.
    assert len(set(ko)) > 2000 and len(set(en)) > 2000


def test_korean_particles_follow_the_final_consonant() -> None:
    rng = np.random.default_rng(1)
    for sentence in (everyday_sentence("ko", rng) for _ in range(500)):
        assert not re.search(r"(물|불|문|책|빵|밥|국|돈|꽃|약|옷)가 ", sentence), sentence
        assert not re.search(r"(우유|커피|차|의자|사과)이 ", sentence), sentence


def test_an_unknown_language_is_refused() -> None:
    with pytest.raises(ValueError, match="language"):
        everyday_sentence("fr", np.random.default_rng(0))
