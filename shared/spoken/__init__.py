"""Spoken distress words as evidence: "살려주세요", "도와주세요", "help me", "I'm trapped".

The acoustic model hears *how* something is said; this package hears *what*. A speech gate
(``gate``) passes only speech segments to a keyword recogniser (``recognisers``: by default our
keyword network, ``keyword_net``, trained by ``hearo spoken train``; Vosk and PocketSphinx as
the alternative), which confirms phrases of the reviewed list (``phrases.toml``).
``SpokenListener`` runs that per stream (``SpokenStream`` keeps it on a session's clock across
gaps and language changes); ``SpokenFusion`` is what the detector consults to turn phrases,
with support from repetition, shouting or the model's class score, into detections.
``availability`` says whether each language can run here; nothing is downloaded at run time.
"""

from __future__ import annotations

from shared.spoken.fusion import SpokenDecision, SpokenFusion, SpokenFusionConfig, summarise
from shared.spoken.gate import GateConfig, SpeechGate, SpeechSegment
from shared.spoken.listener import SpokenHit, SpokenListener
from shared.spoken.phrases import LANGUAGES, DistressPhrase, load_phrases, parse_languages
from shared.spoken.recognisers import SpokenUnavailable, availability, recogniser_for, recogniser_kind
from shared.spoken.stream import SpokenStream, WindowTags, listen

__all__ = [
    "LANGUAGES", "DistressPhrase", "GateConfig", "SpeechGate", "SpeechSegment", "SpokenDecision", "SpokenFusion",
    "SpokenFusionConfig", "SpokenHit", "SpokenListener", "SpokenStream", "SpokenUnavailable", "WindowTags", "availability", "listen",
    "load_phrases", "parse_languages", "recogniser_for", "status", "summarise",
]


def status(languages: tuple[str, ...] = LANGUAGES) -> dict[str, object]:
    """What ``/healthz`` says about spoken evidence: ``available`` or ``unavailable`` with the
    reason per language."""
    reasons = availability()
    wanted = {lang: reasons.get(lang) for lang in languages}
    state = "available" if all(r is None for r in wanted.values()) else (
        "partial" if any(r is None for r in wanted.values()) else "unavailable")
    return {"state": state, "recogniser": recogniser_kind(),
            "languages": {lang: "available" if r is None else r for lang, r in wanted.items()}}
