"""Stages 1 to 4 of the alarm pattern detector (the package docstring tells the whole
pipeline): spectral frames, each channel's noise floor, the onsets and soundings of tones,
and the pulses cut from them; ``tracks`` does the rest. ``AlarmPatternDetector`` is the
public surface.
"""

from __future__ import annotations

import math

import numpy as np
import torch

from shared.alarm_patterns import soundings
from shared.alarm_patterns.config import AlarmPatternConfig, AlarmPatternMatch
from shared.alarm_patterns.pieces import cut_pulses
from shared.alarm_patterns.rhythm import Pulse, RhythmReader
from shared.alarm_patterns.soundings import CHANNEL, ECHO, FLOOR, LENGTH, ONSET, USED, follow_rows
from shared.alarm_patterns.spectral import spectral_stage
from shared.alarm_patterns.tracks import PatternTracks, Sounding


_FRAME_S = 0.010  # hop: 10 ms resolves T4's 100 ms pulses and gaps
_WINDOW_S = 0.032  # at least this long (rounded up to a power of two): ~31 Hz bins
# Frames per numpy pass, at most: bounds the memory a large push takes, and numpy's rfft of
# 512-sample rows costs about 3 times as much per row beyond 64 rows (numpy 2.4, measured).
_BATCH_FRAMES = 64
_FLOOR_BLOCK_FRAMES = 10  # floor statistics per 100 ms block ...
_FLOOR_BLOCKS = 20  # ... minimum over the last 2 s: longer than any pulse, shorter than a gap run
_NEIGHBOUR_INNER, _NEIGHBOUR_OUTER = 3, 8  # tonality: bins 3..8 away, outside Hann's main lobe
_POWER_FLOOR = np.float32(1e-12)  # -120 dBFS: keeps logarithms finite in digital silence
_RISE_S = 0.03  # an onset rises onset_rise_db within this
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


