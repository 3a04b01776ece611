"""The daycare rule's cues heard in the sound itself: crying, adult shouting and blows, read off
the stream's 16 kHz audio with no model (docs/daycare.md says it in plain words).

The AudioSet tags the model sends (:func:`shared.daycare.rule.cue_levels`) barely name these
sounds on the stand-ins we can compose, so each cue is also measured from what the sound is made
of. Each 10 ms frame gets a pitch and how periodic it is (:func:`pitch_track`, YIN: a voice or a
cry is periodic; noise, a knock or a room is not; *voiced* under :data:`VOICED_APERIODICITY`),
its level in the voice band, and its level in :data:`BLOW_BANDS` bands from 100 Hz to 7.6 kHz.
Voiced frames form runs (bridging dropouts of :data:`_RUN_BRIDGE_FRAMES`), each judged whole:

* **crying**: a run of :data:`CRY_RUN_S` or more whose median pitch is a child's
  (:data:`CRY_MIN_HZ` and up), on one contour (:data:`CRY_ON_CONTOUR` of its frames within
  :data:`CRY_CONTOUR` of that median: a melody, a chord or birdsong jumps between notes and
  octaves), gliding (:data:`CRY_GLIDE` between its pitch quartiles: a beep or a held note does
  not) and holding its loudness (:data:`CRY_HELD` of it within :data:`CRY_HOLD_DB` of its loudest:
  talk dips at every consonant). Level: the window's time in such runs, over :data:`CRY_FULL_S`.
* **adult shouting**: a run whose median pitch is an adult's (:data:`ADULT_HZ`) and is not a cry,
  in its frames :data:`SHOUT_OVER_FLOOR_DB` or more over the stream's floor (the room's quiet
  level). Level: the window's time in such frames, over :data:`SHOUT_FULL_S`. What a voice says,
  and how strained it is, is not read: any adult voice that loud counts.
* **blows**: a sudden rise across the spectrum that dies away. At a frame where the
  :data:`BLOW_RISING_BANDS`-th largest band rise over the :data:`BLOW_LOOKBACK_FRAMES` frames
  before reaches :data:`BLOW_FROM_DB`, the bands that rose must include a low and a high one (a
  thump and a crack), fall :data:`BLOW_DECAY_DB` within :data:`BLOW_SETTLE_FRAMES`, stand above
  everything of the :data:`BLOW_RECENT_FRAMES` before and :data:`BLOW_OVER_QUIET_DB` above the
  quiet of the last seconds, and no voice may start with it (a syllable). Level: the largest such
  rise, from :data:`BLOW_FROM_DB` (0) to :data:`BLOW_FULL_DB` (1).

:class:`AcousticCues` keeps each frame's analysis for the last :data:`_HISTORY_S` (a frame is
analysed once however many windows it is in, and a cry that began before a window is judged
whole) and the floor, so it is one per stream, fed every window in order. The constants were set
by hand on the tuning side of ``hearo daycare-eval``'s scenes and on household calibration audio.
"""

from __future__ import annotations

import functools
import math

import numpy as np

from shared.daycare.rule import Cue

