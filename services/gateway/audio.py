"""A session's audio path: PCM16 frames in, ring-buffer audio and model windows out.

Per binary frame: decode PCM16 -> downmix to mono -> two streaming soxr resamplers from the
client's rate, one to 16 kHz for the ring buffer (the incident clip) and one to the model's
feature rate -> the spec's streaming log-mel (each frame computed once) -> 2 s windows every
hop. Both resamplers start from the client's rate because going through 16 kHz would cut a
32 kHz model's input at 8 kHz, and alarm harmonics live above it. When a target rate equals
the client's (or the model's rate is 16 kHz) the audio is reused, not resampled twice.
The 16 kHz audio also feeds the alarm pattern detector when the session has one. At the end of
the stream (``hear_end``) digital silence completes the model windows that hold its last audio
(``LiveWindows.finish``), so the detector judges the end of every stream.

What the pipeline hears comes out as one stream, in stream order (``Heard``): each alarm
pattern match just before the first window ending at or after it, and those heard after the
last window at the end. So a session passes one channel on to its detector. Each window also
says when its audio arrived (the gateway's wall clock) and how loud its audio was (dBFS, from
the ring): what a household's devices compare (``shared.household``).
"""

from __future__ import annotations

import math
import time
from collections import deque
from dataclasses import dataclass

import numpy as np
import soxr
import torch

from shared.alarm_patterns import AlarmPatternDetector, AlarmPatternMatch
from services.gateway.ring_buffer import RingBuffer
from shared.features.spec import FeatureSpec
from shared.features.stream import LiveWindows

RING_SAMPLE_RATE = 16_000
_INT16_SCALE = 1.0 / 32768.0
# The level of digital silence (a mean square of 0), and of a window with no audio held.
SILENCE_DBFS = -120.0


def decode_pcm16(data: bytes, channels: int) -> np.ndarray:
    """Little-endian signed 16-bit PCM (interleaved when stereo) as float32 mono in [-1, 1).

    Stereo is averaged to mono. Raises ValueError unless ``data`` holds whole sample frames.
    """
    frame_bytes = 2 * channels
    if len(data) % frame_bytes:
        raise ValueError(f"{len(data)} bytes is not a whole number of {frame_bytes}-byte sample frames")
    samples = np.frombuffer(data, dtype="<i2").astype(np.float32)
    samples *= _INT16_SCALE
    if channels > 1:
        samples = samples.reshape(-1, channels).mean(axis=1, dtype=np.float32)
    return samples


class Resampler:
    """Streaming resampling of float32 mono with soxr (high quality), or a pass-through.

    Output is delayed by the filter's latency; ``flush`` returns the rest, after which the
    total output length is ``round(input_length * out_rate / in_rate)``.
    """

    def __init__(self, in_rate: int, out_rate: int) -> None:
        self.in_rate = in_rate
        self.out_rate = out_rate
        self._stream = (
            None if in_rate == out_rate else soxr.ResampleStream(in_rate, out_rate, 1, dtype="float32")
        )

    def push(self, samples: np.ndarray) -> np.ndarray:
        if self._stream is None:
            return samples
        return self._stream.resample_chunk(samples)

    def flush(self) -> np.ndarray:
        """The samples still inside the filter; call once, at the end of the stream."""
        if self._stream is None:
            return np.zeros(0, dtype=np.float32)
        return self._stream.resample_chunk(np.zeros(0, dtype=np.float32), last=True)


@dataclass(frozen=True)
class Window:
    """One model window ``[window_frames, n_mels]`` and the stream time its audio ends at;
    ``heard_at``: when the frame that completed it arrived (epoch seconds); ``level_dbfs``:
    the loudness of its audio (RMS re full scale)."""

    features: torch.Tensor
    end_s: float
    heard_at: float = 0.0
    level_dbfs: float = SILENCE_DBFS


# What a pipeline emits, in stream order: model windows and alarm pattern matches.
Heard = Window | AlarmPatternMatch