class AlarmPatternDetector:
    """One stream's alarm pattern detector; push every sample once, in order.

    >>> detector = AlarmPatternDetector()
    >>> detector.push(np.zeros(16000, dtype=np.float32))
    []

    Memory is bounded (about 250 kB of state plus the push being analysed) and the cost is a
    batched FFT per 10 ms, a compiled pass over its bins, and a little Python for each tone heard.
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
        window = np.hanning(self._win).astype(np.float32)
        self._window = torch.from_numpy(window)
        # Scaled so that a sine of amplitude A centred on a bin reads A**2.
        self._scale = np.float32((2.0 / window.sum()) ** 2)
        self._lo = max(math.ceil(self.config.min_tone_hz / self._bin_hz), _NEIGHBOUR_OUTER + 1)
        self._hi = math.floor(self.config.max_tone_hz / self._bin_hz)
        self._hi = min(self._hi, self._win // 2 - _NEIGHBOUR_OUTER - 1)
        self._channels = self._hi - self._lo + 1

        # Samples from the next frame to analyse on; a push that brings more grows it for a while.
        self._capacity = self._win + self._hop * (_BATCH_FRAMES - 1)
        self._buffer = np.empty(self._capacity, dtype=np.float32)
        self._buffered = 0
        self._frame = 0  # index of the next frame to analyse

        # The block's frames are kept and summed at once, in one order, whatever the chunking.
        self._block = np.zeros((_FLOOR_BLOCK_FRAMES, self._channels))
        self._block_means = np.full((_FLOOR_BLOCKS, self._channels), np.inf)  # a ring, oldest overwritten
        self._floor_db = np.full(self._channels, np.inf)  # no pulse until a first block is in
        self._block_state = np.zeros(3, dtype=np.int64)  # frames in the block, blocks done, frames analysed
        # What one pass fills (spectral_stage), the rows of a pass at the top.
        width = self._channels + 2 * _NEIGHBOUR_OUTER
        self._power = np.empty((_BATCH_FRAMES, width), dtype=np.float32)
        self._floor_rows = np.empty((_BATCH_FRAMES, self._channels))
        # A peak is at least as loud as its lower neighbour and louder than its upper one, so at
        # most every other channel has an onset in a frame.
        self._onset_cells = np.empty((_BATCH_FRAMES * ((self._channels + 1) // 2), 2), dtype=np.int64)
        rise_frames = round(_RISE_S / self._frame_s)
        self._history = np.full((rise_frames, self._channels), np.inf, dtype=np.float32)  # own powers, a ring

        # The soundings (stage 4, ``soundings``): slots, the slot sounding at each channel, the
        # echo memory of pulses just ended (expiry frame, peak; -1: none), and the constants.
        max_frames = round(_MAX_PULSE_S / self._frame_s)
        self._slots = np.zeros((_MAX_ACTIVE_PULSES, 6), dtype=np.int64)
        self._slot_floats = np.zeros((_MAX_ACTIVE_PULSES, 4))
        self._slot_levels = np.zeros((_MAX_ACTIVE_PULSES, max_frames + 1))  # the peak's level in each frame ...
        self._slot_hz = np.zeros((_MAX_ACTIVE_PULSES, max_frames + 1))  # ... and its frequency
        self._pulses_out = np.empty((max_frames + 2, 6))  # the pulses cut from one sounding (``pieces``)
        self._chan_slot = np.full(self._channels, -1, dtype=np.int64)
        self._recent_expiry = np.full(self._channels, -1, dtype=np.int64)
        self._recent_peak = np.zeros(self._channels)
        self._ended = np.empty(_MAX_ACTIVE_PULSES, dtype=np.int64)
        self._where = np.zeros(3, dtype=np.int64)
        self._sounding = False
        # The constants follow_rows reads, each at its name's index (``soundings``).
        self._limits = np.empty(6, dtype=np.int64)
        self._limits[soundings.PAD] = _NEIGHBOUR_OUTER
        self._limits[soundings.LOWEST_BIN] = self._lo
        self._limits[soundings.DEAD_FRAMES] = round(_DEAD_S / self._frame_s)
        self._limits[soundings.MAX_FRAMES] = max_frames
        self._limits[soundings.EXCLUSION] = _EXCLUSION_BINS
        self._limits[soundings.RELEASE_FRAMES] = _RELEASE_FRAMES
        self._tuning = np.empty(4)
        self._tuning[soundings.BIN_HZ] = self._bin_hz
        self._tuning[soundings.RELEASE_SNR_DB] = self.config.release_snr_db
        self._tuning[soundings.DROP_DB] = self.config.release_drop_db
        self._tuning[soundings.DECAY_DB] = self.config.reference_decay_db_per_s * self._frame_s
        # The padded columns of a channel's tonality neighbours, relative to the channel.
        offsets = np.arange(_NEIGHBOUR_INNER, _NEIGHBOUR_OUTER + 1)
        self._neighbour_columns = (_NEIGHBOUR_OUTER + np.concatenate([-offsets[::-1], offsets])).astype(np.int64)
        rhythm = RhythmReader(
            timing_tolerance=self.config.timing_tolerance,
            reverb_allowance_s=self.config.reverb_allowance_s,
            level_spread_db=self.config.level_spread_db,
            onset_snr_db=self.config.onset_snr_db,
            frame_s=self._frame_s,
            hz_tolerance=self._hz_tolerance,
        )
        self._tracks = PatternTracks(self.config, rhythm, self._frame_s, self._hz_tolerance, self._frame_time)

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
        if not math.isfinite(np.add.reduce(chunk)):  # one call; a sum that overflowed is no harm
            chunk = np.nan_to_num(chunk, nan=0.0, posinf=0.0, neginf=0.0)
        end = self._buffered + chunk.size
        if end > self._buffer.size:
            grown = np.empty(max(end, self._capacity), dtype=np.float32)
            grown[: self._buffered] = self._buffer[: self._buffered]
            self._buffer = grown
        # Clipped into the buffer, a copy: the caller may reuse its own (np.clip's layers cost more).
        clipped = np.maximum(chunk, -1.0, out=self._buffer[self._buffered : end])
        np.minimum(clipped, 1.0, out=clipped)
        self._buffered = end
        frames = (end - self._win) // self._hop + 1 if end >= self._win else 0
        # Each numpy pass costs tens of microseconds of calls whatever its length, so frames
        # wait while no match could come due in them: a candidate is held at least a while
        # (``PatternTracks.earliest_release``), so its match is returned by the very push
        # that would return it were every frame analysed at once (at 100 ms chunks, a pass
        # every 0.2 s instead of every 0.1 s, and no later match).
        if frames == 0 or self._frame + frames <= self._tracks.earliest_release(self._frame):
            return []
        matches: list[AlarmPatternMatch] = []
        for first in range(0, frames, _BATCH_FRAMES):
            matches += self._analyse(first * self._hop, min(_BATCH_FRAMES, frames - first))
        done = frames * self._hop
        self._buffered = end - done
        if self._buffer.size > self._capacity:
            kept = self._buffer[done:end]
            self._buffer = np.empty(self._capacity, dtype=np.float32)
            self._buffer[: self._buffered] = kept
        else:
            self._buffer[: self._buffered] = self._buffer[done:end]  # numpy copies overlaps safely
        return matches

    # -- stages 1 to 4, over the frames of a push (2, 3 and the soundings compiled) -----------

    def _analyse(self, start: int, count: int) -> list[AlarmPatternMatch]:
        """Analyse ``count`` frames of the buffer from sample ``start`` on."""
        # torch's FFT, not numpy's: a third of the time for a pass's rows (and each row's result
        # is the same whatever the rows beside it, so chunking still changes nothing).
        samples = torch.from_numpy(self._buffer[start : start + (count - 1) * self._hop + self._win])
        frames = samples.unfold(0, self._win, self._hop)
        pad = _NEIGHBOUR_OUTER
        spectrum = torch.fft.rfft(frames * self._window, dim=1)[:, self._lo - pad : self._hi + pad + 1].numpy()
        power, floor_db, cells = self._power[:count], self._floor_rows[:count], self._onset_cells
        cfg = self.config
        found = spectral_stage(
            spectrum, self._scale, _POWER_FLOOR, self._neighbour_columns, pad, self._block, self._block_state,
            self._block_means, self._floor_db, self._history, cfg.onset_snr_db, cfg.min_level_dbfs,
            cfg.onset_rise_db, cfg.tonality_db, power, floor_db, cells,
        )  # fmt: skip
        matches: list[AlarmPatternMatch] = []
        if found or self._sounding or self._tracks.holding:
            where, phase = self._where, soundings.FOLLOW
            where[:] = 0
            while True:
                status = follow_rows(
                    power, floor_db, cells, found, self._frame, phase, self._tracks.holding, where, self._slots,
                    self._slot_floats, self._slot_levels, self._slot_hz, self._chan_slot, self._recent_expiry,
                    self._recent_peak, self._ended, self._limits, self._tuning,
                )  # fmt: skip
                if status == soundings.DONE:
                    break
                frame = self._frame + int(where[0])
                if status == soundings.ENDED:
                    for slot in self._ended[: where[1]].tolist():
                        self._end_pulse(slot, frame)
                    phase = soundings.START
                else:  # HOLDING
                    matches += self._tracks.release(frame, self._still_sounding())
                    where[0] += 1
                    phase = soundings.FOLLOW
            self._sounding = bool(self._slots[:, USED].any())
        self._frame += count
        return matches

    # -- pulses: a sounding that ended, cut into pieces for the tracks --------------------------

    def _still_sounding(self) -> list[Sounding]:
        return [
            Sounding(int(row[ONSET]), float(self._slot_hz[slot, row[LENGTH] - 1]))
            for slot, row in enumerate(self._slots.tolist())
            if row[USED]
        ]

    def _end_pulse(self, slot: int, frame: int) -> None:
        """Cut the sounding in ``slot`` (ended at ``frame``) into the pulses it held
        (``pieces.cut_pulses``), hand them to its track, and free the slot.

        A room's tail can fill the short gaps of T4 so that four pulses sound as one with
        dips: each dip ``onset_rise_db`` deep on both sides separates two pulses. Each piece
        then spans the frames within ``release_drop_db`` of its plateau (upper-quartile
        level), so neither a tail, nor a swell before the onset, nor a room that sinks the
        steady tone under its onset moves its ends. A piece far quieter than the one before
        (a swell of its tail) or shorter than a blip is dropped.
        """
        row = self._slots[slot].tolist()
        channel, onset_frame, length = row[CHANNEL], row[ONSET], row[LENGTH]
        self._slots[slot, USED] = 0
        floor_db, echo_of_db = float(self._slot_floats[slot, FLOOR]), float(self._slot_floats[slot, ECHO])
        cfg, out = self.config, self._pulses_out
        count = cut_pulses(
            self._slot_levels[slot, :length], self._slot_hz[slot, :length], onset_frame, echo_of_db,
            cfg.onset_rise_db, cfg.release_drop_db, self._frame_s, float(self._hop), self._win / 2,
            float(self.sample_rate), _BLIP_S, _ECHO_DB, _ECHO_MAX_S, cfg.frequency_tolerance,
            0.75 * self._bin_hz, _IN_TUNE_FRACTION, out,
        )  # fmt: skip
        echo_frames = round(_ECHO_MEMORY_S / self._frame_s)
        for onset_s, offset_s, tone_hz, peak_db, steady, last in out[:count].tolist():
            pulse = Pulse(onset_s, offset_s, tone_hz, peak_db, snr_db=peak_db - floor_db, steady=steady > 0.0)
            self._tracks.add(pulse, frame)
            self._recent_expiry[channel] = onset_frame + int(last) + echo_frames
            self._recent_peak[channel] = peak_db

    def _frame_time(self, frame: int) -> float:
        return (frame * self._hop + self._win / 2) / self.sample_rate

    def _hz_tolerance(self, hz: float) -> float:
        return max(self.config.frequency_tolerance * hz, 0.75 * self._bin_hz)
