"""Stage 4's last part, compiled: a sounding that ended, cut into the pulses it held (the
package docstring tells the whole pipeline; ``detector`` hands the pulses to the tracks).

Speech ends a sounding about every 60 ms, and cutting each into pieces, finding each piece's
plateau, pitch and steadiness was Python over lists: about 30 % of the detector's time on
speech, as much as the rhythm reading the pulses go on to. Here it is one compiled call per
sounding that ended. The arithmetic is the Python's it replaced, in float64, with its ties
broken the same way (the first minimum, the upper quartile of a sort, ``statistics.median``).
"""

from __future__ import annotations

import math

import numpy as np

from shared.alarm_patterns.compiling import compiled, inlined

# The columns of a pulse in ``out``.
ONSET_S, OFFSET_S, TONE_HZ, PEAK_DB, STEADY, LAST = range(6)
_RAMP_FRAMES = 3  # frames a 32 ms window takes to rise onto a tone

_SIGNATURE = (
    "int64(float64[::1], float64[::1], int64, float64, float64, float64, float64, float64, float64, "
    "float64, float64, float64, float64, float64, float64, float64, float64[:, ::1])"
)


@inlined
def _pieces(levels: np.ndarray, depth_db: float) -> np.ndarray:
    """``[start, stop)`` rows of ``levels`` split where a new onset shows.

    An onset shows as a dip ``depth_db`` under the levels on both sides (a room's tail
    filling the gap), or as a rise of ``depth_db`` within three frames once a piece is past
    its own ramp (a louder tone starting over a quieter one at that pitch).
    """
    length = levels.shape[0]
    ranges = np.empty((length + 1, 2), np.int64)
    count = 0
    start = 0
    peak = levels[0]
    dip = -1
    for i in range(length):
        db = levels[i]
        if dip >= 0:
            if db < levels[dip]:
                dip = i
            elif db >= levels[dip] + depth_db:
                ranges[count, 0], ranges[count, 1] = start, dip
                count += 1
                start, peak, dip = dip + 1, db, -1
            continue
        if i - start > _RAMP_FRAMES:
            low = i - _RAMP_FRAMES  # the first of the lowest of the three frames before
            for j in range(i - _RAMP_FRAMES + 1, i):
                if levels[j] < levels[low]:
                    low = j
            if db >= levels[low] + depth_db:
                ranges[count, 0], ranges[count, 1] = start, low
                count += 1
                start, peak = low + 1, db
                continue
        if db > peak:
            peak = db
        elif db <= peak - depth_db:
            dip = i
    ranges[count, 0], ranges[count, 1] = start, length
    return ranges[: count + 1]


@compiled(_SIGNATURE)
def cut_pulses(
    levels: np.ndarray,
    hz: np.ndarray,
    onset_frame: int,
    louder_db: float,
    depth_db: float,
    drop_db: float,
    frame_s: float,
    hop: float,
    half_window: float,
    sample_rate: float,
    blip_s: float,
    echo_db: float,
    echo_max_s: float,
    frequency_tolerance: float,
    min_tolerance_hz: float,
    in_tune_fraction: float,
    out: np.ndarray,
) -> int:
    """Write the pulses of one sounding (its peak's ``levels`` and ``hz``, frame by frame from
    ``onset_frame``) to the rows of ``out`` (columns named above; ``LAST``: the pulse's end,
    in frames after the onset) and return how many.

    A piece starts where an onset shows (a dip ``depth_db`` deep, or a rise as steep within
    three frames once past its own ramp) and spans its frames within ``drop_db`` of its
    plateau; a blip (shorter than ``blip_s``) is no pulse, nor is an echo: a piece
    ``echo_db`` quieter than the pulse before it (``louder_db`` for the first: the pulse that
    just ended at this pitch, NaN when none) that stays near its own peak at most
    ``echo_max_s``. A pulse is steady when ``in_tune_fraction`` of its frames lie within the
    pitch tolerance (``frequency_tolerance`` of its median pitch, at least
    ``min_tolerance_hz``) of that median.
    """
    ranges = _pieces(levels, depth_db)
    count = 0
    for k in range(ranges.shape[0]):
        start, stop = ranges[k, 0], ranges[k, 1]
        if (stop - start) * frame_s < blip_s - 1e-9:
            continue  # a blip, whatever its loud part (most pieces of speech end here)
        piece = levels[start:stop]
        plateau = np.sort(piece)[(3 * (piece.shape[0] - 1)) // 4]
        first, last = -1, -1
        peak = piece[0]
        for i in range(piece.shape[0]):
            if piece[i] >= plateau - drop_db:
                if first < 0:
                    first = i
                last = i
            peak = max(peak, piece[i])
        first += start
        last += start + 1
        onset_s = ((onset_frame + first) * hop + half_window) / sample_rate
        offset_s = ((onset_frame + last) * hop + half_window) / sample_rate
        if offset_s - onset_s < blip_s:
            continue
        if not math.isnan(louder_db) and peak < louder_db - echo_db:
            near = 0
            for i in range(piece.shape[0]):
                if piece[i] >= peak - drop_db:
                    near += 1
            if near * frame_s <= echo_max_s:
                continue  # an echo
        pitches = np.sort(hz[first:last])
        middle = pitches.shape[0] // 2
        if pitches.shape[0] % 2:
            tone_hz = pitches[middle]
        else:
            tone_hz = (pitches[middle - 1] + pitches[middle]) / 2  # statistics.median's
        tolerance = max(frequency_tolerance * tone_hz, min_tolerance_hz)
        in_tune = 0
        for f in pitches:
            if abs(f - tone_hz) <= tolerance:
                in_tune += 1
        out[count, ONSET_S] = onset_s
        out[count, OFFSET_S] = offset_s
        out[count, TONE_HZ] = tone_hz
        out[count, PEAK_DB] = peak
        out[count, STEADY] = 1.0 if in_tune >= in_tune_fraction * pitches.shape[0] else 0.0
        out[count, LAST] = last
        count += 1
        louder_db = peak
    return count
