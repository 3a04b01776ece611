"""Each simulated home's recording: a household background with one emergency mixed in.

Everything is made here, offline: the background is synthesised room noise with speech-like
babble (or, given a folder, household recordings looped and cut), and the emergency an
ISO 8201 temporal-three smoke alarm, the signal the gateway's detector and its alarm pattern
recogniser are both specified against (docs/protocol.md). A home's recording depends only on
its index and seed, so every client process can make its own.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import soundfile
import soxr

EVENT_CLASS = "fire"
HOUSEHOLD_SUFFIXES = (".wav", ".flac")


@dataclass(frozen=True)
class PlannedEvent:
    """The emergency one home's recording carries: its class and where it sounds."""

    class_key: str
    onset_s: float
    duration_s: float


def event_for(index: int, seconds: float, event_s: float) -> PlannedEvent:
    """Home ``index``'s event: onsets spread over the recording (a different one per home, so
    the servers do not see every alarm start at once), always with the whole event inside."""
    lead = min(4.0, max(0.0, seconds - event_s))
    room = max(0.0, seconds - event_s - lead - 1.0)
    # The golden ratio spreads consecutive indices evenly over [lead, lead + room).
    onset = lead + room * ((index * 0.6180339887) % 1.0)
    return PlannedEvent(EVENT_CLASS, round(onset, 3), event_s)


def smoke_alarm(rate: int, seconds: float) -> np.ndarray:
    """ISO 8201 temporal-three: 0.5 s on / 0.5 s off three times, then 1.5 s off, repeated; a
    3.1 kHz tone with harmonics, as a household sounder makes it."""
    t = np.arange(round(rate * seconds)) / rate
    tone = sum(a * np.sin(2 * np.pi * 3100.0 * k * t) for k, a in ((1, 1.0), (2, 0.3), (3, 0.5), (4, 0.1)))
    phase = t % 4.0
    on = (phase < 2.5) & (phase % 1.0 < 0.5)
    return (0.3 * tone / 1.9 * on).astype(np.float32)


def synthetic_background(rate: int, seconds: float, seed: int) -> np.ndarray:
    """Room noise (about -40 dBFS) under speech-like babble: noise shaped to a voice's band,
    voiced at syllable rate and pausing between phrases, so the model hears an occupied room
    rather than the digital quiet it would call a test tone."""
    rng = np.random.default_rng(seed)
    n = round(rate * seconds)
    room = 0.01 * rng.standard_normal(n)
    spectrum = np.fft.rfft(rng.standard_normal(n))
    freqs = np.fft.rfftfreq(n, 1.0 / rate)
    voice_band = np.exp(-0.5 * ((freqs - 500.0) / 350.0) ** 2) + 0.4 * np.exp(-0.5 * ((freqs - 1500.0) / 500.0) ** 2)
    voiced = np.fft.irfft(spectrum * voice_band, n)
    t = np.arange(n) / rate
    syllables = 0.5 + 0.5 * np.sin(2 * np.pi * (3.5 + 1.5 * rng.random()) * t + rng.random() * 6.3)
    phrases = (np.sin(2 * np.pi * 0.17 * t + rng.random() * 6.3) > -0.3).astype(np.float64)
    babble = voiced * syllables * phrases
    babble *= 0.05 / max(1e-9, float(np.sqrt(np.mean(babble**2))))
    return (room + babble).astype(np.float32)


def household_background(files: list[Path], rate: int, seconds: float, seed: int) -> np.ndarray:
    """One of ``files`` (chosen by ``seed``), mono at ``rate``, looped to ``seconds``."""
    path = files[seed % len(files)]
    samples, file_rate = soundfile.read(path, dtype="float32", always_2d=True)
    mono = samples.mean(axis=1)
    if file_rate != rate:
        mono = np.asarray(soxr.resample(mono, file_rate, rate), dtype=np.float32)
    if len(mono) == 0:
        raise ValueError(f"{path} holds no audio")
    return np.resize(mono, round(rate * seconds))


def household_files(folder: Path) -> list[Path]:
    """The .wav and .flac files under ``folder``, in a stable order; an error if none."""
    files = sorted(p for p in folder.rglob("*") if p.suffix.lower() in HOUSEHOLD_SUFFIXES)
    if not files:
        raise ValueError(f"no .wav or .flac files under {folder}")
    return files


def home_recording(
    index: int, seconds: float, rate: int, event: PlannedEvent, household: list[Path] | None = None
) -> bytes:
    """Home ``index``'s recording as PCM16 LE mono: its background with ``event``'s alarm."""
    if household:
        audio = household_background(household, rate, seconds, seed=index)
    else:
        audio = synthetic_background(rate, seconds, seed=index)
    start = round(event.onset_s * rate)
    alarm = smoke_alarm(rate, event.duration_s)[: len(audio) - start]
    audio[start : start + len(alarm)] += alarm
    return (np.clip(audio, -1.0, 32767 / 32768) * 32768).astype("<i2").tobytes()