class AudioPipeline:
    """One session's audio path from PCM16 bytes to model windows (see the module docstring).

    ``hear`` takes binary frames in arrival order and returns what they complete: windows,
    and the pattern matches due before them, in stream order; ``hear_end`` ends the stream
    and returns the rest, the windows padded for the detector. Times are stream seconds
    since the first sample; the ring buffer and ``alarm_patterns`` (given the ring's 16 kHz
    audio) share that clock.
    """

    def __init__(
        self,
        sample_rate: int,
        channels: int,
        spec: FeatureSpec,
        hop_frames: int,
        ring_seconds: float,
        alarm_patterns: AlarmPatternDetector | None = None,
    ) -> None:
        self.sample_rate = sample_rate
        self.channels = channels
        self.ring = RingBuffer(ring_seconds, RING_SAMPLE_RATE)
        self._to_ring = Resampler(sample_rate, RING_SAMPLE_RATE)
        # A 16 kHz model reads the ring's audio; any other rate gets its own resampler.
        self._to_model = None if spec.sample_rate == RING_SAMPLE_RATE else Resampler(sample_rate, spec.sample_rate)
        # LiveWindows computes each frame once, batched per window rather than per 20 ms push:
        # torch's per-call overhead made per-push framing several times dearer (bench_features).
        self._windows = LiveWindows(spec, hop_frames)
        self._window_s = spec.window_seconds
        self._received = 0
        self._alarm_patterns = alarm_patterns
        self._due: deque[AlarmPatternMatch] = deque()  # heard, waiting for the window they precede
        # 16 kHz audio not yet in the ring or the alarm pattern detector: both take it when a
        # model window completes, a hop's worth in one call instead of a call per frame. Their
        # matches are told with the windows anyway, so no match comes later (see the module
        # docstring); the ring (clips, spoken words) lags the stream by at most a hop.
        self._held: list[np.ndarray] = []

    @property
    def stream_time_s(self) -> float:
        """Seconds of audio received so far."""
        return self._received / self.sample_rate

    def hear(self, data: bytes) -> list[Heard]:
        """Decode and process one binary frame; raises ValueError if it is not whole sample frames."""
        samples = decode_pcm16(data, self.channels)
        self._received += len(samples)
        ring_audio = self._to_ring.push(samples)
        model_audio = ring_audio if self._to_model is None else self._to_model.push(samples)
        windows = self._windows.push(model_audio)
        self._held.append(ring_audio)
        if not windows:
            return []
        self._release_held()
        return self._in_order(self._timed(windows))

    def hear_end(self, smoothing_windows: int) -> list[Heard]:
        """End of stream: run the resamplers' tails through, then end the model's audio with
        the silence a detector averaging ``smoothing_windows`` windows needs to judge its end
        (``LiveWindows.finish``); every match still due comes last. Hear nothing afterwards.
        The silence is model input only: it is not in ``stream_time_s``, the ring (the
        incident clip) or the alarm pattern detector.
        """
        ring_audio = self._to_ring.flush()
        model_audio = ring_audio if self._to_model is None else self._to_model.flush()
        self._held.append(ring_audio)
        windows = self._windows.push(model_audio)
        windows += self._windows.finish(smoothing_windows)
        self._release_held()
        heard = self._in_order(self._timed(windows))
        heard += self._due
        self._due.clear()
        return heard

    def _release_held(self) -> None:
        """Hand the held 16 kHz audio to the ring and the alarm pattern detector."""
        audio = self._held[0] if len(self._held) == 1 else np.concatenate(self._held)
        self._held.clear()
        self.ring.append(audio)
        if self._alarm_patterns is not None:
            self._due += self._alarm_patterns.push(audio)

    def _in_order(self, windows: list[Window]) -> list[Heard]:
        """``windows``, each after the matches due by its end."""
        heard: list[Heard] = []
        for window in windows:
            while self._due and self._due[0].stream_time_s <= window.end_s:
                heard.append(self._due.popleft())
            heard.append(window)
        return heard

    def _timed(self, windows: list[torch.Tensor]) -> list[Window]:
        """The windows just emitted, with the stream time each ends at, when, and how loud."""
        first, now = self._windows.emitted - len(windows), time.time()
        timed = []
        for i, features in enumerate(windows):
            end_s = self._windows.end_seconds(first + i)
            timed.append(Window(features, end_s, now, _dbfs(self.ring.mean_square(self._window_s, end_s))))
        return timed


def _dbfs(mean_square: float) -> float:
    return max(SILENCE_DBFS, 10.0 * math.log10(mean_square)) if mean_square > 0 else SILENCE_DBFS
