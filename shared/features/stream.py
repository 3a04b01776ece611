"""Incremental features for live audio: frames as samples arrive, model windows as frames arrive.

``LogMelStream`` turns a session's samples into normalised feature frames, each computed once;
``WindowStream`` groups those frames into model windows (2 s, one every hop); ``LiveWindows``
chains the two for a live session; ``clip_windows`` is the offline path (training, evaluation)
that yields the same windows for a whole clip. ``end_padding`` is the silence that ends a
stream or a clip so that the detector judges its last audio (``LiveWindows.finish``: the
gateway's rule at ``stop`` and ``hearo eval``'s, and the trainer's calibration). All dispatch
on ``FeatureSpec.name`` and call the batch modules' per-frame functions, so there is one
implementation of each feature.

Typical use in the gateway (one per session)::

    windows = LiveWindows(spec, hop_frames=spec.frames_for(0.5))
    for window in windows.push(samples):  # any chunk size, e.g. 20 ms
        ...  # window is [window_frames, n_mels]; windows.emitted / end_seconds() time it

Window timing: windows are numbered 0, 1, 2, ... in the order they are emitted; window ``i``
covers frames ``[end_frame(i) - window_frames, end_frame(i))`` with
``end_frame(i) = window_frames + i * hop_frames``. After a ``push`` that returned ``k`` windows,
their indices are ``emitted - k, ..., emitted - 1``. ``end_seconds(i)`` is the stream time (from
the first sample) at which window ``i`` became complete: the end of the audio it depends on
(for ``LiveWindows``, from the first sample received: silence ``finish`` puts before a short
stream does not move it).

Cost: the per-frame math for a 20 ms push is a few frames, so torch's fixed cost per op
dominates and computing frames on every 20 ms push costs more CPU than recomputing each 2 s
window (``bench/bench_features.py``). ``LiveWindows`` therefore holds raw samples until the next
window's last sample has arrived and computes the frames then, in one call: each frame is still
computed once, windows come out at the same sample, and the cost drops several-fold. These ops
are far too small for intra-op threads: run feature code with ``torch.set_num_threads(1)`` (on a
busy host, OpenMP wake-ups made a 20 ms push 100 times slower).
"""

from __future__ import annotations

import bisect
import math

import numpy as np
import torch
import torch.nn.functional as F

from shared.features import efficientat_mel, kaldi_fbank
from shared.features.spec import BEATS_FBANK, EFFICIENTAT_MEL, FeatureSpec

__all__ = [
    "LiveWindows", "LogMelStream", "WindowStream", "clip_windows", "end_padding", "samples_for_frames"
]

_KNOWN = (BEATS_FBANK.name, EFFICIENTAT_MEL.name)


def _check_spec(spec: FeatureSpec) -> None:
    if spec.name not in _KNOWN:
        raise ValueError(f"no feature implementation for spec {spec.name!r}; known: {', '.join(_KNOWN)}")


