from __future__ import annotations

import zlib
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pytest
from scipy.signal import fftconvolve

from shared.alarm_patterns import AlarmPatternConfig, AlarmPatternDetector, AlarmPatternMatch
from shared.detector import DetectorConfig, clip_decision
from shared.taxonomy import NUM_CLASSES, by_key

SR = 16000
SPEECH_FIXTURE = Path("/work/shared/models/yamnet/speech_test_16k_int16.bin")

Cycle = Sequence[tuple[float, float]]  # (on_s, off_s) per pulse of one cycle

TEMPORAL3 = [(0.5, 0.5), (0.5, 0.5), (0.5, 1.5)]  # ISO 8201
TEMPORAL4 = [(0.1, 0.1)] * 3 + [(0.1, 5.0)]  # UL 2034


# -- test signals ----------------------------------------------------------------------------


def carrier(kind: str, hz: float, seconds: float) -> np.ndarray:
    """A continuous tone: ``sine``, ``piezo`` (with 2nd-4th harmonics) or band-limited ``square``."""
    t = np.arange(round(seconds * SR)) / SR
    if kind == "sine":
        weights = {1: 1.0}
    elif kind == "piezo":
        weights = {1: 1.0, 2: 0.5, 3: 0.3, 4: 0.15}
    elif kind == "square":
        weights = {k: 1.0 / k for k in range(1, 200, 2)}
    else:
        raise ValueError(kind)
    out = sum(w * np.sin(2 * np.pi * k * hz * t + k) for k, w in weights.items() if k * hz < SR / 2)
    return out / np.max(np.abs(out))


