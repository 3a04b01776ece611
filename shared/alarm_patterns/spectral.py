"""Stages 2 and 3 of the alarm pattern detector, compiled: each frame's powers, each channel's
noise floor and the onsets of tones, from one pass's spectrum (the package docstring tells the
whole pipeline; ``detector`` keeps the state and runs the rest).

Written as loops and compiled with numba, not as numpy expressions: one pass is 20 frames of
about 150 bins, where each of the forty-odd numpy calls that did this cost more in its own
overhead than in arithmetic (this stage was over half of the detector's time, and the detector
a third of the gateway's, under ``hearo bench load``). Compiled at import (``compiling``).

The arithmetic follows the numpy code it replaced: float32 levels of float32 powers, float64
floors and tonality sums; a result may differ from numpy's in the last bit of a logarithm. A
level is computed where a test needs it (:func:`db`), not for every bin of every frame: the
logarithms were most of this stage's time.
"""

from __future__ import annotations

import math

import numpy as np

from shared.alarm_patterns.compiling import compiled, inlined


@inlined
def db(power: np.float32) -> np.float32:
    """A bin's level in dB (float32, as the detector's numpy code computed every bin's)."""
    return np.float32(math.log10(power)) * np.float32(10.0)


_SIGNATURE = (
    "int64(complex64[:, :], float32, float32, int64[:], int64, float64[:, :], int64[:], float64[:, :], "
    "float64[:], float32[:, :], float64, float64, float64, float64, float32[:, ::1], float64[:, ::1], int64[:, ::1])"
)


@compiled(_SIGNATURE)
def spectral_stage(
    spectrum: np.ndarray,
    scale: np.float32,
    power_floor: np.float32,
    neighbour_columns: np.ndarray,
    pad: int,
    block: np.ndarray,
    block_state: np.ndarray,
    block_means: np.ndarray,
    floor_db: np.ndarray,
    history: np.ndarray,
    onset_snr_db: float,
    min_level_dbfs: float,
    onset_rise_db: float,
    tonality_db: float,
    power: np.ndarray,
    floor_per_frame: np.ndarray,
    onsets: np.ndarray,
) -> int:
    """Fill ``power`` (padded columns: column c + pad is channel c), ``floor_per_frame``
    (each frame's floor, from the blocks completed before it) and ``onsets`` ((row, channel)
    of each tone starting, row by row, channels ascending) for the rows of ``spectrum``; return
    the number of onsets. Updates the floor's state (``block``, ``block_means``, ``floor_db``),
    ``history`` (a ring of the last frames' own powers) and ``block_state`` = [frames in the
    block, blocks done, frames analysed]."""
    count, width = spectrum.shape
    channels = floor_db.shape[0]
    block_frames, block_count = block.shape[0], block_means.shape[0]
    rise = history.shape[0]
    found = 0
    for row in range(count):
        for column in range(width):
            value = spectrum[row, column]
            p = np.float32(value.real * value.real + value.imag * value.imag) * scale
            if p < power_floor:
                p = power_floor
            power[row, column] = p
        # This frame's floor is the one before its block completes (stage 2).
        filled = block_state[0]
        for channel in range(channels):
            floor_per_frame[row, channel] = floor_db[channel]
            block[filled, channel] = power[row, channel + pad]
        filled += 1
        if filled == block_frames:
            means = block_means[block_state[1] % block_count]
            for channel in range(channels):
                total = 0.0
                for frame in range(block_frames):
                    total += block[frame, channel]
                means[channel] = total / block_frames
            block_state[1] += 1
            filled = 0
            for channel in range(channels):
                lowest = block_means[0, channel]
                for index in range(1, block_count):
                    if block_means[index, channel] < lowest:
                        lowest = block_means[index, channel]
                floor_db[channel] = 10.0 * math.log10(max(lowest, 1e-12))
        block_state[0] = filled
        # Onsets (stage 3): a spectral peak, above the floor, loud enough, risen within the
        # last frames, and tonal: above the mean power of the bins 3-8 away on both sides.
        oldest = (block_state[2] + row) % rise  # the ring's slot of the frame rise frames back
        for channel in range(channels):
            own = power[row, channel + pad]
            before = history[oldest, channel]
            history[oldest, channel] = own
            if not (own >= power[row, channel + pad - 1] and own > power[row, channel + pad + 1]):
                continue
            own_db = np.float64(db(own))
            if own_db - floor_per_frame[row, channel] < onset_snr_db or own_db < min_level_dbfs:
                continue
            if own_db - np.float64(db(before)) < onset_rise_db:
                continue
            total = 0.0
            for offset in neighbour_columns:
                total += np.float64(power[row, channel + offset])
            mean = total / neighbour_columns.shape[0]
            if own_db - 10.0 * math.log10(max(mean, 1e-12)) >= tonality_db:
                onsets[found, 0] = row
                onsets[found, 1] = channel
                found += 1
    block_state[2] += count
    return found

