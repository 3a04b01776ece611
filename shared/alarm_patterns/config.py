"""The alarm pattern detector's parameters and what it reports (``AlarmPatternMatch``)."""

from __future__ import annotations

from dataclasses import dataclass

from shared.alarm_patterns.rhythm import PatternName

MAX_CYCLES_KEPT = 4  # a track keeps the pulses of this many cycles: the most a match may need


@dataclass(frozen=True)
class AlarmPatternConfig:
    """Detector parameters; the defaults are what the tests and the bench were measured with.

    Levels are in dB; a bin's level reads as the dBFS amplitude of a sine centred on it.
    """

    min_tone_hz: float = 400.0  # the band a pulse's fundamental must lie in
    max_tone_hz: float = 4500.0
    onset_snr_db: float = 10.0  # a pulse starts this far above the channel's noise floor ...
    tonality_db: float = 10.0  # ... and this far above the mean of the bins 3-8 bins away
    onset_rise_db: float = 6.0  # ... having risen this much in 30 ms; also the dip/rise that cuts
    release_snr_db: float = 5.0  # a sounding ends under floor + this ...
    release_drop_db: float = 8.0  # ... or 0.1 s this far under its reference; a pulse's ends too
    reference_decay_db_per_s: float = 60.0  # faster than a tone's drift, slower than a room's tail
    min_level_dbfs: float = -70.0  # quieter tones are ignored, however clean
    timing_tolerance: float = 0.3  # relative, on each pulse, gap and long gap (the standards say 0.1)
    reverb_allowance_s: float = 0.08  # a room may move a pulse's end, either way, by this much more
    frequency_tolerance: float = 0.03  # relative; pulses within this of each other share a track
    level_spread_db: float = 6.0  # an alarm's pulses are equally loud: largest minus smallest peak
    temporal3_cycles: int = 2  # groups in a row before a T3 match; 1 also fires on appliance beeps
    temporal4_cycles: int = 2

    def __post_init__(self) -> None:
        if not 0.0 < self.min_tone_hz < self.max_tone_hz:
            raise ValueError("need 0 < min_tone_hz < max_tone_hz")
        if not 0.0 < self.timing_tolerance < 1.0:
            raise ValueError(f"timing_tolerance must be in (0, 1), got {self.timing_tolerance}")
        if not 0.0 < self.frequency_tolerance < 0.5:
            raise ValueError(f"frequency_tolerance must be in (0, 0.5), got {self.frequency_tolerance}")
        if self.temporal3_cycles < 1 or self.temporal4_cycles < 1:
            raise ValueError("temporal3_cycles and temporal4_cycles must be >= 1")
        if self.temporal3_cycles > MAX_CYCLES_KEPT or self.temporal4_cycles > MAX_CYCLES_KEPT:
            raise ValueError(f"at most {MAX_CYCLES_KEPT} cycles can be required")
        for name in ("onset_snr_db", "tonality_db", "onset_rise_db", "release_drop_db"):
            if getattr(self, name) <= 0.0:
                raise ValueError(f"{name} must be positive")
        if self.release_snr_db > self.onset_snr_db:
            raise ValueError("release_snr_db must not exceed onset_snr_db")
        if self.reverb_allowance_s < 0.0 or self.reference_decay_db_per_s < 0.0:
            raise ValueError("reverb_allowance_s and reference_decay_db_per_s must be >= 0")


@dataclass(frozen=True)
class AlarmPatternMatch:
    """A completed cycle of a standard alarm pattern.

    ``stream_time_s`` is when the last pulse of the completing group ended (the match is
    returned by the push holding the audio 0.2 to 0.6 s after it: the room's tail must die
    away first; a partial match 0.9 to 1.2 s after it for T3, 0.4 to 0.6 s for T4, once the
    next beat would have begun). ``confidence`` grades how textbook the match is (timing,
    loudness over the floor, cycles seen): any full match already means the full rhythm was
    heard at least the configured number of times.

    ``partial``: the group completed fewer groups in a row than the configured cycles (at
    least one, after a quiet at least the pattern's long gap). An alarm starting and an
    appliance saying "done" both sound like that: evidence, never a detection by itself.
    """

    pattern: PatternName
    class_key: str  # "fire" for temporal3, "gas" for temporal4
    confidence: float
    stream_time_s: float
    tone_hz: float
    partial: bool = False
