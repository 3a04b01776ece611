"""What a keyword recogniser reports: a phrase heard in one speech segment."""

from __future__ import annotations

from dataclasses import dataclass

from shared.spoken.phrases import DistressPhrase

__all__ = ["ALONE_OTHER_SPEECH_S", "KeywordMatch"]

# A phrase marked ``alone`` counts only with at most this much other speech in its utterance.
ALONE_OTHER_SPEECH_S = 0.8


@dataclass(frozen=True)
class KeywordMatch:
    """A phrase heard in a segment: times in seconds from the segment's start."""

    phrase: DistressPhrase
    confidence: float
    start_s: float
    end_s: float
    other_speech_s: float  # speech in the segment outside the phrase (the ``alone`` rule)
