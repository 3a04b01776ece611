"""Streaming features equal the batch functions; windows come at the right frames; buffers stay bounded."""

from __future__ import annotations

from collections.abc import Iterable

import numpy as np
import pytest
import torch

from shared.features.efficientat_mel import efficientat_logmel
from shared.features.kaldi_fbank import beats_fbank
from shared.features.spec import BEATS_FBANK, EFFICIENTAT_MEL, FeatureSpec
from shared.features.stream import (
    LiveWindows,
    LogMelStream,
    WindowStream,
    clip_windows,
    end_padding,
    samples_for_frames,
)

SPECS = [BEATS_FBANK, EFFICIENTAT_MEL]
IDS = [spec.name for spec in SPECS]
HOP = 50


def _signal(spec: FeatureSpec, seconds: float, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    n = int(seconds * spec.sample_rate)
    t = np.arange(n) / spec.sample_rate
    x = 0.2 * np.sin(2 * np.pi * 700 * t) * (1 + np.sin(2 * np.pi * 3 * t)) + 0.05 * rng.standard_normal(n)
    return x.astype(np.float32)


def _batch_frames(spec: FeatureSpec, x: np.ndarray) -> torch.Tensor:
    """The batch function's normalised frames, time-major [T, n_mels]."""
    waveform = torch.from_numpy(x)[None]
    if spec is BEATS_FBANK:
        return beats_fbank(waveform)[0]
    return efficientat_logmel(waveform)[0].T


def _stream_frames(stream: LogMelStream, x: np.ndarray, sizes: Iterable[int]) -> torch.Tensor:
    out, start = [], 0
    for size in sizes:
        if start >= len(x):
            break
        frames = stream.push(x[start : start + size])
        assert frames.dtype == torch.float32 and frames.shape[1] == stream.spec.n_mels
        # Never more than what a frame needs plus the pre-emphasis/reflect lead-in.
        assert stream.buffered_samples < 1024
        out.append(frames)
        start += size
    assert start >= len(x)
    return torch.cat(out)


def _streamed_frame_count(spec: FeatureSpec, n: int) -> int:
    if spec is BEATS_FBANK:
        return 1 + (n - 400) // 160 if n >= 400 else 0
    return 1 + (n - 513) // 320 if n >= 514 else 0


CHUNKINGS = {
    "1": (0.08, [1] * 4000),
    "7": (0.3, [7] * 2000),
    "1000": (2.2, [1000] * 100),
    "hop": (1.1, [160, 320] * 300),
    "20ms": (2.5, [640] * 200),
    "mixed": (3.1, [0, 1, 2, 399, 400, 401, 511, 512, 513, 1023, 1024, 5000, 13] * 100),
    "whole": (2.0, [10**9]),
}


@pytest.mark.parametrize("spec", SPECS, ids=IDS)
@pytest.mark.parametrize("chunking", list(CHUNKINGS))
def test_stream_equals_batch(spec: FeatureSpec, chunking: str) -> None:
    seconds, sizes = CHUNKINGS[chunking]
    x = _signal(spec, seconds)
    streamed = _stream_frames(LogMelStream(spec), x, sizes)
    batch = _batch_frames(spec, x)
    assert streamed.shape[0] == _streamed_frame_count(spec, len(x))
    if spec is BEATS_FBANK:
        assert streamed.shape == batch.shape
    # Same arithmetic; BLAS may round the last bit differently for a handful of frames (< 1e-6).
    torch.testing.assert_close(streamed, batch[: streamed.shape[0]], rtol=0, atol=1e-5)


def test_random_chunks_equal_one_push() -> None:
    rng = np.random.default_rng(7)
    for spec in SPECS:
        x = _signal(spec, 1.7, seed=1)
        sizes = rng.integers(0, 3000, size=2000).tolist()
        chunked = _stream_frames(LogMelStream(spec), x, sizes)
        whole = LogMelStream(spec).push(x)
        torch.testing.assert_close(chunked, whole, rtol=0, atol=1e-5)


def test_efficientat_clip_end_frames_come_later_from_real_samples() -> None:
    """The batch function reflects a clip's end; the stream waits for the samples that follow."""
    spec = EFFICIENTAT_MEL
    x = _signal(spec, 1.5)
    cut = 32_000
    stream = LogMelStream(spec)
    first = stream.push(x[:cut])
    clip = _batch_frames(spec, x[:cut])
    assert clip.shape[0] == 100 and first.shape[0] == 99
    torch.testing.assert_close(first, clip[:99], rtol=0, atol=1e-5)
    later = stream.push(x[cut:])
    full = _batch_frames(spec, x)
    torch.testing.assert_close(torch.cat([first, later]), full[: 99 + later.shape[0]], rtol=0, atol=1e-5)
    # Frame 99 of the clip used mirrored samples; the stream's frame 99 used the real ones.
    assert (later[0] - clip[99]).abs().max().item() > 1e-2


@pytest.mark.parametrize("spec", SPECS, ids=IDS)
@pytest.mark.parametrize("n_frames", [1, 2, 3, 198, 200])
def test_samples_for_frames_is_the_emission_point(spec: FeatureSpec, n_frames: int) -> None:
    needed = samples_for_frames(spec, n_frames)
    x = _signal(spec, needed / spec.sample_rate + 0.01)[:needed]
    stream = LogMelStream(spec)
    assert stream.push(x[:-1]).shape[0] == n_frames - 1
    assert stream.push(x[-1:]).shape[0] == 1
    assert samples_for_frames(spec, 0) == 0


def test_samples_for_frames_values() -> None:
    assert samples_for_frames(BEATS_FBANK, 198) == 31_920
    assert samples_for_frames(EFFICIENTAT_MEL, 1) == 514
    assert samples_for_frames(EFFICIENTAT_MEL, 200) == 64_193


@pytest.mark.parametrize("spec", SPECS, ids=IDS)
def test_empty_and_tiny_pushes(spec: FeatureSpec) -> None:
    stream = LogMelStream(spec)
    for chunk in (np.zeros(0, np.float32), np.zeros(1, np.float32), np.zeros(0, np.float32)):
        frames = stream.push(chunk)
        assert frames.shape == (0, spec.n_mels) and frames.dtype == torch.float32
    assert stream.push(np.zeros(spec.sample_rate, np.float32)).shape[0] > 0


def test_accepts_read_only_and_float64_buffers() -> None:
    pcm = (np.arange(16_000) % 100 / 100.0).astype(np.float32).tobytes()
    read_only = np.frombuffer(pcm, dtype=np.float32)
    a = LogMelStream(BEATS_FBANK).push(read_only)
    b = LogMelStream(BEATS_FBANK).push(read_only.astype(np.float64))
    assert a.shape == (98, 128) and torch.equal(a, b)


def test_rejects_bad_input() -> None:
    with pytest.raises(ValueError, match="1-D"):
        LogMelStream(BEATS_FBANK).push(np.zeros((2, 100), np.float32))
    unknown = FeatureSpec("mfcc", 16_000, 40, 400, 160, 198, "none")
    with pytest.raises(ValueError, match="no feature implementation"):
        LogMelStream(unknown)
    with pytest.raises(ValueError, match="no feature implementation"):
        WindowStream(unknown, HOP)
    with pytest.raises(ValueError, match="hop_frames"):
        WindowStream(BEATS_FBANK, 0)
    with pytest.raises(ValueError, match=r"\[n, 128\]"):
        WindowStream(BEATS_FBANK, HOP).push(torch.zeros(5, 64))


@pytest.mark.parametrize("spec", SPECS, ids=IDS)
def test_window_timing_and_content(spec: FeatureSpec) -> None:
    frames = torch.randn(spec.window_frames + 3 * HOP + 20, spec.n_mels)
    windows = WindowStream(spec, HOP)
    emitted_at = []
    for i in range(frames.shape[0]):
        out = windows.push(frames[i : i + 1])
        emitted_at += [i + 1] * len(out)
        for k, window in enumerate(out):
            index = windows.emitted - len(out) + k
            end = windows.end_frame(index)
            assert end == i + 1
            assert torch.equal(window, frames[end - spec.window_frames : end])
        assert windows.buffered_frames < spec.window_frames
    first = spec.window_frames  # 198 for BEATs, 200 for EfficientAT
    assert emitted_at == [first, first + HOP, first + 2 * HOP, first + 3 * HOP]
    assert windows.emitted == 4


@pytest.mark.parametrize("spec", SPECS, ids=IDS)
def test_window_chunking_does_not_matter(spec: FeatureSpec) -> None:
    frames = torch.randn(700, spec.n_mels)
    reference = WindowStream(spec, HOP).push(frames)
    assert len(reference) == 1 + (700 - spec.window_frames) // HOP
    for size in (1, 37, 199, 500):
        windows = WindowStream(spec, HOP)
        got = [w for start in range(0, 700, size) for w in windows.push(frames[start : start + size])]
        assert len(got) == len(reference) and all(torch.equal(a, b) for a, b in zip(got, reference))


def test_hop_longer_than_window_skips_frames() -> None:
    spec = EFFICIENTAT_MEL
    frames = torch.arange(1000, dtype=torch.float32)[:, None].expand(1000, spec.n_mels)
    windows = WindowStream(spec, 250)
    got = [w for start in range(0, 1000, 30) for w in windows.push(frames[start : start + 30])]
    assert [int(w[0, 0]) for w in got] == [0, 250, 500, 750]
    assert windows.buffered_frames < spec.window_frames


@pytest.mark.parametrize("spec", SPECS, ids=IDS)
def test_window_end_seconds_is_when_it_is_emitted(spec: FeatureSpec) -> None:
    windows = WindowStream(spec, HOP)
    end = round(windows.end_seconds(1) * spec.sample_rate)
    assert end == samples_for_frames(spec, spec.window_frames + HOP)
    x = _signal(spec, end / spec.sample_rate + 0.01)[:end]
    features = LogMelStream(spec)
    assert len(windows.push(features.push(x[:-1]))) == 1
    assert len(windows.push(features.push(x[-1:]))) == 1 and windows.emitted == 2
    assert windows.end_seconds(0) == pytest.approx({16_000: 1.995, 32_000: 64_193 / 32_000}[spec.sample_rate])


@pytest.mark.parametrize("spec", SPECS, ids=IDS)
def test_clip_windows_equal_live_windows(spec: FeatureSpec) -> None:
    x = _signal(spec, 3.3, seed=5)
    features, windows = LogMelStream(spec), WindowStream(spec, HOP)
    chunk = spec.sample_rate // 50  # 20 ms, like a live client
    live = [w for start in range(0, len(x), chunk) for w in windows.push(features.push(x[start : start + chunk]))]
    offline = clip_windows(spec, x, HOP)
    n_frames = _streamed_frame_count(spec, len(x))
    assert offline.shape == (1 + (n_frames - spec.window_frames) // HOP, spec.window_frames, spec.n_mels)
    assert len(live) == offline.shape[0]
    torch.testing.assert_close(torch.stack(live), offline, rtol=0, atol=1e-5)
    torch.testing.assert_close(clip_windows(spec, torch.from_numpy(x), HOP), offline, rtol=0, atol=0)


@pytest.mark.parametrize("spec", SPECS, ids=IDS)
def test_short_clip_is_zero_padded_to_one_window(spec: FeatureSpec) -> None:
    needed = samples_for_frames(spec, spec.window_frames)
    x = _signal(spec, 0.7)
    windows = clip_windows(spec, x, HOP)
    assert windows.shape == (1, spec.window_frames, spec.n_mels)
    padded = np.concatenate([x, np.zeros(needed - len(x), np.float32)])
    torch.testing.assert_close(windows, clip_windows(spec, padded, HOP), rtol=0, atol=0)
    # Exactly one window's worth gives one window; a 2 s clip too (zero-padded for EfficientAT).
    assert clip_windows(spec, _signal(spec, 3.0)[:needed], HOP).shape[0] == 1
    assert clip_windows(spec, _signal(spec, 2.0), HOP).shape[0] == 1


@pytest.mark.parametrize("spec", SPECS, ids=IDS)
def test_live_windows_match_the_two_streams_push_for_push(spec: FeatureSpec) -> None:
    x = _signal(spec, 3.4, seed=9)
    sizes = np.random.default_rng(2).integers(0, spec.sample_rate // 10, size=1000).tolist()
    live = LiveWindows(spec, HOP)
    features, windows = LogMelStream(spec), WindowStream(spec, HOP)
    start, count = 0, 0
    for size in sizes:
        chunk = x[start : start + size]
        expected = windows.push(features.push(chunk))
        got = live.push(chunk)
        # Same windows, returned by the same push: batching frames per hop adds no latency.
        assert len(got) == len(expected)
        for a, b in zip(got, expected):
            torch.testing.assert_close(a, b, rtol=0, atol=1e-5)
        count += len(got)
        # Held back: the first window's samples, then at most one hop's, plus the last chunk.
        span = samples_for_frames(spec, spec.window_frames) if live.emitted == 0 else HOP * spec.frame_shift
        assert live.buffered_samples <= span + size + 1024
        start += size
        if start >= len(x):
            break
    assert count == live.emitted == windows.emitted >= 3
    assert live.end_seconds(live.emitted - 1) == windows.end_seconds(windows.emitted - 1)
    assert live.end_frame(2) == spec.window_frames + 2 * HOP
    with pytest.raises(ValueError, match="1-D"):
        live.push(np.zeros((2, 3), np.float32))


@pytest.mark.parametrize("spec", SPECS, ids=IDS)
def test_a_short_click_padded_for_the_detector_lies_inside_every_window(spec: FeatureSpec) -> None:
    hop_samples = HOP * spec.frame_shift
    click = _signal(spec, 0.5)
    before, after = end_padding(spec, HOP, 3, click.size)
    padded = np.pad(click, (before, after))
    assert padded.size == samples_for_frames(spec, spec.window_frames + 2 * HOP)
    assert after - before in (0, 1)  # centred, the odd sample after
    window = samples_for_frames(spec, spec.window_frames)
    for i in range(3):  # the samples window i reads: the click lies wholly inside each
        assert i * hop_samples <= before and before + click.size <= i * hop_samples + window
    windows = clip_windows(spec, padded, HOP)
    silence = clip_windows(spec, np.zeros_like(padded), HOP)
    assert windows.shape[0] == 3
    assert all(float((w - s).abs().amax()) > 1.0 for w, s in zip(windows, silence))


@pytest.mark.parametrize("seconds", [2.1, 2.9, 4.0, 10.3])
@pytest.mark.parametrize("spec", SPECS, ids=IDS)
def test_the_end_of_the_audio_lies_in_every_window_the_smoothing_averages(spec: FeatureSpec, seconds: float) -> None:
    audio = _signal(spec, seconds)
    before, after = end_padding(spec, HOP, 3, audio.size)
    assert before == 0  # a window was cut before the end: silence can only follow
    padded = np.pad(audio, (0, after))
    windows = clip_windows(spec, padded, HOP)
    # The same length with the audio's last 0.45 s silenced: a window differs when it heard them.
    cut = padded.copy()
    cut[audio.size - int(0.45 * spec.sample_rate) : audio.size] = 0.0
    heard_end = [bool((a - b).abs().amax() > 1e-3) for a, b in zip(windows, clip_windows(spec, cut, HOP))]
    assert heard_end[-3:] == [True, True, True]
    # And no more windows: the last three are the first three to reach the end.
    first = len(windows) - 3
    assert samples_for_frames(spec, spec.window_frames + first * HOP) >= audio.size
    assert samples_for_frames(spec, spec.window_frames + (first - 1) * HOP) < audio.size


@pytest.mark.parametrize("seconds", [0.5, 2.9])
@pytest.mark.parametrize("spec", SPECS, ids=IDS)
def test_finish_ends_a_live_stream_as_end_padding_pads_the_clip(spec: FeatureSpec, seconds: float) -> None:
    audio = _signal(spec, seconds)
    live = LiveWindows(spec, HOP)
    size = spec.sample_rate // 50  # 20 ms
    streamed = [w for start in range(0, audio.size, size) for w in live.push(audio[start : start + size])]
    streamed += live.finish(3)
    before, after = end_padding(spec, HOP, 3, audio.size)
    torch.testing.assert_close(torch.stack(streamed), clip_windows(spec, np.pad(audio, (before, after)), HOP))
    # Times stay those of the stream: silence put before a short one does not move them.
    end = samples_for_frames(spec, spec.window_frames + (live.emitted - 1) * HOP)
    assert live.end_seconds(live.emitted - 1) == pytest.approx((end - before) / spec.sample_rate)


@pytest.mark.parametrize("spec", SPECS, ids=IDS)
def test_a_stream_shorter_than_a_window_is_padded_centred(spec: FeatureSpec) -> None:
    click = _signal(spec, 0.5)
    before, after = end_padding(spec, HOP, 3, click.size)
    assert before > 0 and after - before in (0, 1)
    assert end_padding(spec, HOP, 3, 0) == (0, 0)
    assert LiveWindows(spec, HOP).finish(3) == []  # no audio, nothing to judge
    with pytest.raises(ValueError, match="smoothing_windows"):
        end_padding(spec, HOP, 0, click.size)
