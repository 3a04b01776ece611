from __future__ import annotations

import numpy as np
import pytest
import torch

from hearo.load_bench.audio import smoke_alarm
from services.gateway.audio import AudioPipeline, Heard, Resampler, Window, decode_pcm16
from shared.alarm_patterns import AlarmPatternDetector, AlarmPatternMatch
from shared.features.spec import BEATS_FBANK, EFFICIENTAT_MEL
from shared.features.stream import clip_windows, end_padding


def tone(freq: float, rate: int, seconds: float, amplitude: float = 0.5) -> np.ndarray:
    t = np.arange(round(rate * seconds)) / rate
    return (amplitude * np.sin(2 * np.pi * freq * t)).astype(np.float32)


def pcm16(samples: np.ndarray) -> bytes:
    return (np.clip(samples, -1, 32767 / 32768) * 32768).astype("<i2").tobytes()


def dominant_frequency(samples: np.ndarray, rate: int) -> float:
    spectrum = np.abs(np.fft.rfft(samples * np.hanning(len(samples))))
    return float(np.fft.rfftfreq(len(samples), 1 / rate)[np.argmax(spectrum)])


def stream_through(resampler: Resampler, samples: np.ndarray, chunk: int) -> np.ndarray:
    parts = [resampler.push(samples[i : i + chunk]) for i in range(0, len(samples), chunk)]
    return np.concatenate([*parts, resampler.flush()])


def test_decode_mono_and_stereo_downmix() -> None:
    mono = decode_pcm16(np.array([0, 16384, -32768, 32767], dtype="<i2").tobytes(), channels=1)
    np.testing.assert_allclose(mono, [0.0, 0.5, -1.0, 32767 / 32768])
    assert mono.dtype == np.float32
    stereo = decode_pcm16(np.array([16384, 0, -16384, -16384], dtype="<i2").tobytes(), channels=2)
    np.testing.assert_allclose(stereo, [0.25, -0.5])


@pytest.mark.parametrize(("size", "channels"), [(3, 1), (6, 2), (2, 2)])
def test_decode_refuses_partial_sample_frames(size: int, channels: int) -> None:
    with pytest.raises(ValueError, match="whole number"):
        decode_pcm16(b"\x00" * size, channels)


def test_1khz_at_44k1_comes_out_at_1khz_at_16k_with_the_right_length() -> None:
    source = tone(1000.0, 44_100, 2.0)
    out = stream_through(Resampler(44_100, 16_000), source, chunk=441)  # 10 ms frames
    assert len(out) == 32_000
    assert dominant_frequency(out[1000:-1000], 16_000) == pytest.approx(1000.0, abs=1.0)
    # Amplitude is kept (no gain, no clipping) away from the edges.
    assert np.max(np.abs(out[1000:-1000])) == pytest.approx(0.5, abs=0.01)
    # And it is the same signal a direct synthesis at 16 kHz gives (alignment: no delay left).
    np.testing.assert_allclose(out[1000:-1000], tone(1000.0, 16_000, 2.0)[1000:-1000], atol=2e-3)


def test_resampler_removes_content_above_the_new_nyquist() -> None:
    source = tone(10_000.0, 48_000, 1.0)  # above 8 kHz: must not alias into 16 kHz audio
    out = stream_through(Resampler(48_000, 16_000), source, chunk=960)
    assert np.sqrt(np.mean(out[500:-500] ** 2)) < 1e-3


def test_pass_through_at_equal_rates() -> None:
    samples = tone(440.0, 16_000, 0.1)
    resampler = Resampler(16_000, 16_000)
    assert resampler.push(samples) is samples
    assert len(resampler.flush()) == 0


@pytest.mark.parametrize("spec", [EFFICIENTAT_MEL, BEATS_FBANK], ids=lambda s: s.name)
def test_pipeline_from_44k1_stereo(spec: object) -> None:
    assert spec is EFFICIENTAT_MEL or spec is BEATS_FBANK
    rate, seconds = 44_100, 4.0
    left = tone(1000.0, rate, seconds)
    pcm = pcm16(np.stack([left, left], axis=1).reshape(-1))
    pipeline = AudioPipeline(rate, 2, spec, hop_frames=50, ring_seconds=40.0)
    frame_bytes = 4 * 441 * 2  # 20 ms of stereo
    windows = []
    for i in range(0, len(pcm), frame_bytes):
        windows += pipeline.hear(pcm[i : i + frame_bytes])
    windows += pipeline.hear_end(3)
    assert pipeline.stream_time_s == pytest.approx(seconds)
    # A window once ~2 s are in, then one per 0.5 s, and the tail's silence completes the first
    # window to reach the end of the audio and two more, for the detector's smoothing of 3.
    assert all(w.features.shape == (spec.window_frames, spec.n_mels) for w in windows)
    ends = [w.end_s for w in windows]
    assert ends[0] == pytest.approx(2.0, abs=0.01)
    assert np.diff(ends) == pytest.approx([0.5] * (len(ends) - 1))
    assert ends[-4] < seconds <= ends[-3]
    # The ring holds the whole 4 s at 16 kHz, none of the silence, and it is the 1 kHz tone.
    clip = pipeline.ring.snapshot(30.0)
    assert len(clip.samples) == 64_000
    assert dominant_frequency(clip.samples, 16_000) == pytest.approx(1000.0, abs=1.0)


