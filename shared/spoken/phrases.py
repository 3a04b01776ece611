"""The reviewed list of spoken distress phrases (``phrases.toml`` beside this module).

A ``DistressPhrase`` maps what a person says to an emergency class: "살려주세요" and "help me"
to ``help``, "불이야" and "fire" to ``fire``, "숨을 못 쉬겠어요" to ``medical``, "갇혔어요" and
"let me out" to ``trapped``. ``load_phrases`` reads and validates the file; a recogniser turns
``tokens`` into its grammar or keyword list.
"""

from __future__ import annotations

import tomllib
from collections.abc import Iterable
from dataclasses import dataclass
from functools import cache
from pathlib import Path

from shared.taxonomy import by_key

__all__ = ["LANGUAGES", "PHRASES_FILE", "DistressPhrase", "load_phrases", "parse_languages"]

PHRASES_FILE = Path(__file__).with_name("phrases.toml")
LANGUAGES = ("ko", "en")
DEFAULT_MIN_CONFIDENCE = {"ko": 0.9, "en": 0.0}


@dataclass(frozen=True)
class DistressPhrase:
    key: str
    class_key: str
    language: str
    text: str  # what the dispatcher sees
    tokens: tuple[tuple[str, ...], ...]  # recogniser forms, one word sequence each
    alone: bool = False  # counts only when it is most of the utterance
    min_confidence: float = 0.0
    kws_threshold: float | None = None


@cache
def load_phrases(path: Path = PHRASES_FILE) -> tuple[DistressPhrase, ...]:
    """Every phrase of ``path``; ValueError naming the phrase for an unknown class or language,
    a class that never fires, a repeated key or token sequence, or an English phrase without
    ``kws_threshold``."""
    data = tomllib.loads(path.read_text(encoding="utf-8"))
    phrases: list[DistressPhrase] = []
    seen_keys: set[str] = set()
    seen_tokens: dict[tuple[str, tuple[str, ...]], str] = {}
    for row in data.get("phrase", []):
        key = str(row["key"])
        if key in seen_keys:
            raise ValueError(f"{path}: phrase {key!r} twice")
        seen_keys.add(key)
        language = str(row["language"])
        if language not in LANGUAGES:
            raise ValueError(f"{path}: phrase {key!r}: language {language!r} is not one of {LANGUAGES}")
        emergency = by_key(str(row["class"]))
        if not emergency.is_emergency:
            raise ValueError(f"{path}: phrase {key!r}: class {emergency.key!r} never fires")
        tokens = tuple(tuple(form.split()) for form in row["tokens"])
        if not tokens or any(not form for form in tokens):
            raise ValueError(f"{path}: phrase {key!r}: empty tokens")
        for form in tokens:
            if (language, form) in seen_tokens:
                raise ValueError(f"{path}: phrase {key!r}: tokens {' '.join(form)!r} also in {seen_tokens[(language, form)]!r}")
            seen_tokens[(language, form)] = key
        threshold = row.get("kws_threshold")
        if language == "en" and threshold is None:
            raise ValueError(f"{path}: phrase {key!r}: an English phrase needs kws_threshold")
        phrases.append(DistressPhrase(
            key=key, class_key=emergency.key, language=language, text=str(row["text"]), tokens=tokens,
            alone=bool(row.get("alone", False)),
            min_confidence=float(row.get("min_confidence", DEFAULT_MIN_CONFIDENCE[language])),
            kws_threshold=None if threshold is None else float(threshold),
        ))
    return tuple(phrases)


def parse_languages(value: str | Iterable[str]) -> tuple[str, ...]:
    """``"ko,en"`` or an iterable of codes -> the codes in order without repeats; ValueError for
    an unknown one. An empty value turns spoken evidence off for the device."""
    items = value.split(",") if isinstance(value, str) else list(value)
    codes = tuple(dict.fromkeys(code.strip() for code in items if code.strip()))
    unknown = [code for code in codes if code not in LANGUAGES]
    if unknown:
        raise ValueError(f"unknown spoken language(s) {unknown}; known: {', '.join(LANGUAGES)}")
    return codes
