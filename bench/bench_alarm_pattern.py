"""Alarm pattern detector: CPU per stream-second, and how long T3/T4 take to be recognised.

CPU: one detector fed 60 s of each background in gateway-sized chunks; the figure is process
CPU time (not wall time) per second of audio, i.e. the fraction of one core a live session
costs. Latency: alarms starting at random points of their cycle, clean and at 0 dB SNR in pink
noise with a synthetic room (RT60 0.4 s); the figure is seconds from the start of the stream
to the first full match (that is when the push returning it ended), and how long after the
group's last pulse ended that was.

    .venv/bin/python bench/bench_alarm_pattern.py

Prints figures; not a test. On a shared machine, other processes skew the CPU numbers.
"""

from __future__ import annotations

import statistics
import time
from pathlib import Path

import numpy as np
from scipy.signal import fftconvolve

from shared.alarm_patterns import AlarmPatternDetector

SR = 16000
SPEECH = Path("/work/shared/models/yamnet/speech_test_16k_int16.bin")
T3 = [(0.5, 0.5), (0.5, 0.5), (0.5, 1.5)]
T4 = [(0.1, 0.1)] * 3 + [(0.1, 5.0)]


def pink(n: int, rng: np.random.Generator) -> np.ndarray:
    spectrum = np.fft.rfft(rng.standard_normal(n))
    spectrum[1:] /= np.sqrt(np.arange(1, len(spectrum)))
    spectrum[0] = 0.0
    out = np.fft.irfft(spectrum, n)
    return out / np.std(out)


Cycle = list[tuple[float, float]]  # (on_s, off_s) per pulse


def alarm(cycle: Cycle, hz: float, seconds: float, phase_s: float) -> tuple[np.ndarray, np.ndarray]:
    """A piezo tone gated by ``cycle`` (starting ``phase_s`` into it), and where it sounds."""
    t = np.arange(round(seconds * SR)) / SR
    on = np.zeros(len(t), dtype=bool)
    start = -phase_s
    while start < seconds:
        for on_s, off_s in cycle:
            on[(t >= start) & (t < start + on_s)] = True
            start += on_s + off_s
    harmonics = [(k, w) for k, w in ((1, 1.0), (2, 0.5), (3, 0.3)) if k * hz < SR / 2]
    tone = sum(w * np.sin(2 * np.pi * k * hz * t) for k, w in harmonics)
    return 0.3 * on * tone / np.max(np.abs(tone)), on


def room(x: np.ndarray, rng: np.random.Generator, rt60_s: float = 0.4) -> np.ndarray:
    t = np.arange(round(rt60_s * SR)) / SR
    tail = rng.standard_normal(len(t)) * np.exp(-6.91 * t / rt60_s)
    tail /= np.sqrt(np.sum(tail**2))
    tail[0] += 1.0
    return fftconvolve(x, tail)[: len(x)]


def backgrounds(seconds: float, rng: np.random.Generator) -> dict[str, np.ndarray]:
    n = round(seconds * SR)
    clip = np.fromfile(SPEECH, dtype="<i2").astype(np.float64) / 32768.0
    speech = np.tile(np.concatenate([clip, np.zeros(SR // 5)]), n // (len(clip) + SR // 5) + 1)[:n]
    t = np.arange(n) / SR
    music = np.zeros(n)
    for start in np.arange(0.0, seconds, 0.45):  # sawtooth triads stabbed to a beat
        a, b = round(start * SR), min(round((start + 0.3) * SR), n)
        for root in (261.6, 329.6, 392.0) if int(start / 1.8) % 2 else (220.0, 261.6, 329.6):
            for k in range(1, 12):
                music[a:b] += np.sin(2 * np.pi * k * root * t[a:b]) / k / 10
    alarm_t3, on = alarm(T3, 3100.0, seconds, 0.0)
    noise = pink(n, rng)
    return {
        "pink noise (-30 dBFS)": 0.03 * noise,
        "speech": 0.3 * speech,
        "music (chords)": 0.3 * music / np.max(np.abs(music)),
        "T3 alarm + pink 0 dB": alarm_t3 + noise * np.sqrt(np.mean(alarm_t3[on] ** 2)),
    }


def cpu_per_stream_second(signal: np.ndarray, chunk: int) -> float:
    detector = AlarmPatternDetector(SR)
    samples = signal.astype(np.float32)
    start = time.process_time()
    for at in range(0, len(samples), chunk):
        detector.push(samples[at : at + chunk])
    return (time.process_time() - start) / (len(samples) / SR)


def first_match(signal: np.ndarray, pattern: str) -> tuple[float, float] | None:
    """(when the push that reported it ended, how long after the pattern completed), or None."""
    detector = AlarmPatternDetector(SR)
    samples = np.clip(signal, -1, 1).astype(np.float32)
    for at in range(0, len(samples), 320):
        for match in detector.push(samples[at : at + 320]):
            if match.pattern == pattern and not match.partial:  # a partial match is evidence only
                reported_s = (at + 320) / SR
                return reported_s, reported_s - match.stream_time_s
    return None


def main() -> None:
    rng = np.random.default_rng(0)
    print("CPU per stream-second (% of one core), 60 s per row")
    for name, signal in backgrounds(60.0, rng).items():
        row = []
        for chunk in (320, 1600, 16000):
            row.append(f"{chunk:>5}-sample chunks {100 * cpu_per_stream_second(signal, chunk):.3f} %")
        print(f"  {name:24} " + "   ".join(row))

    print("\nLatency, stream start (random point of the cycle) to the first match")
    plan = (("T3", T3, "temporal3", 14.0, 4.0), ("T4", T4, "temporal4", 16.0, 5.7))
    for label, cycle, pattern, seconds, period in plan:
        for condition in ("clean", "pink 0 dB + room"):
            latencies, delays, misses = [], [], 0
            for trial in range(20):
                hz, phase_s = float(rng.uniform(2800, 3500)), float(rng.uniform(0, period))
                signal, on = alarm(cycle, hz, seconds, phase_s)
                if condition != "clean":
                    signal = room(signal, rng)
                    signal = signal + pink(len(signal), rng) * np.sqrt(np.mean(signal[on] ** 2))
                found = first_match(signal, pattern)
                if found is None:
                    misses += 1
                else:
                    latencies.append(found[0])
                    delays.append(found[1])
            print(
                f"  {label} {condition:17} median {statistics.median(latencies):5.2f} s  "
                f"max {max(latencies):5.2f} s  min {min(latencies):5.2f} s  missed {misses}/20  "
                f"(reported {min(delays):.2f}-{max(delays):.2f} s after the last pulse ended)"
            )


if __name__ == "__main__":
    main()
