"""Where `hearo stream` gets its audio: a sound file or the microphone, as PCM16 frames."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any, Protocol

import numpy as np
import soundfile
import soxr

from shared.protocol import SAMPLE_RATES

FRAME_MS = 100
FALLBACK_RATE = 16_000
MIC_RATE = 16_000


class InputError(Exception):
    """The audio source cannot be used (unreadable file, no microphone support)."""


class AudioSource(Protocol):
    """PCM16 little-endian frames of ``FRAME_MS`` at ``sample_rate`` x ``channels``."""

    sample_rate: int
    channels: int
    realtime: bool  # produces audio at real time by itself (a microphone)

    def frames(self) -> AsyncIterator[bytes]: ...


class FileSource:
    """A sound file, as it is when its rate is accepted, else mono resampled to 16 kHz."""

    realtime = False

    def __init__(self, path: Path) -> None:
        try:
            self._file = soundfile.SoundFile(str(path))
        except (soundfile.LibsndfileError, RuntimeError, OSError) as exc:
            raise InputError(f"cannot read {path}: {exc}") from None
        self._resample = self._file.samplerate not in SAMPLE_RATES
        self._mixdown = self._resample or self._file.channels > 2
        self.sample_rate = FALLBACK_RATE if self._resample else self._file.samplerate
        self.channels = 1 if self._mixdown else self._file.channels

    async def frames(self) -> AsyncIterator[bytes]:
        block = self._file.samplerate * FRAME_MS // 1000
        resampler = soxr.ResampleStream(self._file.samplerate, FALLBACK_RATE, 1) if self._resample else None
        with self._file:
            try:
                if not self._mixdown:
                    for chunk in self._file.blocks(blocksize=block, dtype="int16", always_2d=True):
                        yield chunk.astype("<i2").tobytes()
                    return
                for chunk in self._file.blocks(blocksize=block, dtype="float32", always_2d=True):
                    mono = chunk.mean(axis=1, dtype=np.float32)
                    yield _pcm16(resampler.resample_chunk(mono) if resampler is not None else mono)
                if resampler is not None:
                    yield _pcm16(resampler.resample_chunk(np.zeros(0, np.float32), last=True))
            except (soundfile.LibsndfileError, RuntimeError) as exc:
                raise InputError(f"cannot read {self._file.name}: {exc}") from None


class MicSource:
    """The default input device at 16 kHz mono, until ``stop`` is set."""

    sample_rate = MIC_RATE
    channels = 1
    realtime = True

    def __init__(self, stop: asyncio.Event) -> None:
        try:
            import sounddevice
        except ImportError:
            raise InputError(
                "streaming the microphone needs the 'mic' extra: pip install 'hearo[mic]' (sounddevice)"
            ) from None
        except OSError as exc:  # sounddevice is there but PortAudio is not
            raise InputError(f"no audio input available: {exc}") from None
        self._sounddevice = sounddevice
        self._stop = stop

    async def frames(self) -> AsyncIterator[bytes]:
        loop = asyncio.get_running_loop()
        queue: asyncio.Queue[bytes] = asyncio.Queue()

        def on_audio(data: Any, _frames: int, _time: Any, _status: Any) -> None:
            loop.call_soon_threadsafe(queue.put_nowait, bytes(data))

        try:
            stream = self._sounddevice.RawInputStream(
                samplerate=MIC_RATE, channels=1, dtype="int16", blocksize=MIC_RATE * FRAME_MS // 1000, callback=on_audio
            )
        except Exception as exc:  # PortAudioError and friends: no device, rate refused
            raise InputError(f"cannot open the microphone: {exc}") from None
        with stream:
            # A frame arrives every FRAME_MS, so ``stop`` is seen within one.
            while not self._stop.is_set():
                yield await queue.get()


def _pcm16(samples: np.ndarray) -> bytes:
    return (np.clip(samples, -1.0, 32767 / 32768) * 32768).astype("<i2").tobytes()