def test_pipeline_windows_match_the_offline_windows_of_the_resampled_clip() -> None:
    """Frame-by-frame streaming gives the same windows as resampling the clip, ended with the
    tail's silence, then windowing it."""
    rng = np.random.default_rng(3)
    samples = (0.1 * rng.standard_normal(48_000 * 3)).astype(np.float32)
    quantised = decode_pcm16(pcm16(samples), 1)
    pipeline = AudioPipeline(48_000, 1, EFFICIENTAT_MEL, hop_frames=50, ring_seconds=40.0)
    pcm = pcm16(samples)
    streamed = []
    for i in range(0, len(pcm), 1920):  # 20 ms
        streamed += pipeline.hear(pcm[i : i + 1920])
    streamed += pipeline.hear_end(3)
    resampled = stream_through(Resampler(48_000, 32_000), quantised, 48_000)
    offline = clip_windows(EFFICIENTAT_MEL, np.pad(resampled, end_padding(EFFICIENTAT_MEL, 50, 3, resampled.size)), 50)
    assert len(streamed) == offline.shape[0]
    torch.testing.assert_close(torch.stack([w.features for w in streamed]), offline, atol=1e-4, rtol=1e-4)


def test_each_window_says_when_it_arrived_and_how_loud_its_audio_was() -> None:
    import time

    rate, t = 16_000, np.arange(16_000 * 3) / 16_000
    quiet, loud = 0.01 * np.sin(2 * np.pi * 440 * t), 0.5 * np.sin(2 * np.pi * 440 * t)
    pcm = (np.concatenate([quiet, loud]) * 32767).astype("<i2").tobytes()
    pipeline = AudioPipeline(rate, 1, EFFICIENTAT_MEL, hop_frames=50, ring_seconds=40.0)
    before = time.time()
    windows = pipeline.hear(pcm[: len(pcm) // 2]) + pipeline.hear(pcm[len(pcm) // 2 :])
    assert all(before <= w.heard_at <= time.time() for w in windows)
    first, last = windows[0], windows[-1]
    assert first.end_s <= 3.0 and last.end_s - EFFICIENTAT_MEL.window_seconds >= 3.0
    # A sine's RMS is its amplitude / sqrt(2): -43 dBFS and -9 dBFS over whole windows of each.
    assert first.level_dbfs == pytest.approx(20 * np.log10(0.01 / np.sqrt(2)), abs=0.2)
    assert last.level_dbfs == pytest.approx(20 * np.log10(0.5 / np.sqrt(2)), abs=0.2)


class CountingDetector(AlarmPatternDetector):
    """An alarm pattern detector that counts the pushes it is given."""

    pushes = 0

    def push(self, samples: np.ndarray) -> list[AlarmPatternMatch]:
        self.pushes += 1
        return super().push(samples)


def test_the_ring_and_alarm_patterns_take_a_hop_at_a_time_and_no_match_comes_later() -> None:
    """100 ms frames: the ring and the alarm pattern detector get the audio once per model window
    (not per frame), each window finds the ring holding its audio, and each temporal-three match
    is told just before the first window ending at or after it, no later than the first window
    completed after a detector pushed every frame would have returned it."""
    rate, frame = 16_000, 1_600
    rng = np.random.default_rng(5)
    audio = (0.003 * rng.standard_normal(rate * 12)).astype(np.float32)
    audio[rate * 3 :] += smoke_alarm(rate, 9.0)
    samples = decode_pcm16(pcm16(audio), 1)
    per_frame = AlarmPatternDetector(rate)
    known_at = {}  # a match's stream time -> the end of the frame whose push returned it
    for i in range(0, len(samples), frame):
        for match in per_frame.push(samples[i : i + frame]):
            known_at[match.stream_time_s] = (i + frame) / rate

    detector = CountingDetector(rate)
    pipeline = AudioPipeline(rate, 1, EFFICIENTAT_MEL, hop_frames=50, ring_seconds=40.0, alarm_patterns=detector)
    pcm = pcm16(audio)
    heard: list[Heard] = []
    for i in range(0, len(pcm), 2 * frame):
        got = pipeline.hear(pcm[i : i + 2 * frame])
        assert all(pipeline.ring.end_s >= item.end_s for item in got if isinstance(item, Window))
        heard += got
    windows = [item for item in heard if isinstance(item, Window)]
    assert detector.pushes <= len(windows)

    matches = [i for i, item in enumerate(heard) if isinstance(item, AlarmPatternMatch)]
    assert [heard[i].stream_time_s for i in matches] == list(known_at)  # type: ignore[union-attr]
    hop_s = 50 * EFFICIENTAT_MEL.frame_shift / EFFICIENTAT_MEL.sample_rate
    for i in matches:
        match, following = heard[i], heard[i + 1]
        assert isinstance(match, AlarmPatternMatch) and isinstance(following, Window)
        assert following.end_s >= match.stream_time_s
        assert following.end_s <= known_at[match.stream_time_s] + hop_s
