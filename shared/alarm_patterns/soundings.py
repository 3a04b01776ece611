"""Stage 4's per-frame part, compiled: each sounding tone followed frame by frame, and new
ones started at the onsets (the package docstring tells the whole pipeline; ``detector``
cuts the soundings that end into pulses and runs the later stages in Python).

Following soundings was Python per sounding per 10 ms frame, most of the detector's time on
speech and music (several harmonics sound at once). Here the soundings live in fixed slots
(at most ``_MAX_ACTIVE_PULSES``, see ``detector``), ``chan_slot`` maps a channel to the slot
sounding there, and :func:`follow_rows` walks the rows of a pass. It returns to Python
whenever Python has work at a row, so that everything happens in the order it did before:

* ``ENDED``: soundings ended in the row's following (their slots in ``ended``, in channel
  order): the detector cuts them into pulses for the tracks, notes their echo, frees the
  slots, and resumes the same row at ``START``;
* ``HOLDING``: the tracks hold a candidate (``holding``): after the row's onsets started,
  the detector releases what is due at this row, and resumes at the next row;
* ``DONE``: every row of the pass is done.

The arithmetic is the Python code's it replaced, in float64 on the float32 levels (``db``).
"""

from __future__ import annotations

import numpy as np

from shared.alarm_patterns.compiling import compiled
from shared.alarm_patterns.spectral import db

# The integer and float state of a slot (columns of ``ints`` and ``floats``).
USED, CHANNEL, ONSET, BELOW, QUIET, LENGTH = range(6)
PEAK, FLOOR, REFERENCE, ECHO = range(4)  # ECHO: the peak of a pulse that just ended here, or NaN
# Why follow_rows returned, and where it resumes a row.
DONE, ENDED, HOLDING = 0, 1, 2
FOLLOW, START = 0, 1
# ``where``: [row, soundings ended, next onset cell]. The detector's constants, by index:
# ``limits`` (integers) and ``tuning`` (floats).
PAD, LOWEST_BIN, DEAD_FRAMES, MAX_FRAMES, EXCLUSION, RELEASE_FRAMES = range(6)
BIN_HZ, RELEASE_SNR_DB, DROP_DB, DECAY_DB = range(4)

_SIGNATURE = (
    "int64(float32[:, ::1], float64[:, ::1], int64[:, ::1], int64, int64, int64, boolean, int64[::1], "
    "int64[:, ::1], float64[:, ::1], float64[:, ::1], float64[:, ::1], int64[::1], int64[::1], float64[::1], "
    "int64[::1], int64[::1], float64[::1])"
)


