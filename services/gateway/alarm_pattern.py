"""Recognises the standard alarm sound patterns in a live stream: signal processing, no model.

An AudioSet tagger hears a smoke alarm's beeps but not their rhythm, and the rhythm is what
the standards fix: ISO 8201 / NFPA 72 temporal-three (T3, smoke: three 0.5 s pulses 0.5 s
apart, then 1.5 s off) and UL 2034 / NFPA 720 temporal-four (T4, carbon monoxide: four
0.1 s pulses 0.1 s apart, then about 5 s off). This detector looks for exactly that.

How a stream becomes matches, every stage incremental:

1. frames: 32 ms Hann windows every 10 ms, power spectrum by ``rfft`` (batched over at least
   0.1 s of audio); the channels are the FFT bins between ``min_tone_hz`` and
   ``max_tone_hz`` (a piezo's 2.8-3.5 kHz fundamental and the 520 Hz low-frequency square
   wave both fall inside; harmonics above 8 kHz fold away at 16 kHz and do not matter);
2. noise floor per channel: the minimum over the last 2 s of 100 ms mean powers, so it
   follows speech, TV or music underneath, and rises to meet a tone that never stops;
3. onsets: a bin that is a spectral peak, ``tonality_db`` above its neighbours,
   ``onset_snr_db`` above its floor and ``onset_rise_db`` above its own level 30 ms
   earlier (sounders switch on; voices and music mostly swell) starts a sounding, which
   follows the peak to a neighbouring bin and lasts until the level sinks under the floor
   plus ``release_snr_db`` or stays ``release_drop_db`` under a slowly sinking reference
   (a room's tail, which sinks faster);
4. pulses: a sounding is cut at each fresh onset inside it, seen as a dip
   ``onset_rise_db`` deep or a rise as steep as an onset: in a reverberant room the tail
   of a T4 pulse fills the 0.1 s gap, so four pulses sound as one with dips. Each piece
   keeps the frames within ``release_drop_db`` of its plateau, so tails, swells and rooms
   that sink a steady tone under its onset do not move its ends;
5. tracks: pulses are grouped by pitch (within ``frequency_tolerance``): an alarm keeps
   its pitch, speech and music do not;
6. patterns: when a track's newest pulse completes a group (3 for T3, 4 for T4), the
   track's history is read backwards against the standard's timing (``alarm_rhythm``:
   ``timing_tolerance`` on each pulse, gap and long gap, as the standards allow 10 % but
   real devices, phone microphones and rooms need more, hence 30 % by default; pulses alike
   in level, pitch and beat). A match needs ``temporal3_cycles`` / ``temporal4_cycles``
   groups in a row: one group of three beeps is how appliances say "done", two at the
   standard rhythm is an alarm. Fewer groups, after a quiet and with nothing sounding at
   their pitch by the time the next beat would have begun, make a *partial* match: the
   start of an alarm, or an appliance, so it is evidence to weigh with the model's scores
   (the ``Detector`` lowers the class's threshold for a while), never a detection alone;
7. output: one match per completed group while the pattern continues. Several tracks may
   complete the same group (a square wave's odd harmonics each make a track); the match
   names the lowest of those within 20 dB of the loudest (the fundamental, unless speech
   or music masks it) and the others are dropped, as is a partial match where a full one
   completes the same group.

Time is stream time (seconds of audio pushed since the detector was made), so the matches
depend only on the samples, never on how they were chunked or how fast they arrived.
"""

from __future__ import annotations

import math
import statistics
from collections import deque
from dataclasses import dataclass, field

import numpy as np
from numpy.lib.stride_tricks import as_strided

from services.gateway.alarm_rhythm import (
    PATTERNS,
    TEMPORAL4,
    Candidate,
    PatternName,
    Pulse,
    RhythmReader,
)

__all__ = ["AlarmPatternConfig", "AlarmPatternDetector", "AlarmPatternMatch", "PatternName"]

