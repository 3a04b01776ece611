"""``SpokenListener``: one stream's spoken evidence, from 16 kHz audio to confirmed phrases.

The audio goes through the speech gate (``gate.SpeechGate``); each speech segment it passes
goes to the recogniser of every language the device listens for. ``feed`` is synchronous and
costs recogniser time only on speech, so a session calls it in a thread executor, off the event
loop, with the same 16 kHz audio its ring buffer keeps.

>>> listener = SpokenListener(("ko", "en"))           # doctest: +SKIP
>>> hits = listener.feed(pcm16k)                      # doctest: +SKIP
>>> detector.hear_spoken(hits)                        # doctest: +SKIP
"""

from __future__ import annotations

import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

import numpy as np

from shared.spoken.gate import GateConfig, SpeechGate, SpeechSegment
from shared.spoken.recognisers import KeywordRecogniser, recogniser_for

__all__ = ["SHOUT_TAGS", "SPEECH_TAGS", "SpokenHit", "SpokenListener"]

SAMPLE_RATE = 16_000
# AudioSet display names (the default model's tags) that mean someone is speaking / shouting.
SPEECH_TAGS = frozenset({
    "Speech", "Male speech, man speaking", "Female speech, woman speaking", "Child speech, kid speaking",
    "Conversation", "Narration, monologue", "Shout", "Yell", "Bellow", "Whoop", "Screaming",
    "Children shouting", "Babbling", "Whispering", "Crying, sobbing", "Groan", "Wail, moan",
})
SHOUT_TAGS = frozenset({"Shout", "Yell", "Bellow", "Screaming", "Children shouting"})


@dataclass(frozen=True)
class SpokenHit:
    """A confirmed distress phrase: ``start_s``/``end_s`` in stream time (seconds of audio since
    the stream started), ``shouted`` when the utterance was raised (its level above the noise
    floor, or the model's shout tags over it)."""

    phrase_key: str
    class_key: str
    language: str
    text: str
    confidence: float
    start_s: float
    end_s: float
    shouted: bool = False

    @property
    def stream_time_s(self) -> float:
        return self.end_s


@dataclass
class SpokenListener:
    """``languages``: the device's setting (``ko``, ``en``); ``recognisers`` replaces the
    process's shared ones (tests). Raises ``SpokenUnavailable`` when a language's package is
    missing."""

    languages: Sequence[str]
    recognisers: Mapping[str, KeywordRecogniser] | None = None
    gate_config: GateConfig = field(default_factory=GateConfig)
    # A raised voice: its voiced frames this far above the noise floor and at least this loud.
    shout_margin_db: float = 28.0
    shout_min_dbfs: float = -22.0
    shout_tag_score: float = 0.3
    cpu_s: float = 0.0  # recogniser CPU time so far (thread time)
    segments: int = 0

    def __post_init__(self) -> None:
        self.gate = SpeechGate(self.gate_config)
        given = self.recognisers or {}
        self._recognisers = {lang: given[lang] if lang in given else recogniser_for(lang) for lang in self.languages}
        self._shout_tags: list[tuple[float, float]] = []

    def note_tags(self, window_end_s: float, tags: Sequence[tuple[str, float]]) -> None:
        """The acoustic model's tags for the window ending at ``window_end_s``: its speech score
        gates the recogniser and its shout score marks hits as shouted."""
        speech = max((score for label, score in tags if label in SPEECH_TAGS), default=0.0)
        self.gate.note_model_speech(window_end_s, speech)
        shout = max((score for label, score in tags if label in SHOUT_TAGS), default=0.0)
        self._shout_tags = [(t, s) for t, s in self._shout_tags if t > window_end_s - 30] + [(window_end_s, shout)]

    def feed(self, samples: np.ndarray | bytes) -> list[SpokenHit]:
        """Take 16 kHz mono audio (float32, or PCM16 little-endian bytes); returns the phrases
        heard in the speech segments it closes."""
        if isinstance(samples, bytes | bytearray | memoryview):
            samples = np.frombuffer(samples, dtype="<i2").astype(np.float32) / 32768.0
        return self._recognise(self.gate.feed(samples))

    def flush(self) -> list[SpokenHit]:
        """The phrases of the last, still open segment (end of stream)."""
        return self._recognise(self.gate.flush())

    def _recognise(self, segments: list[SpeechSegment]) -> list[SpokenHit]:
        hits: list[SpokenHit] = []
        for segment in segments:
            self.segments += 1
            started = time.thread_time()
            for recogniser in self._recognisers.values():
                for m in recogniser.recognise(segment.audio, voiced_s=segment.voiced_s):
                    hits.append(SpokenHit(
                        m.phrase.key, m.phrase.class_key, m.phrase.language, m.phrase.text, round(m.confidence, 3),
                        round(segment.start_s + m.start_s, 3), round(segment.start_s + m.end_s, 3),
                        self._shouted(segment),
                    ))
            self.cpu_s += time.thread_time() - started
        return hits

    def _shouted(self, segment: SpeechSegment) -> bool:
        if segment.level_dbfs >= max(segment.floor_dbfs + self.shout_margin_db, self.shout_min_dbfs):
            return True
        over = [s for t, s in self._shout_tags if t >= segment.start_s and t - 2.0 <= segment.end_s]
        return bool(over) and max(over) >= self.shout_tag_score