def envelope(segments: Sequence[tuple[float, float]], seconds: float, ramp_s: float = 0.005) -> np.ndarray:
    """1 inside each (start, end) segment, 0 outside, with short linear ramps like a real sounder."""
    env = np.zeros(round(seconds * SR))
    for start, end in segments:
        a, b = max(round(start * SR), 0), min(round(end * SR), len(env))
        if b <= a:
            continue
        env[a:b] = 1.0
        ramp = min(round(ramp_s * SR), (b - a) // 2)
        if start >= 0:
            env[a : a + ramp] = np.linspace(0.0, 1.0, ramp)
        if round(end * SR) <= len(env):
            env[b - ramp : b] = np.linspace(1.0, 0.0, ramp)
    return env


def cycled(cycle: Cycle, seconds: float, phase_s: float = 0.0) -> list[tuple[float, float]]:
    """Segments of ``cycle`` repeated over ``seconds``; the signal starts ``phase_s`` into a cycle."""
    assert sum(on + off for on, off in cycle) > 0
    segments = []
    t = -phase_s
    while t < seconds:
        for on, off in cycle:
            segments.append((t, t + on))
            t += on + off
    return segments


def alarm(cycle: Cycle, kind: str, hz: float, seconds: float, phase_s: float) -> tuple[np.ndarray, np.ndarray]:
    """An alarm sounding ``cycle`` (starting ``phase_s`` into it) and where it sounds."""
    env = envelope(cycled(cycle, seconds, phase_s), seconds)
    return 0.3 * env * carrier(kind, hz, seconds), env > 0.5


def pink(n: int, rng: np.random.Generator) -> np.ndarray:
    spectrum = np.fft.rfft(rng.standard_normal(n))
    spectrum[1:] /= np.sqrt(np.arange(1, len(spectrum)))
    spectrum[0] = 0.0
    out = np.fft.irfft(spectrum, n)
    return out / np.std(out)


def reverb(x: np.ndarray, rng: np.random.Generator, rt60_s: float = 0.4, drr_db: float = 0.0) -> np.ndarray:
    """A room: a direct path plus an exponentially decaying noise tail (60 dB down at ``rt60_s``)."""
    t = np.arange(round(rt60_s * SR)) / SR
    tail = rng.standard_normal(len(t)) * np.exp(-6.91 * t / rt60_s)
    tail *= 10 ** (-drr_db / 20) / np.sqrt(np.sum(tail**2))
    tail[0] += 1.0
    return fftconvolve(x, tail)[: len(x)]


def mix(signal: np.ndarray, noise: np.ndarray, snr_db: float, active: np.ndarray) -> np.ndarray:
    """``signal`` plus ``noise`` scaled so the signal, while it sounds, is ``snr_db`` above it."""
    signal_power = np.mean(signal[active] ** 2)
    noise = noise[: len(signal)] * np.sqrt(signal_power / np.mean(noise**2) / 10 ** (snr_db / 10))
    return signal + noise


def speech(seconds: float, rng: np.random.Generator) -> np.ndarray:
    """The speech fixture repeated, with short random pauses and gains, ``seconds`` long."""
    clip = np.fromfile(SPEECH_FIXTURE, dtype="<i2").astype(np.float64) / 32768.0
    parts, total = [], 0
    while total < seconds * SR:
        parts += [clip * 10 ** (rng.uniform(-3, 3) / 20), np.zeros(round(rng.uniform(0.0, 0.4) * SR))]
        total += len(parts[-2]) + len(parts[-1])
    return np.concatenate(parts)[: round(seconds * SR)]


def run(
    signal: np.ndarray, chunks: int | np.random.Generator = 320, config: AlarmPatternConfig | None = None
) -> list[AlarmPatternMatch]:
    """Push ``signal`` in fixed-size chunks, or random sizes (1 sample to 0.5 s) from a generator."""
    detector = AlarmPatternDetector(SR, config)
    samples = np.clip(signal, -1.0, 1.0).astype(np.float32)
    matches: list[AlarmPatternMatch] = []
    at = 0
    while at < len(samples):
        size = chunks if isinstance(chunks, int) else int(chunks.integers(1, 8000))
        matches += detector.push(samples[at : at + size])
        at += size
    return matches


def full(matches: list[AlarmPatternMatch]) -> list[AlarmPatternMatch]:
    """The full matches: the pattern heard the configured number of cycles, not partly."""
    return [m for m in matches if not m.partial]


def condition(signal: np.ndarray, active: np.ndarray, name: str, rng: np.random.Generator) -> np.ndarray:
    if name == "clean":
        return signal
    snr_db = {"pink10": 10.0, "pink0": 0.0}[name]
    wet = reverb(signal, rng)
    return mix(wet, pink(len(wet), rng), snr_db, active)


# -- positives -------------------------------------------------------------------------------

TONES = [("piezo", 3100.0), ("sine", 3500.0), ("piezo", 2800.0), ("square", 520.0)]


@pytest.mark.parametrize("condition_name", ["clean", "pink10", "pink0"])
@pytest.mark.parametrize(("kind", "hz"), TONES)
@pytest.mark.parametrize("phase_s", [0.6, 1.3, 2.7])
def test_temporal3_is_fire_within_nine_and_a_half_seconds(
    kind: str, hz: float, condition_name: str, phase_s: float
) -> None:
    rng = np.random.default_rng(round(hz + 10 * phase_s))
    signal, active = alarm(TEMPORAL3, kind, hz, 12.0, phase_s)
    matches = full(run(condition(signal, active, condition_name, rng), chunks=rng))
    assert matches, "no match"
    assert {(m.pattern, m.class_key) for m in matches} == {("temporal3", "fire")}
    assert matches[0].stream_time_s <= 9.5
    assert all(m.tone_hz == pytest.approx(hz, rel=0.02) for m in matches)
    assert all(0.0 <= m.confidence <= 1.0 for m in matches)


@pytest.mark.parametrize("condition_name", ["clean", "pink10", "pink0"])
@pytest.mark.parametrize("phase_s", [0.3, 2.0])
def test_temporal4_is_gas_within_twelve_seconds(condition_name: str, phase_s: float) -> None:
    rng = np.random.default_rng(round(100 * phase_s))
    signal, active = alarm(TEMPORAL4, "piezo", 3000.0, 13.0, phase_s)
    matches = full(run(condition(signal, active, condition_name, rng), chunks=rng))
    assert matches, "no match"
    assert {(m.pattern, m.class_key) for m in matches} == {("temporal4", "gas")}
    assert matches[0].stream_time_s <= 12.0
    assert matches[0].tone_hz == pytest.approx(3000.0, rel=0.02)


@pytest.mark.parametrize("background", ["speech", "music"])
def test_temporal3_over_speech_and_music_at_0_db(background: str) -> None:
    rng = np.random.default_rng(7)
    signal, active = alarm(TEMPORAL3, "piezo", 3100.0, 12.0, 1.3)
    noise = speech(12.0, rng) if background == "speech" else chords(12.0, rng)
    matches = full(run(mix(reverb(signal, rng), noise, 0.0, active), chunks=rng))
    assert matches and matches[0].pattern == "temporal3"
    assert matches[0].stream_time_s <= 9.5


def test_low_frequency_temporal3_over_speech_at_0_db() -> None:
    rng = np.random.default_rng(8)
    signal, active = alarm(TEMPORAL3, "square", 520.0, 12.0, 2.7)
    matches = full(run(mix(reverb(signal, rng), speech(12.0, rng), 0.0, active), chunks=rng))
    assert matches and matches[0].pattern == "temporal3"
    # Speech is strongest around 500 Hz: the match may be made on an odd harmonic instead.
    harmonic = matches[0].tone_hz / 520.0
    assert round(harmonic) % 2 == 1 and harmonic == pytest.approx(round(harmonic), rel=0.02)


def test_reports_every_cycle_while_the_alarm_sounds() -> None:
    signal, _ = alarm(TEMPORAL3, "piezo", 3100.0, 24.0, 0.0)
    times = [m.stream_time_s for m in full(run(signal))]
    # Cycles end at 2.5 s + 4 s * n; the first match needs two of them.
    assert times == pytest.approx([6.5 + 4 * n for n in range(5)], abs=0.05)


def test_one_cycle_is_enough_when_configured() -> None:
    signal, _ = alarm(TEMPORAL3, "piezo", 3100.0, 5.0, -1.0)
    assert [(m.pattern, m.partial) for m in run(signal)] == [("temporal3", True)]
    matches = run(signal, config=AlarmPatternConfig(temporal3_cycles=1))
    assert [(m.pattern, m.partial) for m in matches] == [("temporal3", False)]


def test_matches_do_not_depend_on_chunking() -> None:
    rng = np.random.default_rng(11)
    signal, active = alarm(TEMPORAL3, "square", 520.0, 12.0, 1.3)
    noisy = mix(reverb(signal, rng), pink(len(signal), rng), 5.0, active)
    reference = run(noisy, chunks=16000)
    assert reference
    assert run(noisy, chunks=37) == reference
    assert run(noisy, chunks=np.random.default_rng(3)) == reference


def test_an_alarm_among_more_tones_than_the_detector_follows_at_once() -> None:
    # Fourteen tones coming and going at their own rates, more than the eight soundings the
    # detector follows at once (its slots), under a temporal-three at 3.4 kHz.
    t = np.arange(20 * SR) / SR
    tones = sum(
        0.02 * np.sin(2 * np.pi * hz * t) * (np.sin(2 * np.pi * rate * t) > 0)
        for hz, rate in zip(np.linspace(500, 2600, 14), np.linspace(0.7, 3.1, 14))
    )
    signal, _ = alarm(TEMPORAL3, "sine", 3400.0, 20.0, 0.0)
    matches = run(tones + signal / 3, chunks=1600)
    assert [m.pattern for m in matches] == ["temporal3"] * 4
    assert all(abs(m.tone_hz - 3400.0) < 40 for m in matches)
    assert run(tones + signal / 3, chunks=np.random.default_rng(5)) == matches


# -- negatives -------------------------------------------------------------------------------


def beeps(segments: Sequence[tuple[float, float]], hz: float, seconds: float) -> np.ndarray:
    return 0.3 * envelope(segments, seconds) * carrier("piezo", hz, seconds)


def chords(seconds: float, rng: np.random.Generator) -> np.ndarray:
    """Music-like: a I-V-vi-IV progression of sawtooth triads, stabbed on and off to a beat."""
    n = round(seconds * SR)
    t = np.arange(n) / SR
    out = np.zeros(n)
    progression = [(261.6, 329.6, 392.0), (196.0, 246.9, 293.7), (220.0, 261.6, 329.6), (174.6, 220.0, 261.6)]
    beat = 0.45
    for i, start in enumerate(np.arange(0.0, seconds, beat)):
        a, b = round(start * SR), min(round((start + rng.uniform(0.2, 0.4)) * SR), n)
        for root in progression[(i // 4) % 4]:
            for k in range(1, 12):
                out[a:b] += np.sin(2 * np.pi * k * root * t[a:b]) / k
        out[a:b] *= np.linspace(1.0, 0.3, b - a)
    return 0.1 * out / np.max(np.abs(out))


def negative(name: str, rng: np.random.Generator) -> np.ndarray:
    seconds = 24.0
    if name == "speech":
        return 0.3 * speech(seconds, rng)
    if name == "microwave_once":
        return beeps(cycled(TEMPORAL3[:2] + [(0.5, 30.0)], 5.0, -2.0), 2000.0, seconds)
    if name == "microwave_every_30s":
        seconds = 65.0
        return beeps(cycled([(0.5, 0.5), (0.5, 0.5), (0.5, 28.5)], seconds, -2.0), 2000.0, seconds)
    if name == "continuous_tone":
        return 0.3 * carrier("piezo", 3100.0, seconds)
    if name == "alarm_clock":
        return beeps(cycled([(0.1, 0.1)] * 3 + [(0.1, 0.3)], seconds, 0.0), 2500.0, seconds)
    if name == "phone_us":
        ring = carrier("sine", 440.0, seconds) + carrier("sine", 480.0, seconds)
        return 0.15 * envelope(cycled([(2.0, 4.0)], seconds, 0.0), seconds) * ring
    if name == "phone_uk":
        ring = carrier("sine", 400.0, seconds) + carrier("sine", 450.0, seconds)
        return 0.15 * envelope(cycled([(0.4, 0.2), (0.4, 2.0)], seconds, 0.0), seconds) * ring
    if name == "siren":
        t = np.arange(round(seconds * SR)) / SR
        hz = 1000.0 + 400.0 * np.sin(2 * np.pi * t / 4.0)  # wail: 600-1400 Hz every 4 s
        return 0.3 * np.sin(2 * np.pi * np.cumsum(hz) / SR)
    if name == "pink_noise":
        return 0.1 * pink(round(seconds * SR), rng)
    if name == "music":
        return chords(seconds, rng)
    if name == "silence":
        return np.zeros(round(seconds * SR))
    raise ValueError(name)


NEGATIVES = [
    "speech",
    "microwave_once",
    "microwave_every_30s",
    "continuous_tone",
    "alarm_clock",
    "phone_us",
    "phone_uk",
    "siren",
    "pink_noise",
    "music",
    "silence",
]


@pytest.mark.parametrize("name", NEGATIVES)
def test_no_match_on_other_sounds(name: str) -> None:
    rng = np.random.default_rng(zlib.crc32(name.encode()))
    matches = run(negative(name, rng), chunks=rng)
    assert full(matches) == []
    # Only an appliance's one group of three "done" beeps is heard, and only as partial.
    assert {m.pattern for m in matches} <= ({"temporal3"} if name.startswith("microwave") else set())


@pytest.mark.parametrize("name", ["microwave_once", "alarm_clock", "phone_uk", "music"])
def test_no_match_on_other_sounds_in_a_room(name: str) -> None:
    rng = np.random.default_rng(5)
    signal = reverb(negative(name, rng), rng)
    assert full(run(mix(signal, pink(len(signal), rng), 20.0, np.abs(signal) > 0.01))) == []


def test_alarm_clock_is_not_temporal4_but_temporal4_is() -> None:
    """The same four 0.1 s beeps; only the ~5 s pause makes them a CO alarm."""
    clock = beeps(cycled([(0.1, 0.1)] * 3 + [(0.1, 0.3)], 14.0, 0.0), 3000.0, 14.0)
    co, _ = alarm(TEMPORAL4, "piezo", 3000.0, 14.0, 0.0)
    assert run(clock) == []
    assert [m.pattern for m in run(co)] == ["temporal4", "temporal4"]


# -- partial matches: one group of the rhythm, evidence for the detector -----------------------

FIRE = by_key("fire").id


def short_alarm(
    alarm_s: float, phase_s: float, lead_s: float = 1.0, seconds: float = 10.0, kind: str = "piezo", hz: float = 3100.0
) -> tuple[np.ndarray, np.ndarray]:
    """A temporal-three alarm sounding ``alarm_s`` from ``phase_s`` into its cycle, starting
    ``lead_s`` into a stream of ``seconds``, and where it sounds."""
    segments = [(lead_s + a, lead_s + min(b, alarm_s)) for a, b in cycled(TEMPORAL3, alarm_s, phase_s)]
    env = envelope([(a, b) for a, b in segments if b > a], seconds)
    return 0.3 * env * carrier(kind, hz, seconds), env > 0.5


@pytest.mark.parametrize("condition_name", ["clean", "pink10", "pink0"])
@pytest.mark.parametrize(("kind", "hz"), [("piezo", 3100.0), ("square", 520.0)])
@pytest.mark.parametrize("phase_s", [0.0, 2.0, 3.0])
def test_a_six_second_temporal3_is_one_partial_match(kind: str, hz: float, condition_name: str, phase_s: float) -> None:
    """One and a half cycles: one group whole, too few for a match, so one partial match."""
    rng = np.random.default_rng(round(hz + 10 * phase_s))
    signal, active = short_alarm(6.0, phase_s, kind=kind, hz=hz)
    matches = run(condition(signal, active, condition_name, rng), chunks=rng)
    assert [(m.pattern, m.class_key, m.partial) for m in matches] == [("temporal3", "fire", True)]
    # The whole group's end (1 s of lead, then the first group at or after the phase), which
    # a room's tail may move.
    group_end_s = 1.0 + (2.5 if phase_s == 0.0 else 6.5 - phase_s)
    assert matches[0].stream_time_s == pytest.approx(group_end_s, abs=0.15)
    assert 0.0 <= matches[0].confidence <= 1.0


def test_a_partial_match_comes_first_then_full_ones() -> None:
    signal, _ = alarm(TEMPORAL3, "piezo", 3100.0, 14.0, -1.0)  # the first group whole, at 1 s
    matches = run(signal)
    # Groups end at 3.5 s + 4 s * n: the first alone is partial, the next ones make a match.
    assert [(m.partial, m.stream_time_s) for m in matches] == [
        (True, pytest.approx(3.5, abs=0.05)),
        (False, pytest.approx(7.5, abs=0.05)),
        (False, pytest.approx(11.5, abs=0.05)),
    ]


def test_a_fourth_beep_in_a_row_is_no_group_of_three() -> None:
    beeping = beeps(cycled([(0.5, 0.5)] * 4 + [(0.5, 30.0)], 6.0, -1.0), 2000.0, 10.0)
    done = beeps(cycled([(0.5, 0.5)] * 2 + [(0.5, 30.0)], 6.0, -1.0), 2000.0, 10.0)
    assert run(beeping) == []
    assert [(m.pattern, m.partial) for m in run(done)] == [("temporal3", True)]


def clip_scores(seconds: float, fire: float, sounding: tuple[float, float]) -> tuple[np.ndarray, list[float]]:
    """Window scores every 0.5 s over ``seconds`` (and 1.5 s of end padding, as the gateway
    judges a stream's end): ``fire`` for the windows that overlap ``sounding``, else zero."""
    ends = [2.0 + 0.5 * i for i in range(round((seconds + 1.5 - 2.0) / 0.5) + 1)]
    rows = np.zeros((len(ends), NUM_CLASSES))
    for row, end_s in zip(rows, ends):
        overlaps = end_s > sounding[0] and end_s - 2.0 < sounding[1]
        row[FIRE] = fire if overlaps else 0.0
        row[0] = 1.0 - row[FIRE]
    return rows, ends


def test_a_six_second_alarm_the_model_is_half_sure_of_fires_with_its_partial_rhythm() -> None:
    """Threshold 0.5, ratio 0.5: the model's 0.35 alone is no fire; with the partial match it is."""
    config = DetectorConfig.build(0.5, smoothing_windows=3, partial_pattern_ratio=0.5)
    signal, _ = short_alarm(6.0, 0.0)
    matches = run(signal)
    assert [m.partial for m in matches] == [True]
    rows, ends = clip_scores(10.0, 0.35, (1.0, 7.0))
    assert clip_decision(rows, config, ends, matches) == (FIRE, pytest.approx(0.35))
    assert clip_decision(rows, config, ends) == (0, 0.0)  # the same scores without the rhythm
    # The partial match alone never fires, nor with a score under half the threshold.
    silent, _ = clip_scores(10.0, 0.0, (1.0, 7.0))
    assert clip_decision(silent, config, ends, matches) == (0, 0.0)
    low, _ = clip_scores(10.0, 0.2, (1.0, 7.0))
    assert clip_decision(low, config, ends, matches) == (0, 0.0)


@pytest.mark.parametrize("fire", [0.0, 0.2])
def test_appliance_done_beeps_with_low_scores_never_fire(fire: float) -> None:
    rng = np.random.default_rng(3)
    config = DetectorConfig.build(0.5, smoothing_windows=3)
    for name in ("microwave_once", "microwave_every_30s"):
        audio = negative(name, rng)
        matches = run(audio)
        assert matches and all(m.partial for m in matches)
        rows, ends = clip_scores(len(audio) / SR, fire, (0.0, len(audio) / SR))
        assert clip_decision(rows, config, ends, matches) == (0, 0.0)


# -- the interface ---------------------------------------------------------------------------


def test_rejects_bad_input_and_settings() -> None:
    detector = AlarmPatternDetector()
    with pytest.raises(ValueError):
        detector.push(np.zeros((2, 160), dtype=np.float32))
    assert detector.push(np.zeros(0, dtype=np.float32)) == []
    assert detector.push(np.full(1000, np.nan, dtype=np.float32)) == []
    with pytest.raises(ValueError):
        AlarmPatternConfig(timing_tolerance=0.0)
    with pytest.raises(ValueError):
        AlarmPatternConfig(temporal3_cycles=0)
    with pytest.raises(ValueError):
        AlarmPatternDetector(8000, AlarmPatternConfig(max_tone_hz=4500.0))


def test_keeps_its_own_copy_of_each_chunk() -> None:
    """A caller may refill one buffer for every chunk (the detector queues short chunks)."""
    signal, _ = alarm(TEMPORAL3, "piezo", 3100.0, 12.0, 1.3)
    samples = signal.astype(np.float32)
    detector = AlarmPatternDetector(SR)
    buffer = np.empty(200, dtype=np.float32)
    matches: list[AlarmPatternMatch] = []
    for at in range(0, len(samples), len(buffer)):
        chunk = samples[at : at + len(buffer)]
        buffer[: len(chunk)] = chunk
        matches += detector.push(buffer[: len(chunk)])
    assert matches == run(signal)
    assert matches