_FRAME_S = 0.010  # hop: 10 ms resolves T4's 100 ms pulses and gaps
_WINDOW_S = 0.032  # at least this long (rounded up to a power of two): ~31 Hz bins
_MIN_BATCH_S = 0.1  # audio analysed per numpy pass, at least (fewer calls per stream-second)
_BATCH_FRAMES = 256  # at most: bounds the memory one large push takes
_FLOOR_BLOCK_FRAMES = 10  # floor statistics per 100 ms block ...
_FLOOR_BLOCKS = 20  # ... minimum over the last 2 s: longer than any pulse, shorter than a gap run
_NEIGHBOUR_INNER, _NEIGHBOUR_OUTER = 3, 8  # tonality: bins 3..8 away, outside Hann's main lobe
_POWER_FLOOR = 1e-12  # -120 dBFS: keeps logarithms finite in digital silence
_RISE_S = 0.03  # an onset rises onset_rise_db within this
_RAMP_FRAMES = 3  # frames a 32 ms window takes to rise onto a tone
_EXCLUSION_BINS = 2  # Hann's main lobe: no second sounding this close to one
_RELEASE_FRAMES = 2  # frames under the floor plus release_snr_db that end a sounding ...
_DEAD_S = 0.1  # ... or this long release_drop_db under its sinking reference
_MAX_PULSE_S = 4.0  # a tone this long is cut and counted as one (invalid) pulse
_MAX_ACTIVE_PULSES = 8
_BLIP_S = 0.04  # shorter pieces are noise, neither pulses nor breaks in a pattern
_ECHO_MEMORY_S = 0.3  # a piece starting this soon after a pulse at its pitch ended ...
_ECHO_DB = 4.0  # ... peaking this far below it ...
_ECHO_MAX_S = 0.15  # ... and no longer near its own peak is a swell of the room's tail
_IN_TUNE_FRACTION = 0.8  # of a steady pulse's frames, within frequency_tolerance of its median
_MAX_TRACKS = 16
_MAX_CYCLES_KEPT = 4
_HOLD_S = 0.15  # wait this long for other tracks completing the same group ...
_HARMONICS_DB = 20.0  # ... and name the lowest this close to the loudest (a square's 3rd: -10 dB)
_DEDUPE_S = 1.0  # one match per group however many tracks complete it, and no partial one beside it


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
        if self.temporal3_cycles > _MAX_CYCLES_KEPT or self.temporal4_cycles > _MAX_CYCLES_KEPT:
            raise ValueError(f"at most {_MAX_CYCLES_KEPT} cycles can be required")
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


@dataclass
class _ActivePulse:
    channel: int
    onset_frame: int
    peak_db: float
    floor_db: float  # the channel's noise floor at the onset
    reference_db: float  # the level, sinking at most reference_decay_db_per_s
    levels: list[float]  # the peak's level in each frame since the onset ...
    hz: list[float]  # ... and its frequency
    below: int = 0  # frames in a row under the floor plus release_snr_db
    quiet: int = 0  # frames in a row release_drop_db under the reference
    echo_of_db: float | None = None  # peak of a pulse that ended here just before


@dataclass
class _Track:
    tone_hz: float
    pulses: deque[Pulse]


@dataclass(frozen=True)
class _Held:
    candidate: Candidate
    track: _Track
    newest: Pulse  # the track's newest piece when the candidate was made


@dataclass
class _Hold:
    deadline_frame: int
    held: list[_Held] = field(default_factory=list)