def samples_for_frames(spec: FeatureSpec, n_frames: int) -> int:
    """How many samples (at ``spec.sample_rate``) a ``LogMelStream`` needs to have emitted ``n_frames``.

    BEATs: frame ``f`` covers samples ``[160 f, 160 f + 400)``. EfficientAT: frame ``t`` is centred
    on sample ``320 t`` of the pre-emphasised signal and needs it up to ``320 t + 511``, i.e. raw
    samples up to ``320 t + 512``; frame 0 also needs 514 samples for its left reflect padding.
    """
    _check_spec(spec)
    if n_frames <= 0:
        return 0
    last = n_frames - 1
    if spec.name == BEATS_FBANK.name:
        return spec.frame_shift * last + spec.frame_length
    return max(efficientat_mel.MIN_SAMPLES, spec.frame_shift * last + efficientat_mel.N_FFT // 2 + 1)


class LogMelStream:
    """Normalised feature frames of one live mono stream, each frame computed once.

    ``push(samples)`` takes float32 1-D samples in [-1, 1] at ``spec.sample_rate`` (any length,
    0 included) and returns the frames completed by them, ``[n_new, n_mels]`` float32, time-major,
    normalised as the model expects (``beats_fbank``'s normalisation, or EfficientAT's
    ``(ln(mel + 1e-5) + 4.5) / 5``). Only the samples still needed by a future frame are kept, so
    memory stays bounded (under one frame plus the last chunk).

    BEATs (``beats_fbank``): frames are snip-edges Kaldi frames with per-frame DC removal, so the
    stream equals ``beats_fbank`` on the whole signal frame for frame (same arithmetic; BLAS may
    round the last bit differently when only a few frames are computed at once, < 1e-6).

    EfficientAT (``efficientat_mel``): frame ``t`` is centred on sample ``320 t`` of the
    pre-emphasised signal and is emitted once the samples up to its right edge (``320 t + 512`` of
    the raw signal) have arrived. The stream's start is reflect-padded exactly as
    ``efficientat_logmel`` pads a clip's start, so every frame equals the batch function's frame
    on the same signal, except at a clip's end: the batch function reflect-pads the end and returns
    ``1 + (N - 1) // 320`` frames, the last one or two of which use mirrored samples; a stream has
    no end, so it returns those frames later, computed from the real samples that follow (after
    ``N`` samples it has emitted ``1 + (N - 513) // 320``).

    Each push costs a fixed ~0.1-0.2 ms of torch op overhead, so a live session should feed
    ``LiveWindows`` (which pushes here once per hop) rather than call this every 20 ms.
    """

    def __init__(self, spec: FeatureSpec) -> None:
        _check_spec(spec)
        self.spec = spec
        self._beats = spec.name == BEATS_FBANK.name
        # BEATs: int16-scaled samples from the start of the next frame on.
        self._pending = torch.zeros(0)
        # EfficientAT: pre-emphasised samples (reflect-padded at the start once 513 exist) from
        # the start of the next frame on, plus the last raw sample to pre-emphasise the next chunk.
        self._emphasised = np.zeros(0, np.float32)
        self._started = False
        self._last_raw: np.float32 | None = None

    @property
    def buffered_samples(self) -> int:
        """Samples held for frames not yet complete (bounded; exposed for tests and metrics)."""
        return int(self._pending.numel()) + self._emphasised.size

    def push(self, samples: np.ndarray) -> torch.Tensor:
        """Feed ``samples``; return the ``[n_new, n_mels]`` frames they complete (possibly none)."""
        # A copy: the caller's buffer may be read-only (np.frombuffer) or reused after the call.
        chunk = np.array(samples, dtype=np.float32)
        if chunk.ndim != 1:
            raise ValueError(f"samples must be 1-D mono, got shape {chunk.shape}")
        if self._beats:
            return self._push_beats(torch.from_numpy(chunk))
        return self._push_efficientat(chunk)

    def _push_beats(self, signal: torch.Tensor) -> torch.Tensor:
        length, shift = self.spec.frame_length, self.spec.frame_shift
        self._pending = torch.cat([self._pending, signal * kaldi_fbank.INT16_SCALE])
        if self._pending.numel() < length:
            return torch.zeros(0, self.spec.n_mels)
        frames = self._pending.unfold(0, length, shift)
        self._pending = self._pending[frames.shape[0] * shift :].clone()
        return kaldi_fbank.beats_normalise(kaldi_fbank.fbank_from_frames(frames))

    def _push_efficientat(self, chunk: np.ndarray) -> torch.Tensor:
        if chunk.size == 0:
            return torch.zeros(0, self.spec.n_mels)
        # numpy, not torch: a hop's few small ops cost more in torch's per-op overhead than in
        # arithmetic (the same float32 ops as ``efficientat_mel.preemphasis``), written straight
        # after the samples kept, carrying the last raw sample over.
        coefficient = np.float32(efficientat_mel.PREEMPHASIS)
        kept = self._emphasised.size
        last_raw = self._last_raw
        first = 0 if last_raw is None else 1
        emphasised = np.empty(kept + chunk.size - 1 + first, np.float32)
        emphasised[:kept] = self._emphasised
        if last_raw is not None:
            emphasised[kept] = chunk[0] - coefficient * last_raw
        np.multiply(chunk[:-1], coefficient, out=emphasised[kept + first :])
        np.subtract(chunk[1:], emphasised[kept + first :], out=emphasised[kept + first :])
        self._last_raw = chunk[-1]
        self._emphasised = emphasised
        if not self._started:
            if self._emphasised.size <= efficientat_mel.CENTRE_PAD:
                return torch.zeros(0, self.spec.n_mels)
            # The same start padding as efficientat_logmel applies to a clip.
            self._emphasised = np.pad(self._emphasised, (efficientat_mel.CENTRE_PAD, 0), mode="reflect")
            self._started = True
        frames = efficientat_mel.logmel_frames(self._emphasised)
        self._emphasised = self._emphasised[self.spec.frame_shift * frames.shape[0] :].copy()
        return torch.from_numpy(frames)


class WindowStream:
    """Model windows ``[window_frames, n_mels]`` over a stream of frames, one every ``hop_frames``.

    The first window is emitted once ``spec.window_frames`` frames exist (198 for BEATs, 200 for
    EfficientAT), then one each time ``hop_frames`` more have arrived. Only the frames a future
    window needs are kept (fewer than ``window_frames`` between pushes). Timing: see the module
    docstring (``emitted``, ``end_frame``, ``end_seconds``).
    """

    def __init__(self, spec: FeatureSpec, hop_frames: int) -> None:
        _check_spec(spec)
        if hop_frames < 1:
            raise ValueError(f"hop_frames must be >= 1, got {hop_frames}")
        self.spec = spec
        self.hop_frames = hop_frames
        # numpy: a hop's concatenate and window copy cost a third of torch's cat and clones.
        self._frames = np.zeros((0, spec.n_mels), np.float32)
        self._first_frame = 0  # stream index of self._frames[0]
        self._emitted = 0

    @property
    def emitted(self) -> int:
        """Windows emitted so far (the next window's index)."""
        return self._emitted

    @property
    def buffered_frames(self) -> int:
        """Frames held for future windows (always < window_frames after a push)."""
        return int(self._frames.shape[0])

    def end_frame(self, index: int) -> int:
        """Stream index one past the last frame of window ``index``."""
        return self.spec.window_frames + index * self.hop_frames

    def end_seconds(self, index: int) -> float:
        """Stream time (seconds from the first sample) when window ``index`` became complete."""
        return samples_for_frames(self.spec, self.end_frame(index)) / self.spec.sample_rate

    def push(self, frames: torch.Tensor) -> list[torch.Tensor]:
        """Feed ``frames`` ``[n, n_mels]``; return the windows completed by them, oldest first."""
        if frames.dim() != 2 or frames.shape[1] != self.spec.n_mels:
            raise ValueError(f"frames must be [n, {self.spec.n_mels}], got {list(frames.shape)}")
        self._frames = np.concatenate([self._frames, frames.detach().to(torch.float32).cpu().numpy()])
        available = self._first_frame + self._frames.shape[0]
        windows = []
        while (end := self.end_frame(self._emitted)) <= available:
            start = end - self.spec.window_frames - self._first_frame
            windows.append(torch.from_numpy(self._frames[start : start + self.spec.window_frames].copy()))
            self._emitted += 1
        # Drop what the next window no longer needs (all of it when the hop skips frames); a
        # view: the next push's concatenate copies what is kept.
        keep_from = self.end_frame(self._emitted) - self.spec.window_frames
        drop = min(max(keep_from - self._first_frame, 0), self._frames.shape[0])
        self._frames = self._frames[drop:]
        self._first_frame += drop
        return windows


class LiveWindows:
    """Model windows of one live session: ``LogMelStream`` then ``WindowStream``, batched per hop.

    ``push(samples)`` takes float32 1-D samples in [-1, 1] at ``spec.sample_rate`` (any length)
    and returns the windows ``[window_frames, n_mels]`` completed by them, oldest first: exactly
    the windows, at exactly the samples, that pushing every chunk through ``LogMelStream`` and
    ``WindowStream`` gives. Samples are held until the next window's last sample has arrived (at
    most one window's worth before the first window, one hop's worth after it, plus the last
    chunk), then all pending frames are computed in one call. ``finish`` ends the stream so
    that the detector judges its end (``end_padding``).
    """

    def __init__(self, spec: FeatureSpec, hop_frames: int) -> None:
        self._features = LogMelStream(spec)
        self._windows = WindowStream(spec, hop_frames)
        self._held: list[np.ndarray] = []
        self._received = 0
        self._lead = 0  # silence ``finish`` put before the first sample
        self._next_window_at = samples_for_frames(spec, self._windows.end_frame(0))  # samples received

    @property
    def emitted(self) -> int:
        """Windows emitted so far (the next window's index)."""
        return self._windows.emitted

    def end_frame(self, index: int) -> int:
        """Stream index one past the last frame of window ``index``."""
        return self._windows.end_frame(index)

    def end_seconds(self, index: int) -> float:
        """Stream time (seconds from the first sample) when window ``index`` became complete."""
        return self._windows.end_seconds(index) - self._lead / self._windows.spec.sample_rate

    @property
    def buffered_samples(self) -> int:
        """Samples held back plus those the feature stream keeps for its next frame."""
        return sum(len(chunk) for chunk in self._held) + self._features.buffered_samples

    def push(self, samples: np.ndarray) -> list[torch.Tensor]:
        """Feed ``samples``; return the windows they complete (usually none, at most a few)."""
        chunk = np.array(samples, dtype=np.float32)
        if chunk.ndim != 1:
            raise ValueError(f"samples must be 1-D mono, got shape {chunk.shape}")
        self._held.append(chunk)
        self._received += len(chunk)
        if self._received < self._next_window_at:
            return []
        held, self._held = np.concatenate(self._held), []
        windows = self._windows.push(self._features.push(held))
        self._next_window_at = samples_for_frames(self._windows.spec, self._windows.end_frame(self._windows.emitted))
        return windows

    def finish(self, smoothing_windows: int) -> list[torch.Tensor]:
        """End the stream with ``end_padding``'s silence, for a detector that averages
        ``smoothing_windows`` windows; return the windows it completes. Push nothing afterwards."""
        spec = self._windows.spec
        before, after = end_padding(spec, self._windows.hop_frames, smoothing_windows, self._received)
        if before:  # only for a stream shorter than a window, whose samples are all still held
            self._held.insert(0, np.zeros(before, np.float32))
            self._received += before
            self._lead = before
        return self.push(np.zeros(after, np.float32))


def clip_windows(spec: FeatureSpec, waveform: np.ndarray | torch.Tensor, hop_frames: int) -> torch.Tensor:
    """The windows a live stream of ``waveform`` would produce, ``[W, window_frames, n_mels]``.

    ``waveform`` is 1-D mono at ``spec.sample_rate``. This runs the streaming classes over the
    whole clip at once, so training and evaluation see exactly what the gateway sends. Trailing
    frames that do not complete another hop are dropped, as in a stream. A clip too short for one
    window (fewer than ``samples_for_frames(spec, window_frames)`` samples: 31,920 for BEATs, whose
    198 frames leave the last 80 samples of 2 s unused, and 64,193 for EfficientAT, whose 200th
    frame needs 193 samples past 2 s) is zero-padded at the end (digital silence) to exactly that
    length, giving exactly one window.
    """
    if isinstance(waveform, torch.Tensor):
        waveform = waveform.detach().cpu().numpy()
    samples = np.asarray(waveform, dtype=np.float32)
    if samples.ndim != 1:
        raise ValueError(f"waveform must be 1-D mono, got shape {samples.shape}")
    needed = samples_for_frames(spec, spec.window_frames)
    if samples.shape[0] < needed:
        samples = np.pad(samples, (0, needed - samples.shape[0]))
    return torch.stack(LiveWindows(spec, hop_frames).push(samples))


def end_padding(spec: FeatureSpec, hop_frames: int, smoothing_windows: int, length: int) -> tuple[int, int]:
    """Samples of digital silence (before, after) that end a stream or clip of ``length``
    samples at ``spec.sample_rate`` so that a detector averaging ``smoothing_windows``
    windows judges its end: the silence after completes the first window that holds the last
    sample and the ``smoothing_windows - 1`` after it. (0, 0) for an empty stream.

    The one rule for the end of audio (``np.pad(clip, end_padding(...))`` pads a clip by it):
    the gateway ends every stream so at ``stop`` or a disconnect, and ``hearo eval`` every
    clip, both through ``LiveWindows.finish``, so a file gets the same decision streamed and
    evaluated.

    Each of those windows holds at least the last ``window - smoothing_windows x hop`` of
    audio (about 0.5 s with 2 s windows, 3 of them and a 0.5 s hop; 1 s when the audio ends
    where a window ends). A stream shorter than a window, of which no window is cut yet, is
    padded centred instead (half the silence before it, the odd sample after) to the
    detector's minimum ``window + (smoothing_windows - 1) x hop``: so a short sound lies in
    every window the smoothing averages, as padded at the end it would lie only in the first.
    Once a window is cut, silence can only follow the audio.
    """
    if smoothing_windows < 1:
        raise ValueError(f"smoothing_windows must be >= 1, got {smoothing_windows}")
    if length <= 0:
        return 0, 0

    def window_end(index: int) -> int:
        return samples_for_frames(spec, spec.window_frames + index * hop_frames)

    # Window i ends past sample i x hop_frames x frame_shift: the first to reach ``length`` is in this range.
    candidates = range(math.ceil(length / (spec.frame_shift * hop_frames)) + 1)
    first = bisect.bisect_left(candidates, length, key=window_end)
    missing = window_end(first + smoothing_windows - 1) - length
    if length < window_end(0):
        return missing // 2, missing - missing // 2
    return 0, missing
