"""Scene composition: an event placed at a random offset inside a background, as a phone hears it.

``compose`` takes 16 kHz float32 audio and a seeded generator and returns a scene of fixed
length: the event (speed-perturbed, at a random gain) is convolved with a synthetic room
impulse response (distance: more reverb, less direct sound), mixed into the background at an
SNR drawn from -5 to +20 dB (a quarter of the events instead at 20 to 35 dB: the event as
recorded, over room tone, which is how most real recordings of an emergency sound come), and
the mixture optionally passes a phone microphone (band-limit 100 Hz - 7 kHz, mild compression). Event-level SNR uses the event's active part, so a short
bang is as audible as a long hiss at the same SNR.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import soxr
from scipy import signal

from hearo.data.packages import SAMPLE_RATE
from shared.augment import band_limit, room_impulse

__all__ = ["SceneRecipe", "arrange_hits", "compose", "slice_background"]

SR = SAMPLE_RATE
SNR_RANGE_DB = (-5.0, 20.0)
CLEAN_SNR_RANGE_DB = (20.0, 35.0)
CLEAN_SHARE = 0.25


@dataclass(frozen=True)
class SceneRecipe:
    """What was done to make a scene (recorded in the manifest)."""

    offset_s: float
    end_s: float
    snr_db: float | None
    rt60_s: float | None
    speed: float
    phone: bool

    def describe(self) -> str:
        parts = [f"offset={self.offset_s:.2f}s", f"speed={self.speed:.2f}"]
        if self.snr_db is not None:
            parts.append(f"snr={self.snr_db:.1f}dB")
        parts.append(f"rir_rt60={self.rt60_s:.2f}s" if self.rt60_s else "dry")
        if self.phone:
            parts.append("phone_band")
        return " ".join(parts)


def arrange_hits(hit: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Banging: 2-5 copies of ``hit`` at 2-4 Hz (random gain each), pauses of 1-3 s, muffled
    (low-pass 800-2500 Hz) as if behind a wall or in a lift."""
    hit = hit[: int(0.4 * SR)]
    out = np.zeros(int(5.0 * SR), dtype=np.float64)
    pos = int(rng.uniform(0, 0.3) * SR)
    while pos < out.size:
        step = int(SR / rng.uniform(2.0, 4.0))
        for _ in range(int(rng.integers(2, 6))):
            end = min(pos + hit.size, out.size)
            out[pos:end] += rng.uniform(0.4, 1.0) * hit[: end - pos]
            pos += step
            if pos >= out.size:
                break
        pos += int(rng.uniform(1.0, 3.0) * SR)
    sos = signal.butter(2, rng.uniform(800, 2500), btype="low", fs=SR, output="sos")
    return signal.sosfilt(sos, out)


def slice_background(background: np.ndarray, n: int, rng: np.random.Generator) -> np.ndarray:
    """``n`` samples from a random place in ``background``, looped if it is shorter."""
    if background.size < n:
        background = np.tile(background, n // max(background.size, 1) + 1)
    start = int(rng.integers(0, background.size - n + 1))
    return background[start: start + n].astype(np.float64)


def _active_rms(x: np.ndarray) -> float:
    frames = x[: x.size // 160 * 160].reshape(-1, 160) if x.size >= 160 else x.reshape(1, -1)
    energy = np.mean(frames**2, axis=1)
    loud = energy[energy >= 0.1 * energy.max()] if energy.size else energy
    return float(np.sqrt(np.mean(loud))) if loud.size else 0.0


def compose(
    event: np.ndarray | None,
    background: np.ndarray,
    seconds: float,
    rng: np.random.Generator,
) -> tuple[np.ndarray, SceneRecipe]:
    """A ``seconds``-long scene: ``event`` (None: background only) inside ``background``."""
    n = int(seconds * SR)
    bed = slice_background(background, n, rng) * rng.uniform(0.3, 1.0)
    if rng.random() < 0.1:  # a quiet room: almost nothing under the event
        bed *= rng.uniform(0.01, 0.1)
    speed, offset, end, snr, rt60 = 1.0, 0.0, seconds, None, None
    mix = bed
    if event is not None:
        speed = float(rng.uniform(0.9, 1.1))
        ev = soxr.resample(event.astype(np.float32), SR, SR / speed) if abs(speed - 1) > 1e-3 else event
        ev = ev.astype(np.float64)
        if rng.random() < 0.7:
            rt60 = float(rng.uniform(0.15, 0.9))
            ev = signal.fftconvolve(ev, room_impulse(rng, rt60, direct=rng.uniform(0.2, 0.9)))[: ev.size + int(0.3 * SR)]
        if ev.size > n:  # a long event: a random stretch of it
            start = int(rng.integers(0, ev.size - n + 1))
            ev = ev[start: start + n]
        # Offsets keep most of the event inside the scene; some start before it (cut at the edge).
        offset = float(rng.uniform(-0.2 * ev.size / SR, max((n - ev.size) / SR, 0.0) + 0.1))
        placed = np.zeros(n)
        lo = int(offset * SR)
        src = ev[max(-lo, 0):]
        lo = max(lo, 0)
        length = min(src.size, n - lo)
        placed[lo: lo + length] = src[:length]
        end = (lo + length) / SR
        snr = float(rng.uniform(*(CLEAN_SNR_RANGE_DB if rng.random() < CLEAN_SHARE else SNR_RANGE_DB)))
        bed_rms = float(np.sqrt(np.mean(bed**2))) or 1e-4
        ev_rms = _active_rms(placed) or 1e-4
        mix = bed + placed * (bed_rms * 10 ** (snr / 20) / ev_rms)
    phone = bool(rng.random() < 0.5)
    if phone:
        mix = band_limit(mix, rng)
    peak = float(np.max(np.abs(mix))) or 1.0
    mix = mix / peak * rng.uniform(0.1, 0.9)
    return mix.astype(np.float32), SceneRecipe(max(offset, 0.0), end, snr, rt60, speed, phone)
