"""The CLI client's audio sources and its refusals before any connection (servers: integration)."""

from __future__ import annotations

import asyncio
import sys
from pathlib import Path

import numpy as np
import pytest
import soundfile

from hearo.stream_client import EXIT_INPUT, FRAME_MS, FileSource, InputError, run_stream


def tone(rate: int, seconds: float, channels: int) -> np.ndarray:
    t = np.arange(round(rate * seconds)) / rate
    mono = 0.5 * np.sin(2 * np.pi * 1000 * t)
    return np.stack([mono * (c + 1) / channels for c in range(channels)], axis=1).astype(np.float32)


def collect(source: FileSource) -> list[bytes]:
    async def frames() -> list[bytes]:
        return [frame async for frame in source.frames()]

    return asyncio.run(frames())


def test_accepted_rate_and_stereo_are_sent_as_they_are(tmp_path: Path) -> None:
    path = tmp_path / "stereo.wav"
    audio = tone(44100, 1.0, channels=2)
    soundfile.write(path, audio, 44100, subtype="PCM_16")
    source = FileSource(path)
    assert (source.sample_rate, source.channels) == (44100, 2)
    frames = collect(source)
    assert len(frames[0]) == 44100 * FRAME_MS // 1000 * 4  # 100 ms of interleaved int16 pairs
    pcm = np.frombuffer(b"".join(frames), dtype="<i2").reshape(-1, 2)
    expected = soundfile.read(path, dtype="int16")[0]
    np.testing.assert_array_equal(pcm, expected)


def test_other_rates_are_resampled_to_16k_mono(tmp_path: Path) -> None:
    path = tmp_path / "odd.flac"
    soundfile.write(path, tone(11025, 2.0, channels=2), 11025)
    source = FileSource(path)
    assert (source.sample_rate, source.channels) == (16000, 1)
    pcm = np.frombuffer(b"".join(collect(source)), dtype="<i2").astype(np.float32) / 32768
    assert len(pcm) == 32000
    spectrum = np.abs(np.fft.rfft(pcm[1000:-1000]))
    assert np.fft.rfftfreq(len(pcm) - 2000, 1 / 16000)[np.argmax(spectrum)] == pytest.approx(1000, abs=2)
    # Channels (0.25 and 0.5 amplitude) are averaged: 0.375.
    assert np.max(np.abs(pcm[1000:-1000])) == pytest.approx(0.375, abs=0.01)


def test_more_than_two_channels_are_mixed_down(tmp_path: Path) -> None:
    path = tmp_path / "surround.wav"
    soundfile.write(path, tone(48000, 0.5, channels=4), 48000)
    source = FileSource(path)
    assert (source.sample_rate, source.channels) == (48000, 1)
    assert len(b"".join(collect(source))) == 48000 * 2 // 2


def test_unreadable_file(tmp_path: Path) -> None:
    path = tmp_path / "notes.txt"
    path.write_text("not audio")
    with pytest.raises(InputError, match="cannot read"):
        FileSource(path)
    assert run_stream(path, False, "ws://127.0.0.1:9/v1/stream", "token", True, True) == EXIT_INPUT


def test_mic_without_sounddevice_says_how_to_get_it(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setitem(sys.modules, "sounddevice", None)  # makes `import sounddevice` fail
    assert run_stream(None, True, "ws://127.0.0.1:9/v1/stream", "token", False, False) == EXIT_INPUT
    assert "hearo[mic]" in capsys.readouterr().err
