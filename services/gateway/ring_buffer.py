"""The last few tens of seconds of a session's raw audio, kept for the incident clip.

Stream time is seconds of audio since the session started at the buffer's rate. The clip an
incident archives (10 s before to 20 s after the detection) is cut with ``snapshot`` once
the audio after the detection has arrived, so the buffer holds at least 30 s.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class AudioClip:
    """Samples (float32 mono) starting at ``start_s`` in stream time."""

    samples: np.ndarray
    sample_rate: int
    start_s: float

    @property
    def duration_s(self) -> float:
        return len(self.samples) / self.sample_rate


class RingBuffer:
    """A fixed-size circular buffer of float32 mono audio.

    ``append`` copies the new samples in (at most two slice assignments, no reallocation), so
    its cost depends only on how many samples arrive, never on how many are held.
    """

    def __init__(self, seconds: float, sample_rate: int) -> None:
        if seconds <= 0 or sample_rate <= 0:
            raise ValueError("seconds and sample_rate must be positive")
        self.sample_rate = sample_rate
        self.capacity = round(seconds * sample_rate)
        self._data = np.zeros(self.capacity, dtype=np.float32)
        self._written = 0  # samples appended since the start; the write position is this mod capacity

    @property
    def total_samples(self) -> int:
        """Samples appended since the session started (held or already overwritten)."""
        return self._written

    @property
    def end_s(self) -> float:
        """Stream time just after the newest sample."""
        return self._written / self.sample_rate

    def append(self, samples: np.ndarray) -> None:
        """Add mono samples at the buffer's rate; the oldest are overwritten when it is full."""
        samples = np.asarray(samples, dtype=np.float32).reshape(-1)
        n = len(samples)
        if n >= self.capacity:
            samples = samples[n - self.capacity :]
            start = (self._written + n - self.capacity) % self.capacity
        else:
            start = self._written % self.capacity
        first = min(len(samples), self.capacity - start)
        self._data[start : start + first] = samples[:first]
        self._data[: len(samples) - first] = samples[first:]
        self._written += n

    def snapshot(self, seconds_before: float, end_s: float | None = None) -> AudioClip:
        """A copy of the audio from ``end_s - seconds_before`` to ``end_s`` (default: now).

        The clip is cut to what is held: it starts later when older audio was overwritten
        and ends earlier when ``end_s`` is in the future, so check ``start_s`` and
        ``duration_s``. ``end_s`` before the oldest held sample gives an empty clip.
        """
        if seconds_before < 0:
            raise ValueError(f"seconds_before must be >= 0, got {seconds_before}")
        wanted_end = self._written if end_s is None else round(end_s * self.sample_rate)
        oldest = max(0, self._written - self.capacity)
        start = max(oldest, wanted_end - round(seconds_before * self.sample_rate))
        end = max(start, min(self._written, wanted_end))
        indices = np.arange(start, end) % self.capacity
        return AudioClip(self._data[indices], self.sample_rate, start / self.sample_rate)

    def mean_square(self, seconds_before: float, end_s: float) -> float:
        """The mean squared sample from ``end_s - seconds_before`` to ``end_s``, over what is
        held (as ``snapshot`` cuts it), 0.0 when nothing is; reads in place, copies nothing."""
        wanted_end = round(end_s * self.sample_rate)
        start = max(self._written - self.capacity, 0, wanted_end - round(seconds_before * self.sample_rate))
        count = min(self._written, wanted_end) - start
        if count <= 0:
            return 0.0
        first = self._data[start % self.capacity :][:count]
        rest = self._data[: count - len(first)]
        return (float(np.dot(first, first)) + float(np.dot(rest, rest))) / count
