"""``SpokenStream``: one stream's spoken evidence in stream time, as a session and ``hearo eval``
run it.

A ``SpokenListener`` counts time from the first sample it was fed; a session's audio can have
gaps (the recogniser fell behind and the oldest audio was dropped) and its device can change
its languages mid-stream. ``SpokenStream`` keeps the listener on the stream's clock: audio is
fed with the stream time it starts at, and audio that does not follow on from the last (a gap)
starts a fresh listener there, as the detector starts its smoothing afresh after lost windows.
The model's tags are given with the stream time of their window's end. With no languages
nothing is listened to and feeding costs nothing.

Not thread-safe: one caller at a time (a session's one recogniser call in flight).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace

import numpy as np

from shared.spoken.listener import SAMPLE_RATE, SpokenHit, SpokenListener
from shared.spoken.recognisers import KeywordRecogniser

__all__ = ["SpokenStream", "WindowTags", "listen"]

# (stream time of a model window's end, its AudioSet tags as (label, score))
WindowTags = tuple[float, Sequence[tuple[str, float]]]

# Audio starting this far from where the last ended is a gap (a 30 ms gate frame).
_GAP_S = 0.03


@dataclass
class SpokenStream:
    """``languages``: the device's setting (empty: off); ``recognisers`` replaces the process's
    shared ones (tests). Raises ``SpokenUnavailable`` when a language's package is missing."""

    languages: tuple[str, ...]
    recognisers: Mapping[str, KeywordRecogniser] | None = None
    cpu_s: float = 0.0  # recogniser CPU time over the listeners so far
    heard_s: float = 0.0  # audio the gate looked at
    passed_s: float = 0.0  # audio it passed to the recognisers
    gaps: int = 0
    _listener: SpokenListener | None = field(init=False, default=None)
    _offset_s: float = field(init=False, default=0.0)
    _next_s: float | None = field(init=False, default=None)  # where the fed audio ends

    def __post_init__(self) -> None:
        self.use(self.languages)

    def use(self, languages: Sequence[str]) -> None:
        """Listen for ``languages`` from the next audio on (the same ones again change nothing)."""
        wanted = tuple(languages)
        if wanted == self.languages and (self._listener is not None) == bool(wanted):
            return
        self._retire()
        self.languages = wanted
        self._listener = SpokenListener(wanted, self.recognisers) if wanted else None
        self._next_s = None

    def feed(self, start_s: float, samples: np.ndarray, tags: Sequence[WindowTags] = ()) -> list[SpokenHit]:
        """Take 16 kHz float32 audio starting at stream time ``start_s`` and the model's tags
        heard since the last call; returns the phrases heard, timed in stream time."""
        if self._listener is None:
            return []
        if self._next_s is None or abs(start_s - self._next_s) > _GAP_S:
            if self._next_s is not None:
                self.gaps += 1
                self._retire()
                self._listener = SpokenListener(self.languages, self.recognisers)
            self._offset_s = start_s
        self._next_s = start_s + samples.size / SAMPLE_RATE
        for end_s, window_tags in tags:
            self._listener.note_tags(end_s - self._offset_s, window_tags)
        return self._timed(self._listener.feed(samples))

    def flush(self) -> list[SpokenHit]:
        """The phrases of the last, still open speech segment (end of stream)."""
        if self._listener is None:
            return []
        return self._timed(self._listener.flush())

    def _timed(self, hits: list[SpokenHit]) -> list[SpokenHit]:
        if not self._offset_s:
            return hits
        return [replace(h, start_s=round(h.start_s + self._offset_s, 3), end_s=round(h.end_s + self._offset_s, 3))
                for h in hits]

    def _retire(self) -> None:
        """Count the current listener's figures before it is replaced."""
        listener = self._listener
        if listener is not None:
            self.cpu_s += listener.cpu_s
            self.heard_s += listener.gate.heard_s
            self.passed_s += listener.gate.passed_s
        self._listener = None

    def figures(self) -> tuple[float, float, float]:
        """(recogniser CPU seconds, seconds the gate looked at, seconds it passed), all listeners."""
        listener = self._listener
        if listener is None:
            return self.cpu_s, self.heard_s, self.passed_s
        return self.cpu_s + listener.cpu_s, self.heard_s + listener.gate.heard_s, self.passed_s + listener.gate.passed_s


def listen(audio: np.ndarray, languages: Sequence[str], frame_s: float = 0.2,
           tags: Sequence[WindowTags] = ()) -> tuple[list[SpokenHit], SpokenStream]:
    """The phrases heard in a whole recording (16 kHz float mono), fed in ``frame_s`` frames as a
    client streams it, and the stream (its ``figures``): how ``hearo eval`` listens to a file.
    ``tags``: the acoustic model's windows over the recording, in stream order; each reaches the
    listener with the frame its window ends in, as a session hands them on once judged."""
    stream = SpokenStream(tuple(languages))
    step = int(frame_s * SAMPLE_RATE)
    hits = []
    given = 0
    for lo in range(0, audio.size, step):
        end_s = min(lo + step, audio.size) / SAMPLE_RATE
        ready = given
        while ready < len(tags) and tags[ready][0] <= end_s + 1e-6:
            ready += 1
        hits += stream.feed(lo / SAMPLE_RATE, audio[lo: lo + step], tags[given:ready])
        given = ready
    return hits + stream.flush(), stream
