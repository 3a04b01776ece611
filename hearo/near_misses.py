"""Near misses of the distress phrases, drawn afresh for each utterance: the keyword network's
hardest "not a phrase" speech (``hearo.keyword_training``).

The listed near-miss sentences and the household grammar (``hearo.everyday_sentences``) taught
the network most of what is not a phrase, but what it still fired on, confidently, was speech one
sound away from a phrase ("골이야" for "불이야") or a phrase that is the start of an everyday
request ("let me out at the corner", "help me with the dishes"). Two kinds are drawn here, from
the phrase list itself, so that every phrase gets them:

- **one sound changed** (Korean): a syllable of the phrase gets another first consonant or
  final consonant (불이야 -> 굴이야, 불인야); English: a word of the phrase gets another
  onset ("help" -> "kelp", "trapped" -> "drapped"), as a minimal pair to tell apart.
- **the phrase as the start of a request** (English): "help", "help me", "somebody help" and
  "let me out" carried on into an everyday request ("help me carry the laundry", "let me out
  near the bakery"). The other phrases stay a cry for help whatever follows. Korean requests put the verb last, so a Korean phrase does
  not start an everyday sentence the same way; Korean gets only the changed sounds.

Nothing drawn here is a phrase, a listed form of one, or a sentence of the evaluation set
(``tests/unit/test_near_misses.py`` checks many draws).
"""

from __future__ import annotations

import re
from collections.abc import Iterable

import numpy as np

from hearo.everyday_sentences import EN_ASK, EN_PLACES, EN_THINGS, EN_WHEN

__all__ = ["near_miss"]

_HANGUL_FIRST, _HANGUL_LAST = 0xAC00, 0xD7A3
_VOWELS, _FINALS = 21, 28
# Hangul first consonants (ㄱ ㄲ ㄴ ㄷ ㄸ ㄹ ㅁ ㅂ ㅃ ㅅ ㅆ ㅇ ㅈ ㅉ ㅊ ㅋ ㅌ ㅍ ㅎ) by series: lax, tense and
# aspirated forms of one place are told apart by effort, which a shout or a voice changes.
_CONSONANT_SERIES = ({0, 1, 15}, {2}, {3, 4, 16}, {5}, {6}, {7, 8, 17}, {9, 10}, {11}, {12, 13, 14}, {18})
# Final consonants as they sound: none, ㄱ ㄴ ㄷ ㄹ ㅁ ㅂ ㅇ (the others are said as one of these,
# or not at all: 불이얗 is said 불이야).
_FINAL_SOUNDS = (0, 1, 4, 7, 8, 16, 17, 21)
# Word onsets for English minimal pairs: consonants and clusters a word starts with.
_EN_ONSETS = ("b", "d", "f", "g", "h", "k", "l", "m", "n", "p", "r", "s", "t", "w", "y", "bl", "br", "cl", "dr", "fl",
              "gl", "gr", "pl", "sh", "sl", "sn", "st", "sw", "th", "tr", "wh")
# The English phrases that start an everyday request when carried on, and how they carry on.
# The others stay a cry for help whatever follows ("I'm trapped at the school").
_EN_REQUESTS = {
    "help": ("help with the {thing}", "help {when}", "help at the {place}"),
    "help me": ("help me with the {thing}", "help me {ask} the {thing}", "help me {ask} the {thing} {when}"),
    "somebody help": ("somebody help with the {thing}", "somebody help me {ask} the {thing}"),
    "let me out": ("let me out at the {place}", "let me out near the {place}", "let me out by the {place} {when}",
                   "let me out {when}"),
}


def _syllable_changed(syllable: str, rng: np.random.Generator) -> str:
    """``syllable`` with another first consonant (of another series: a shout turns 세 into 쎄,
    which is still the phrase) or another final consonant (or none). The vowel is kept: 요/여
    and 에/애 are spelt apart but said alike."""
    code = ord(syllable) - _HANGUL_FIRST
    first, vowel, final = code // (_VOWELS * _FINALS), code // _FINALS % _VOWELS, code % _FINALS
    if rng.random() < 0.6:
        series = next(s for s in _CONSONANT_SERIES if first in s)
        first = int(rng.choice([c for c in range(19) if c not in series]))
    else:
        final = int(rng.choice([f for f in _FINAL_SOUNDS if f != final]))
    return chr(_HANGUL_FIRST + (first * _VOWELS + vowel) * _FINALS + final)


def _korean(text: str, rng: np.random.Generator) -> str:
    positions = [i for i, ch in enumerate(text) if _HANGUL_FIRST <= ord(ch) <= _HANGUL_LAST]
    i = positions[int(rng.integers(len(positions)))]
    return text[:i] + _syllable_changed(text[i], rng) + text[i + 1:]


def _english(text: str, rng: np.random.Generator) -> str:
    key = text.rstrip("!?.").lower()
    if key in _EN_REQUESTS and rng.random() < 0.5:
        template = str(rng.choice(_EN_REQUESTS[key]))
        return template.format(thing=rng.choice(EN_THINGS), place=rng.choice(EN_PLACES), when=rng.choice(EN_WHEN),
                               ask=rng.choice(EN_ASK)).capitalize() + "."
    words = text.rstrip("!?.").split()
    i = int(rng.integers(len(words)))
    onset = re.match(r"[^aeiouAEIOU']*", words[i])
    words[i] = str(rng.choice(_EN_ONSETS)) + words[i][onset.end() if onset else 0:]
    return " ".join(words) + "."


def _norm(text: str) -> str:
    return re.sub(r"[^0-9a-z가-힣]", "", text.lower())


def near_miss(language: str, phrase_texts: Iterable[str], rng: np.random.Generator,
              never: Iterable[str] = ()) -> str:
    """A near miss of one of ``phrase_texts`` (the language's listed phrase forms, as spoken);
    never one of them, nor one of ``never`` (the evaluation set's sentences)."""
    if language not in ("ko", "en"):
        raise ValueError(f"no near misses for language {language!r}")
    texts = list(phrase_texts)
    refused = {_norm(t) for t in texts} | {_norm(t) for t in never}
    change = _korean if language == "ko" else _english
    while True:
        drawn = change(texts[int(rng.integers(len(texts)))], rng)
        if _norm(drawn) not in refused and not any(_norm(t) == _norm(drawn) for t in texts):
            return drawn