@compiled(_SIGNATURE)
def follow_rows(
    power: np.ndarray,
    floor_db: np.ndarray,
    cells: np.ndarray,
    cell_count: int,
    first_frame: int,
    phase: int,
    holding: bool,
    where: np.ndarray,
    ints: np.ndarray,
    floats: np.ndarray,
    levels: np.ndarray,
    hz: np.ndarray,
    chan_slot: np.ndarray,
    recent_expiry: np.ndarray,
    recent_peak: np.ndarray,
    ended: np.ndarray,
    limits: np.ndarray,
    tuning: np.ndarray,
) -> int:
    """Walk the rows of one pass from ``where[0]`` (at ``phase``), following the soundings in
    the slots and starting new ones at the onset ``cells`` (row, channel; row by row) from
    ``where[2]`` on, until Python has work (module docstring). ``power`` (padded columns) and
    ``floor_db`` are the pass's, from ``spectral_stage``; ``limits`` and ``tuning`` hold
    the detector's constants (the names above index them)."""
    count, channels, slots = power.shape[0], floor_db.shape[1], ints.shape[0]
    pad, lowest_bin = limits[PAD], limits[LOWEST_BIN]
    bin_hz = tuning[BIN_HZ]
    keys = np.empty(slots, np.int64)
    row, cursor = where[0], where[2]
    while row < count:
        frame = first_frame + row
        if phase == FOLLOW:
            # Each sounding in channel order (as sorted(active) did): it follows its peak to a
            # louder neighbouring bin, and ends under the floor, after a drop, or when too long.
            found = 0
            for slot in range(slots):
                if ints[slot, USED]:
                    channel = ints[slot, CHANNEL]
                    at = found
                    while at > 0 and keys[at - 1] > channel:
                        keys[at] = keys[at - 1]
                        at -= 1
                    keys[at] = channel
                    found += 1
            ended_count = 0
            for index in range(found):
                channel = keys[index]
                slot = chan_slot[channel]
                chan_slot[channel] = -1
                best = channel
                now_db = np.float64(db(power[row, channel + pad]))
                if channel > 0 and db(power[row, channel + pad - 1]) > now_db:
                    best, now_db = channel - 1, np.float64(db(power[row, channel + pad - 1]))
                if channel < channels - 1 and db(power[row, channel + pad + 1]) > now_db:
                    best, now_db = channel + 1, np.float64(db(power[row, channel + pad + 1]))
                ints[slot, CHANNEL] = best
                # The peak's frequency, on a parabola through the dB levels of its bin's neighbours.
                a = np.float64(db(power[row, best + pad - 1]))
                c = np.float64(db(power[row, best + pad + 1]))
                curvature = a - 2.0 * now_db + c
                offset = 0.5 * (a - c) / curvature if curvature < 0.0 else 0.0
                length = ints[slot, LENGTH]
                levels[slot, length] = now_db
                hz[slot, length] = (lowest_bin + best + offset) * bin_hz
                ints[slot, LENGTH] = length + 1
                if now_db > floats[slot, PEAK]:
                    floats[slot, PEAK] = now_db
                floats[slot, REFERENCE] = max(now_db, floats[slot, REFERENCE] - tuning[DECAY_DB])
                ints[slot, BELOW] = ints[slot, BELOW] + 1 if now_db < floor_db[row, best] + tuning[RELEASE_SNR_DB] else 0
                ints[slot, QUIET] = ints[slot, QUIET] + 1 if now_db < floats[slot, REFERENCE] - tuning[DROP_DB] else 0
                if (
                    ints[slot, BELOW] >= limits[RELEASE_FRAMES]
                    or ints[slot, QUIET] >= limits[DEAD_FRAMES]
                    or frame - ints[slot, ONSET] >= limits[MAX_FRAMES]
                ):
                    ended[ended_count] = slot
                    ended_count += 1
                elif chan_slot[best] >= 0:  # two soundings met on one bin: keep the louder
                    other = chan_slot[best]
                    if floats[other, PEAK] < floats[slot, PEAK]:
                        chan_slot[best] = slot
                        ints[other, USED] = 0
                    else:
                        ints[slot, USED] = 0
                else:
                    chan_slot[best] = slot
            if ended_count:
                where[0], where[1], where[2] = row, ended_count, cursor
                return ENDED
        phase = FOLLOW
        # The row's onsets, loudest first (ties in channel order), each starting a sounding
        # unless too many sound or one sounds within EXCLUSION bins.
        while cursor < cell_count and cells[cursor, 0] < row:
            cursor += 1
        first = cursor
        while cursor < cell_count and cells[cursor, 0] == row:
            cursor += 1
        onsets = cursor - first
        if onsets:
            order = np.empty(onsets, np.int64)
            for index in range(onsets):
                channel = cells[first + index, 1]
                loudness = db(power[row, channel + pad])
                at = index
                while at > 0 and db(power[row, order[at - 1] + pad]) < loudness:
                    order[at] = order[at - 1]
                    at -= 1
                order[at] = channel
            for channel in order:
                sounding = 0
                near = False
                free = -1
                for slot in range(slots):
                    if ints[slot, USED]:
                        sounding += 1
                        if abs(channel - ints[slot, CHANNEL]) <= limits[EXCLUSION]:
                            near = True
                    elif free < 0:
                        free = slot
                if sounding >= slots:
                    break
                if near:
                    continue
                now_db = np.float64(db(power[row, channel + pad]))
                a = np.float64(db(power[row, channel + pad - 1]))
                c = np.float64(db(power[row, channel + pad + 1]))
                curvature = a - 2.0 * now_db + c
                offset = 0.5 * (a - c) / curvature if curvature < 0.0 else 0.0
                echo = np.nan  # the loudest pulse that ended within EXCLUSION bins and has not expired
                for other in range(max(channel - limits[EXCLUSION], 0), min(channel + limits[EXCLUSION] + 1, channels)):
                    if recent_expiry[other] >= frame and not recent_peak[other] <= echo:
                        echo = recent_peak[other]
                ints[free, USED], ints[free, CHANNEL], ints[free, ONSET] = 1, channel, frame
                ints[free, BELOW], ints[free, QUIET], ints[free, LENGTH] = 0, 0, 1
                floats[free, PEAK], floats[free, FLOOR], floats[free, REFERENCE] = now_db, floor_db[row, channel], now_db
                floats[free, ECHO] = echo
                levels[free, 0] = now_db
                hz[free, 0] = (lowest_bin + channel + offset) * bin_hz
                chan_slot[channel] = free
        if holding:
            where[0], where[1], where[2] = row, 0, cursor
            return HOLDING
        row += 1
        # Nothing sounding and nothing held: on to the next row with an onset.
        if not ints[:, USED].any():
            row = max(row, cells[cursor, 0]) if cursor < cell_count else count
    where[0], where[1], where[2] = count, 0, cursor
    return DONE