AUDIO_RATE = 16_000  # the ring buffer's audio
WINDOW_S = 2.0  # a model window's span, which each call judges
_FRAME_S = 0.01
_HOP = round(_FRAME_S * AUDIO_RATE)
F0_MIN_HZ, F0_MAX_HZ = 100.0, 900.0
_MAX_LAG = math.ceil(AUDIO_RATE / F0_MIN_HZ)
_FRAME_SAMPLES = 3 * _MAX_LAG  # what one frame's analysis reads: YIN's window and its longest lag
_SILENT = 1e-9  # a frame's mean square under this (-90 dBFS) is silence, neither voiced nor loud
# YIN's threshold for a period (its normalised difference dips under this), and the
# aperiodicity a voiced frame stays under.
_YIN_DIP = 0.15
VOICED_APERIODICITY = 0.3
CRY_MIN_HZ = 300.0
CRY_RUN_S = 0.5
CRY_FULL_S = 1.0
CRY_GLIDE = 1.03  # the run's pitch spread, its 75th over its 25th percentile
# A wail holds its loudness: this share of the run within CRY_HOLD_DB of its loudest frame
# (talk dips at every consonant and syllable).
CRY_HELD = 0.65
# One contour: this share of the run's voiced frames within CRY_CONTOUR of its median pitch.
CRY_ON_CONTOUR = 0.85
CRY_CONTOUR = 1.3
CRY_HOLD_DB = 6.0
# A run survives a dropout this short (a crack in the voice, a frame the tracker missed).
_RUN_BRIDGE_FRAMES = 3
# An adult's voice: a run's median pitch in this range (women's raised voices reach 350 Hz),
# unless the run is a cry.
ADULT_HZ = (120.0, 350.0)
SHOUT_OVER_FLOOR_DB = 15.0
SHOUT_FULL_S = 0.6
BLOW_BANDS = 16
BLOW_BAND_HZ = (100.0, 7_600.0)  # 7.6 kHz: the band the model hears on every input (its band mask)
BLOW_LOOKBACK_FRAMES = 3
BLOW_RISING_BANDS = 4  # the rise read: of the band at this rank from the top
BLOW_SETTLE_FRAMES = 15
BLOW_DECAY_DB = 6.0
BLOW_MAX_VOICED = 4  # voiced frames within the settling time that make it a voice
_VOICED_BEFORE = 5  # the frames before a rise read for a voice already going on
_SAME_VOICE = 1.2  # a pitch within this ratio is the voice that was going on
BLOW_RECENT_FRAMES = 100  # the second a blow must stand above
BLOW_OVER_QUIET_DB = 20.0
BLOW_FROM_DB, BLOW_FULL_DB = 6.0, 18.0
_VOICE_BAND_HZ = (100.0, 4_000.0)
# The floor follows a quieter window at once and a louder one slowly (this share of the
# difference a window), so a long shouting match does not become the room.
_FLOOR_RISE = 0.05
_HISTORY_S = 4.0  # a window and the 2 s before it
_FFT = 512


# A blow rises both under 400 Hz (its thump) and over 2 kHz (its crack): a breath, a hiss or a
# child's shriek rises in the mids and highs only, a thump through a wall in the lows only.
_BAND_EDGES_HZ = np.geomspace(*BLOW_BAND_HZ, BLOW_BANDS + 1)
_LOW_BANDS = _BAND_EDGES_HZ[1:] <= 400.0
_HIGH_BANDS = _BAND_EDGES_HZ[:-1] >= 2_000.0


