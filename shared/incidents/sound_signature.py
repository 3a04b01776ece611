"""A short description of a detected sound, to tell whether one false alarm sounds like another.

The gateway computes it when a detection opens an incident, from the log-mel frames of the
windows the detector averaged when it fired, and stores it with the incident
(``incidents.sound_signature``); :mod:`shared.incidents.threshold_learning` compares the
signatures of a home's false alarms. The mel bands are pooled into :data:`BANDS` bands and
each band is described twice:

* **over time**: how much louder the band is in its loud frames than in its quiet ones (the
  90th minus the 10th percentile over the frames). Beeps, alarms, knocks and voices show here;
  the room's steady background, which every sound in that home shares, cancels out;
* **over frequency**: how far the band stands above its neighbours in the loud frames (the
  90th percentile minus the mean of the seven bands around it). Tones that do not pulse (a
  whistle, a hum) show here.

Each half is centred and scaled to unit length, and so is the whole, so the similarity of two
signatures (:func:`similarity`) is the correlation of their shapes in [-1, 1]: loudness and the
spec's log-mel scaling drop out. Measured with mn04's features on synthetic sounds (16 kHz,
over quiet room noise): one piezo beep pattern (four 3.1 kHz beeps) against itself at another
time or 8 dB louder, 0.97 to 1.00; against a 2.7 kHz or 2 kHz beep of the same rhythm, under
0.7; against room noise, crackle, speech-like sound, a door chime or a whistle, under 0.8. A
smoke alarm at the same pitch scores 1.00: the spectrum cannot tell them apart, which is why
an alarm's rhythm is never suppressed by what these comparisons teach.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np

BANDS = 32
SIGNATURE_LENGTH = 2 * BANDS
# Neighbouring bands a band is compared with over frequency (itself in the middle).
_NEIGHBOURHOOD = 7


def sound_signature(frames: np.ndarray) -> list[float]:
    """The signature of log-mel ``frames`` [T, n_mels] (any affine log scaling; ``n_mels`` at
    least :data:`BANDS`): :data:`SIGNATURE_LENGTH` floats, rounded to 4 places for storage.
    Raises ValueError for an empty or too narrow input."""
    x = np.asarray(frames, dtype=np.float64)
    if x.ndim != 2 or x.shape[0] == 0 or x.shape[1] < BANDS:
        raise ValueError(f"need log-mel frames [T > 0, n_mels >= {BANDS}], got shape {x.shape}")
    loud = _pool(np.percentile(x, 90, axis=0))
    quiet = _pool(np.percentile(x, 10, axis=0))
    half = _NEIGHBOURHOOD // 2
    around = np.convolve(np.pad(loud, half, mode="edge"), np.ones(_NEIGHBOURHOOD) / _NEIGHBOURHOOD, "valid")
    signature = _unit(np.concatenate([_unit(loud - quiet), _unit(loud - around)]))
    return [round(float(value), 4) for value in signature]


def similarity(a: Sequence[float] | None, b: Sequence[float] | None) -> float:
    """How alike two signatures are, in [-1, 1] (1: the same shape). 0.0 when either is
    missing, of another length (another version's), or flat (digital silence)."""
    if a is None or b is None or len(a) != len(b) or len(a) == 0:
        return 0.0
    u, v = np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64)
    norms = float(np.linalg.norm(u) * np.linalg.norm(v))
    if norms == 0.0 or not math.isfinite(norms):
        return 0.0
    return max(-1.0, min(1.0, float(u @ v) / norms))


def _pool(bands: np.ndarray) -> np.ndarray:
    return np.array([group.mean() for group in np.array_split(bands, BANDS)])


def _unit(values: np.ndarray) -> np.ndarray:
    centred = values - values.mean()
    norm = float(np.linalg.norm(centred))
    return centred / norm if norm > 1e-12 else np.zeros_like(centred)
