"""Acoustic augmentations shared by the data build (``hearo data build``) and the trainer.

Both work on float 16 kHz mono numpy audio with a seeded ``numpy.random.Generator``.
"""

from __future__ import annotations

import numpy as np
from scipy import signal

__all__ = ["band_limit", "muffle", "room_impulse"]

SR = 16_000


def room_impulse(rng: np.random.Generator, rt60_s: float, direct: float) -> np.ndarray:
    """A synthetic room response: a direct path of weight ``direct`` and an exponentially decaying,
    low-passed noise tail reaching -60 dB after ``rt60_s`` (more tail: a farther source)."""
    n = max(int(rt60_s * SR), 16)
    t = np.arange(n) / SR
    tail = rng.standard_normal(n) * np.exp(-6.9 * t / rt60_s)
    sos = signal.butter(1, rng.uniform(2000, 7000), btype="low", fs=SR, output="sos")
    tail = signal.sosfilt(sos, tail)
    tail *= (1.0 - direct) / (np.sqrt(np.sum(tail**2)) or 1.0)
    tail[0] += direct
    return tail


def band_limit(x: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """A phone microphone: about 100 Hz - 7 kHz (edges randomised) and gentle compression."""
    sos = signal.butter(2, [rng.uniform(80, 300), rng.uniform(3400, 7200)], btype="band", fs=SR, output="sos")
    y = signal.sosfilt(sos, x)
    peak = float(np.max(np.abs(y))) or 1.0
    drive = rng.uniform(1.0, 3.0)
    return np.tanh(drive * y / peak) * peak / np.tanh(drive)


def muffle(x: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """A voice behind a door: low-passed at 900-1800 Hz."""
    sos = signal.butter(4, rng.uniform(900, 1800), btype="low", fs=SR, output="sos")
    return signal.sosfilt(sos, x).astype(np.float32)