@functools.lru_cache(maxsize=1)
def _spectral_tables() -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The analysis window (400 samples, 25 ms, in the middle of a frame's span), the bands'
    pooling of FFT bins ``[bins, 16]`` and the voice band's bins."""
    window = np.zeros(_FRAME_SAMPLES)
    start = (_FRAME_SAMPLES - 400) // 2
    window[start : start + 400] = np.hanning(400)
    freqs = np.fft.rfftfreq(_FFT, 1.0 / AUDIO_RATE)
    band_of = np.digitize(freqs, _BAND_EDGES_HZ) - 1
    pooling = np.zeros((freqs.size, BLOW_BANDS))
    for band in range(BLOW_BANDS):
        members = band_of == band
        pooling[members, band] = 1.0 / max(int(members.sum()), 1)
    voice = (freqs >= _VOICE_BAND_HZ[0]) & (freqs <= _VOICE_BAND_HZ[1])
    return window, pooling, voice


def pitch_track(audio: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Each 10 ms frame's fundamental (Hz) and aperiodicity (0: a perfect period; 1: noise or
    silence) of 16 kHz float mono ``audio``, frames starting every 10 ms while one fits
    (:data:`_FRAME_SAMPLES`), by YIN (de Cheveigné and Kawahara, 2002): the difference function
    over lags of :data:`F0_MIN_HZ`-:data:`F0_MAX_HZ`, normalised by its running mean, its first dip
    under :data:`_YIN_DIP` followed to its bottom (else its lowest point)."""
    frames = _frames(audio)
    return _pitch(frames) if frames.size else (np.zeros(0), np.ones(0))


def _frames(audio: np.ndarray) -> np.ndarray:
    x = np.asarray(audio, dtype=np.float64).reshape(-1)
    if x.size < _FRAME_SAMPLES:
        return np.zeros((0, _FRAME_SAMPLES))
    return np.lib.stride_tricks.sliding_window_view(x, _FRAME_SAMPLES)[::_HOP]


def _pitch(frames: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    width = _FRAME_SAMPLES - _MAX_LAG  # YIN's integration window
    size = 1 << (_FRAME_SAMPLES - 1).bit_length()
    head = np.fft.rfft(frames[:, :width], size)
    r = np.fft.irfft(np.conj(head) * np.fft.rfft(frames, size), size)[:, : _MAX_LAG + 1]  # sum x_j x_{j+lag}
    energy = np.cumsum(np.concatenate([np.zeros((frames.shape[0], 1)), frames**2], axis=1), axis=1)
    lags = np.arange(_MAX_LAG + 1)
    shifted = energy[:, lags + width] - energy[:, lags]  # sum x_{j+lag}^2 over the window
    d = np.maximum(shifted[:, :1] + shifted - 2.0 * r, 0.0)
    cmnd = d[:, 1:] * lags[1:] / np.maximum(np.cumsum(d[:, 1:], axis=1), 1e-12)  # cmnd[:, i]: lag i + 1
    min_lag = math.floor(AUDIO_RATE / F0_MAX_HZ) - 1
    search = cmnd[:, min_lag - 1 :]
    below = search < _YIN_DIP
    first = np.where(below.any(axis=1), below.argmax(axis=1), search.argmin(axis=1))
    rows = np.arange(search.shape[0])
    for _ in range(search.shape[1]):  # down to the bottom of the dip
        step = (first + 1 < search.shape[1]) & (search[rows, np.minimum(first + 1, search.shape[1] - 1)] < search[rows, first])
        if not step.any():
            break
        first = first + step
    # A dip at the shortest lag is the edge of the search, not a period; silence has none.
    periodic = (first > 0) & (shifted[:, 0] > _SILENT * width)
    # The dip's bottom between lags (a parabola through it and its neighbours): a whole-sample
    # lag moves a 500 Hz pitch in 3 % steps, as coarse as the glide a cry is told by.
    left = search[rows, np.maximum(first - 1, 0)]
    right = search[rows, np.minimum(first + 1, search.shape[1] - 1)]
    curve = left - 2.0 * search[rows, first] + right
    offset = np.where(curve > 0, 0.5 * (left - right) / np.where(curve > 0, curve, 1.0), 0.0)
    lag = first + min_lag + np.clip(offset, -0.5, 0.5)
    return AUDIO_RATE / lag, np.where(periodic, search[rows, first], 1.0)


def _runs(mask: np.ndarray) -> list[tuple[int, int]]:
    """[start, end) of the runs of True in ``mask``, joining runs split by a short dropout."""
    runs: list[tuple[int, int]] = []
    edges = np.flatnonzero(np.diff(np.concatenate([[0], mask.astype(np.int8), [0]])))
    for start, end in zip(edges[::2], edges[1::2]):
        if runs and start - runs[-1][1] <= _RUN_BRIDGE_FRAMES:
            runs[-1] = (runs[-1][0], int(end))
        else:
            runs.append((int(start), int(end)))
    return runs


class AcousticCues:
    """One stream's cue levels (0-1), fed each window in stream order (module docstring)."""

    def __init__(self) -> None:
        self._floor_db: float | None = None
        self._first = 0  # the stream index (10 ms steps) of the history's first frame
        self._f0 = np.zeros(0)
        self._aperiodicity = np.zeros(0)
        self._bands = np.zeros((0, BLOW_BANDS))  # dB
        self._level = np.zeros(0)  # the voice band's level, dB

    def levels(self, end_s: float, audio: np.ndarray, audio_start_s: float) -> dict[Cue, float]:
        """The cues of the window of :data:`WINDOW_S` ending at ``end_s``, given the stream's
        16 kHz audio from ``audio_start_s`` (float mono) up to at least ``end_s`` for the frames
        not yet analysed. Audio missing since the last call (lost, or no longer held) starts
        the history afresh; a window with no frame hears nothing."""
        self._analyse(np.asarray(audio, dtype=np.float32), round(audio_start_s * AUDIO_RATE), round(end_s * AUDIO_RATE))
        own = slice(max(0, round((end_s - WINDOW_S) / _FRAME_S) - self._first), None)
        if self._level[own].size == 0:
            return dict.fromkeys(Cue, 0.0)
        voiced = self._aperiodicity < VOICED_APERIODICITY
        crying, adult = self._voices(voiced)
        floor = self._follow_floor(self._level[own])
        shouted = adult[own] & (self._level[own] - floor >= SHOUT_OVER_FLOOR_DB)
        return {
            Cue.CRYING: min(1.0, float(crying[own].sum()) * _FRAME_S / CRY_FULL_S),
            Cue.ADULT_SHOUTING: min(1.0, float(shouted.sum()) * _FRAME_S / SHOUT_FULL_S),
            Cue.IMPACTS: self._blows(voiced, own.start or 0),
        }

    def _analyse(self, audio: np.ndarray, audio_start: int, end: int) -> None:
        """Analyse the frames up to ``end`` (samples) not yet in the history and keep the last
        :data:`_HISTORY_S`; ``audio`` starts at sample ``audio_start``."""
        next_frame = self._first + self._level.size
        if audio_start > next_frame * _HOP:  # audio missing since the last window: a gap
            self._first = -(-audio_start // _HOP)
            self._f0, self._aperiodicity, self._level = np.zeros(0), np.zeros(0), np.zeros(0)
            self._bands = np.zeros((0, BLOW_BANDS))
            next_frame = self._first
        usable = audio[next_frame * _HOP - audio_start : max(end - audio_start, 0)]
        frames = _frames(usable)
        if frames.size:
            window, pooling, voice = _spectral_tables()
            power = np.abs(np.fft.rfft(frames * window, _FFT)) ** 2 / 400.0 + _SILENT
            f0, aperiodicity = _pitch(frames)
            self._f0 = np.concatenate([self._f0, f0])
            self._aperiodicity = np.concatenate([self._aperiodicity, aperiodicity])
            self._bands = np.concatenate([self._bands, 10.0 * np.log10(power @ pooling)])
            self._level = np.concatenate([self._level, 10.0 * np.log10(power[:, voice].mean(axis=1))])
        drop = max(0, self._level.size - round(_HISTORY_S / _FRAME_S))
        self._first += drop
        self._f0, self._aperiodicity = self._f0[drop:], self._aperiodicity[drop:]
        self._bands, self._level = self._bands[drop:], self._level[drop:]

    def _follow_floor(self, level: np.ndarray) -> float:
        quiet = float(np.percentile(level, 10))
        if self._floor_db is None or quiet < self._floor_db:
            self._floor_db = quiet
        else:
            self._floor_db += _FLOOR_RISE * (quiet - self._floor_db)
        return self._floor_db

    def _voices(self, voiced: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """The history's voiced frames that are a child crying, and those of an adult's voice
        (module docstring), each voiced run judged whole by its median pitch."""
        crying, adult = np.zeros_like(voiced), np.zeros_like(voiced)
        for start, end in _runs(voiced):
            pitch = self._f0[start:end][voiced[start:end]]
            middle = np.median(pitch)
            if ADULT_HZ[0] <= middle <= ADULT_HZ[1]:
                adult[start:end] = voiced[start:end]
            if middle < CRY_MIN_HZ or (end - start) * _FRAME_S < CRY_RUN_S:
                continue
            # One voice: its pitch stays on one contour (near the run's median), where a melody,
            # a chord or birdsong read as a pitch jumps between notes and octaves.
            contour = pitch[np.abs(np.log(pitch / middle)) <= math.log(CRY_CONTOUR)]
            if contour.size < CRY_ON_CONTOUR * pitch.size:
                continue
            low, high = np.percentile(contour, [25, 75])
            level = self._level[start:end]
            if high / low >= CRY_GLIDE and np.mean(level >= level.max() - CRY_HOLD_DB) >= CRY_HELD:
                crying[start:end] = True
                adult[start:end] = False
        return crying, adult

    def _voice_starts(self, voiced: np.ndarray, at: int) -> bool:
        """Whether a voice starts with the rise at frame ``at`` (a syllable): voiced frames follow
        it, and no voice of the same pitch was going on just before (a crying child, or a voice
        under a blow, says nothing of the blow)."""
        after = slice(at, at + BLOW_SETTLE_FRAMES)
        if voiced[after].sum() < BLOW_MAX_VOICED:
            return False
        before = slice(max(0, at - _VOICED_BEFORE), at)
        if voiced[before].sum() * 2 < _VOICED_BEFORE:
            return True
        pitch_before = np.median(self._f0[before][voiced[before]])
        pitch_after = np.median(self._f0[after][voiced[after]])
        return abs(math.log(pitch_after / pitch_before)) > math.log(_SAME_VOICE)

    def _blows(self, voiced: np.ndarray, own_start: int) -> float:
        """The window's blow level (module docstring); its frames start at ``own_start``."""
        bands = self._bands
        # A rise is judged against the second before it, so not until the history holds one
        # (a stream's first second, or the first after a gap, hears no blow).
        first = max(own_start, BLOW_RECENT_FRAMES)
        if first >= bands.shape[0]:
            return 0.0
        before = np.max(np.stack([bands[first - i - 1 : bands.shape[0] - i - 1] for i in range(BLOW_LOOKBACK_FRAMES)]), axis=0)
        rises = bands[first:] - before
        rise = np.sort(rises, axis=1)[:, -BLOW_RISING_BANDS]
        best = 0.0
        for at in (int(i) + first for i in np.flatnonzero(rise >= BLOW_FROM_DB)):
            if self._voice_starts(voiced, at):
                continue
            # The bands that rose, over the history: they must fall again (the peak within
            # 30 ms against 150 ms on), stand above all of the second before (a blow is louder
            # than the room it lands in, where a breath between sobs is not) and well above the
            # quiet of the last seconds (near, not a door down the hall).
            rising = rises[at - first] >= BLOW_FROM_DB
            if not (rising[_LOW_BANDS].any() and rising[_HIGH_BANDS].any()):  # across the spectrum
                continue
            level = bands[:, rising].mean(axis=1)
            peak = level[at : at + 3].max()
            if (at + BLOW_SETTLE_FRAMES >= level.size or peak - level[at + BLOW_SETTLE_FRAMES] < BLOW_DECAY_DB
                    or peak < level[at - BLOW_RECENT_FRAMES : at].max()
                    or peak < np.percentile(level, 10) + BLOW_OVER_QUIET_DB):  # fmt: skip
                continue
            best = max(best, float(rise[at - first]))
        return float(np.clip((best - BLOW_FROM_DB) / (BLOW_FULL_DB - BLOW_FROM_DB), 0.0, 1.0))