class AlarmPatternDetector:
    """One stream's alarm pattern detector; push every sample once, in order.

    >>> detector = AlarmPatternDetector()
    >>> detector.push(np.zeros(16000, dtype=np.float32))
    []

    Memory is bounded (a few kilobytes of state plus the push being analysed) and the cost
    is a batched FFT per 10 ms plus a little bookkeeping for each tone heard.
    """

    def __init__(self, sample_rate: int = 16000, config: AlarmPatternConfig | None = None) -> None:
        self.config = config or AlarmPatternConfig()
        if sample_rate <= 0:
            raise ValueError(f"sample_rate must be positive, got {sample_rate}")
        if self.config.max_tone_hz >= sample_rate / 2:
            raise ValueError(f"max_tone_hz must be below the Nyquist frequency {sample_rate / 2}")
        self.sample_rate = sample_rate
        self._hop = round(_FRAME_S * sample_rate)
        self._win = 1 << math.ceil(math.log2(_WINDOW_S * sample_rate))
        self._frame_s = self._hop / sample_rate
        self._bin_hz = sample_rate / self._win
        self._window = np.hanning(self._win).astype(np.float32)
        # Scaled so that a sine of amplitude A centred on a bin reads A**2.
        self._scale = float((2.0 / self._window.sum()) ** 2)
        self._lo = max(math.ceil(self.config.min_tone_hz / self._bin_hz), _NEIGHBOUR_OUTER + 1)
        self._hi = math.floor(self.config.max_tone_hz / self._bin_hz)
        self._hi = min(self._hi, self._win // 2 - _NEIGHBOUR_OUTER - 1)
        self._channels = self._hi - self._lo + 1

        self._tail = np.zeros(0, dtype=np.float32)  # samples of the next frame(s) not yet complete
        self._queued: list[np.ndarray] = []
        self._queued_len = 0
        self._frame = 0  # index of the next frame to analyse

        # The block's frames are kept and summed at once, in one order, whatever the chunking.
        self._block = np.zeros((_FLOOR_BLOCK_FRAMES, self._channels))
        self._block_frames = 0
        self._block_means = np.full((_FLOOR_BLOCKS, self._channels), np.inf)  # a ring, oldest overwritten
        self._blocks_done = 0
        self._floor_db = np.full(self._channels, np.inf)  # no pulse until a first block is in

        self._active: dict[int, _ActivePulse] = {}
        self._reference_decay_db = self.config.reference_decay_db_per_s * self._frame_s
        self._rise_frames = round(_RISE_S / self._frame_s)
        self._min_batch = round(_MIN_BATCH_S / self._frame_s)
        self._dead_frames = round(_DEAD_S / self._frame_s)
        self._max_frames = round(_MAX_PULSE_S / self._frame_s)
        self._history = np.full((self._rise_frames, self._channels), np.inf)  # levels of the last frames
        self._recent: dict[int, tuple[int, float]] = {}  # channel -> (expiry frame, peak) of ended pulses
        self._tracks: list[_Track] = []
        self._rhythm = RhythmReader(
            timing_tolerance=self.config.timing_tolerance,
            reverb_allowance_s=self.config.reverb_allowance_s,
            level_spread_db=self.config.level_spread_db,
            onset_snr_db=self.config.onset_snr_db,
            frame_s=self._frame_s,
            hz_tolerance=self._hz_tolerance,
        )
        self._holds: dict[PatternName, _Hold] = {}
        self._last_reported: dict[tuple[PatternName, bool], float] = {}  # (pattern, partial) -> time

    def push(self, samples: np.ndarray) -> list[AlarmPatternMatch]:
        """Take the next mono samples (float, nominally in [-1, 1]) and return the new matches.

        Chunks may be of any size; samples are clipped to [-1, 1] and non-finite ones count
        as silence. Raises ValueError for anything but a 1-D array.
        """
        chunk = np.asarray(samples, dtype=np.float32)
        if chunk.ndim != 1:
            raise ValueError(f"expected 1-D mono samples, got shape {chunk.shape}")
        if chunk.size == 0:
            return []
        if not np.isfinite(chunk).all():
            chunk = np.nan_to_num(chunk, nan=0.0, posinf=0.0, neginf=0.0)
        chunk = np.clip(chunk, -1.0, 1.0)  # also a copy: the caller may reuse its buffer
        self._queued.append(chunk)
        self._queued_len += chunk.size
        # Analysing a few frames at a time would spend more on numpy calls than on sums:
        # wait for _MIN_BATCH_S of audio (the matches are the same, reported that much later).
        if self._tail.size + self._queued_len < self._win + self._hop * (self._min_batch - 1):
            return []
        data = np.concatenate([self._tail, *self._queued])
        self._queued.clear()
        self._queued_len = 0
        frames = (data.size - self._win) // self._hop + 1
        matches: list[AlarmPatternMatch] = []
        for first in range(0, frames, _BATCH_FRAMES):
            count = min(_BATCH_FRAMES, frames - first)
            start = first * self._hop
            matches += self._analyse(data[start : start + (count - 1) * self._hop + self._win], count)
        self._tail = data[frames * self._hop :].copy()
        return matches

    # -- spectral analysis (vectorised over the frames of a push) ------------------------------

    def _analyse(self, data: np.ndarray, count: int) -> list[AlarmPatternMatch]:
        step = data.strides[0]
        frames = as_strided(data, shape=(count, self._win), strides=(self._hop * step, step), writeable=False)
        pad = _NEIGHBOUR_OUTER
        spectrum = np.fft.rfft(frames * self._window, axis=1)[:, self._lo - pad : self._hi + pad + 1]
        power = (spectrum.real**2 + spectrum.imag**2) * self._scale
        np.maximum(power, _POWER_FLOOR, out=power)
        level = 10.0 * np.log10(power)  # padded: column c + pad is channel c
        k = self._channels
        own = power[:, pad : pad + k]
        own_db = level[:, pad : pad + k]
        sums = np.concatenate([np.zeros((count, 1)), np.cumsum(power, axis=1, dtype=np.float64)], axis=1)
        inner, outer = _NEIGHBOUR_INNER, _NEIGHBOUR_OUTER
        left = sums[:, pad - inner + 1 : pad - inner + 1 + k] - sums[:, pad - outer : pad - outer + k]
        right = sums[:, pad + outer + 1 : pad + outer + 1 + k] - sums[:, pad + inner : pad + inner + k]
        neighbours = (left + right) / (2 * (outer - inner + 1))
        neighbours_db = 10.0 * np.log10(np.maximum(neighbours, _POWER_FLOOR))
        is_peak = (own >= power[:, pad - 1 : pad - 1 + k]) & (own > power[:, pad + 1 : pad + 1 + k])
        floor_db = self._floor_per_frame(own, count)
        history = np.concatenate([self._history, own_db])
        before_db = history[:count]  # each frame's level _RISE_S earlier
        self._history = history[count:]
        cfg = self.config
        onset = (
            is_peak
            & (own_db - neighbours_db >= cfg.tonality_db)
            & (own_db - floor_db >= cfg.onset_snr_db)
            & (own_db >= cfg.min_level_dbfs)
            & (own_db - before_db >= cfg.onset_rise_db)
        )
        rows, channels = np.nonzero(onset)
        onsets: dict[int, list[int]] = {}
        for row, channel in zip(rows.tolist(), channels.tolist()):
            onsets.setdefault(row, []).append(channel)

        matches: list[AlarmPatternMatch] = []
        for row in range(count):
            if not (self._active or self._holds or row in onsets):
                continue
            frame = self._frame + row
            self._follow_pulses(frame, level[row], floor_db[row])
            if row in onsets:
                self._start_pulses(frame, onsets[row], level[row], floor_db[row])
            matches += self._release_holds(frame)
        self._frame += count
        return matches

    def _floor_per_frame(self, own: np.ndarray, count: int) -> np.ndarray:
        """Each frame's noise floor (dB per channel) from the blocks completed before it."""
        floor_db = np.empty((count, self._channels))
        row = 0
        while row < count:
            take = min(count - row, _FLOOR_BLOCK_FRAMES - self._block_frames)
            floor_db[row : row + take] = self._floor_db
            self._block[self._block_frames : self._block_frames + take] = own[row : row + take]
            self._block_frames += take
            row += take
            if self._block_frames == _FLOOR_BLOCK_FRAMES:
                self._block_means[self._blocks_done % _FLOOR_BLOCKS] = self._block.mean(axis=0)
                self._blocks_done += 1
                self._block_frames = 0
                lowest = self._block_means.min(axis=0)
                self._floor_db = 10.0 * np.log10(np.maximum(lowest, _POWER_FLOOR))
        return floor_db

    # -- pulses (per frame, only while something is sounding) ----------------------------------

    def _tone_hz(self, level: np.ndarray, channel: int) -> float:
        """The peak's frequency, interpolated between bins on a parabola through the dB levels."""
        column = channel + _NEIGHBOUR_OUTER
        a, b, c = float(level[column - 1]), float(level[column]), float(level[column + 1])
        curvature = a - 2.0 * b + c
        offset = 0.5 * (a - c) / curvature if curvature < 0.0 else 0.0
        return (self._lo + channel + offset) * self._bin_hz

    def _follow_pulses(self, frame: int, level: np.ndarray, floor_db: np.ndarray) -> None:
        cfg = self.config
        pad = _NEIGHBOUR_OUTER
        for channel in sorted(self._active):
            pulse = self._active.pop(channel)
            # Follow the peak to a louder neighbouring bin (slow drift, scalloping).
            best = channel
            for neighbour in (channel - 1, channel + 1):
                if 0 <= neighbour < self._channels and level[neighbour + pad] > level[best + pad]:
                    best = neighbour
            now_db = float(level[best + pad])
            floor = float(floor_db[best])
            age = frame - pulse.onset_frame
            pulse.channel = best
            pulse.levels.append(now_db)
            pulse.hz.append(self._tone_hz(level, best))
            pulse.peak_db = max(pulse.peak_db, now_db)
            pulse.reference_db = max(now_db, pulse.reference_db - self._reference_decay_db)
            pulse.below = pulse.below + 1 if now_db < floor + cfg.release_snr_db else 0
            pulse.quiet = pulse.quiet + 1 if now_db < pulse.reference_db - cfg.release_drop_db else 0
            if pulse.below >= _RELEASE_FRAMES or pulse.quiet >= self._dead_frames or age >= self._max_frames:
                self._end_pulse(pulse, frame)
            elif best in self._active:  # two pulses met on one bin: keep the louder
                other = self._active[best]
                if other.peak_db < pulse.peak_db:
                    self._active[best] = pulse
            else:
                self._active[best] = pulse

    def _start_pulses(self, frame: int, channels: list[int], level: np.ndarray, floor_db: np.ndarray) -> None:
        pad = _NEIGHBOUR_OUTER
        for channel in sorted(channels, key=lambda c: -float(level[c + pad])):
            if len(self._active) >= _MAX_ACTIVE_PULSES:
                return
            if any(abs(channel - other) <= _EXCLUSION_BINS for other in self._active):
                continue
            self._begin_pulse(channel, frame, level, float(floor_db[channel]))

    def _echo_of(self, channel: int, frame: int) -> float | None:
        """The peak of a pulse that ended at ``channel`` less than _ECHO_MEMORY_S ago, if any."""
        for old in [c for c, (expiry, _) in self._recent.items() if frame > expiry]:
            del self._recent[old]
        before = [peak for c, (_, peak) in self._recent.items() if abs(c - channel) <= _EXCLUSION_BINS]
        return max(before) if before else None

    def _begin_pulse(self, channel: int, frame: int, level: np.ndarray, floor_db: float) -> None:
        now_db = float(level[channel + _NEIGHBOUR_OUTER])
        hz = self._tone_hz(level, channel)
        pulse = _ActivePulse(channel, frame, now_db, floor_db, now_db, [now_db], [hz])
        pulse.echo_of_db = self._echo_of(channel, frame)
        self._active[channel] = pulse

    def _end_pulse(self, active: _ActivePulse, frame: int) -> None:
        """Cut ``active`` (closed at ``frame``) into the pulses it held and hand them to its track.

        A room's tail can fill the short gaps of T4 so that four pulses sound as one with
        dips: each dip ``onset_rise_db`` deep on both sides separates two pulses. Each piece
        then spans the frames within ``release_drop_db`` of its plateau (upper-quartile
        level), so neither a tail, nor a swell before the onset, nor a room that sinks the
        steady tone under its onset moves its ends. A piece far quieter than the one before
        (a swell of its tail) or shorter than a blip is dropped.
        """
        drop_db = self.config.release_drop_db
        louder_db = active.echo_of_db
        for start, stop in _pieces(active.levels, self.config.onset_rise_db):
            levels = active.levels[start:stop]
            plateau = sorted(levels)[(3 * (len(levels) - 1)) // 4]
            loud = [i for i, db in enumerate(levels) if db >= plateau - drop_db]
            first, last = start + loud[0], start + loud[-1] + 1
            peak_db = max(levels)
            hz = active.hz[first:last]
            tone_hz = statistics.median(hz)
            tolerance = self._hz_tolerance(tone_hz)
            in_tune = sum(1 for f in hz if abs(f - tone_hz) <= tolerance)
            pulse = Pulse(
                onset_s=self._frame_time(active.onset_frame + first),
                offset_s=self._frame_time(active.onset_frame + last),
                tone_hz=tone_hz,
                peak_db=peak_db,
                snr_db=peak_db - active.floor_db,
                steady=in_tune >= _IN_TUNE_FRACTION * len(hz),
            )
            echo = (
                louder_db is not None
                and peak_db < louder_db - _ECHO_DB
                and sum(1 for db in levels if db >= peak_db - drop_db) * self._frame_s <= _ECHO_MAX_S
            )
            if pulse.duration_s >= _BLIP_S and not echo:
                self._add_to_track(pulse, frame)
                louder_db = peak_db
                expiry = active.onset_frame + last + round(_ECHO_MEMORY_S / self._frame_s)
                self._recent[active.channel] = (expiry, peak_db)

    def _frame_time(self, frame: int) -> float:
        return (frame * self._hop + self._win / 2) / self.sample_rate

    def _hz_tolerance(self, hz: float) -> float:
        return max(self.config.frequency_tolerance * hz, 0.75 * self._bin_hz)

    # -- tracks and patterns (per pulse) -------------------------------------------------------

    def _add_to_track(self, pulse: Pulse, frame: int) -> None:
        """File ``pulse`` under its pitch and look for the patterns there."""
        idle_s = TEMPORAL4.long_off_s * (1 + self.config.timing_tolerance) + 1.0
        self._tracks = [t for t in self._tracks if pulse.onset_s - t.pulses[-1].offset_s < idle_s]
        track = min(self._tracks, key=lambda t: abs(t.tone_hz - pulse.tone_hz), default=None)
        if track is not None and abs(track.tone_hz - pulse.tone_hz) <= self._hz_tolerance(pulse.tone_hz):
            if pulse.peak_db < track.pulses[-1].peak_db - self.config.level_spread_db:
                return  # quieter than the track's pulses: something else at that pitch
        elif any(self._rhythm.on_ok(spec, pulse) for spec in PATTERNS):
            if len(self._tracks) >= _MAX_TRACKS:  # drop the least promising: fewest pulses, then stalest
                self._tracks.remove(min(self._tracks, key=lambda t: (len(t.pulses), t.pulses[-1].offset_s)))
            track = _Track(pulse.tone_hz, deque(maxlen=_MAX_CYCLES_KEPT * TEMPORAL4.pulses + 1))
            self._tracks.append(track)
        else:
            return  # could start no pattern and belongs to none
        track.tone_hz = 0.5 * (track.tone_hz + pulse.tone_hz)
        track.pulses.append(pulse)
        cycles = (self.config.temporal3_cycles, self.config.temporal4_cycles)
        for spec, needed in zip(PATTERNS, cycles):
            candidate = self._rhythm.match(spec, needed, track.pulses)
            if candidate is not None:
                self._hold(_Held(candidate, track, track.pulses[-1]), frame)

    def _hold(self, held: _Held, frame: int) -> None:
        """Hold a candidate for the others completing the same group (harmonics, other rooms'
        paths); a partial one also until the next pulse in a row would have begun, to see
        that none did: a group is whole, not the start of a longer run of beeps."""
        candidate = held.candidate
        name = candidate.spec.name
        # A full match supersedes a partial one of the same group; a partial one adds nothing.
        kinds = (False, True) if candidate.partial else (False,)
        for last in (self._last_reported.get((name, partial)) for partial in kinds):
            if last is not None and candidate.stream_time_s - last < _DEDUPE_S:
                return
        wait_s = _HOLD_S + (self._rhythm.longest_gap_s(candidate.spec) if candidate.partial else 0.0)
        deadline = frame + round(wait_s / self._frame_s)
        hold = self._holds.get(name)
        if hold is None:
            hold = self._holds[name] = _Hold(deadline)
        elif all(h.candidate.partial for h in hold.held):
            # A full match waits for its harmonics as if alone; a partial one for its own gap.
            hold.deadline_frame = deadline if not candidate.partial else max(deadline, hold.deadline_frame)
        hold.held.append(held)

    def _release_holds(self, frame: int) -> list[AlarmPatternMatch]:
        matches = []
        for name in [n for n, hold in self._holds.items() if frame >= hold.deadline_frame]:
            held = self._holds.pop(name).held
            full = [h.candidate for h in held if not h.candidate.partial]
            candidates = full or [h.candidate for h in held if self._whole(h)]
            if not candidates:
                continue
            # Harmonics of one sounder each make a track; name the lowest of the loud ones.
            loudest = max(c.peak_db for c in candidates)
            audible = [c for c in candidates if c.peak_db >= loudest - _HARMONICS_DB]
            best = min(audible, key=lambda c: c.tone_hz)
            self._last_reported[(name, best.partial)] = best.stream_time_s
            matches.append(
                AlarmPatternMatch(
                    pattern=best.spec.name,
                    class_key=best.spec.class_key,
                    confidence=best.confidence,
                    stream_time_s=best.stream_time_s,
                    tone_hz=best.tone_hz,
                    partial=best.partial,
                )
            )
        return matches

    def _whole(self, held: _Held) -> bool:
        """Nothing sounded at the candidate's pitch after its group: no piece was filed on its
        track since (a fourth beep, or the last one still growing) and none is sounding."""
        if held.track.pulses[-1] is not held.newest:
            return False
        tone_hz = held.candidate.tone_hz
        tolerance = self._hz_tolerance(tone_hz)
        return not any(
            self._frame_time(active.onset_frame) > held.candidate.stream_time_s
            and abs(active.hz[-1] - tone_hz) <= tolerance
            for active in self._active.values()
        )


def _pieces(levels: list[float], depth_db: float) -> list[tuple[int, int]]:
    """``[start, stop)`` ranges of ``levels`` split where a new onset shows.

    An onset shows as a dip ``depth_db`` under the levels on both sides (a room's tail
    filling the gap), or as a rise of ``depth_db`` within three frames once a piece is past
    its own ramp (a louder tone starting over a quieter one at that pitch).
    """
    pieces = []
    start = 0
    peak = levels[0]
    dip: int | None = None
    for i, db in enumerate(levels):
        if dip is not None:
            if db < levels[dip]:
                dip = i
            elif db >= levels[dip] + depth_db:
                pieces.append((start, dip))
                start, peak, dip = dip + 1, db, None
            continue
        if i - start > _RAMP_FRAMES:
            low = min(range(i - _RAMP_FRAMES, i), key=levels.__getitem__)
            if db >= levels[low] + depth_db:
                pieces.append((start, low))
                start, peak = low + 1, db
                continue
        if db > peak:
            peak = db
        elif db <= peak - depth_db:
            dip = i
    pieces.append((start, len(levels)))
    return pieces
