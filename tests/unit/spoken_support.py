"""Helpers for the spoken tests: TTS when espeak-ng/flite are installed, and skips with reasons."""

from __future__ import annotations

import shutil

import numpy as np
import pytest

from shared.spoken import availability

SR = 16_000


def need_language(language: str, kind: str | None = None) -> None:
    """Skip unless ``language``'s recogniser of ``kind`` (default: the process's) can run here."""
    reason = availability(kind)[language]
    if reason is not None:
        pytest.skip(f"the {kind or 'default'} recogniser is unavailable: {reason}")


def speak(engine: str, voice: str, text: str, seed: int = 0) -> np.ndarray:
    """``text`` in ``voice``, 16 kHz float32, peak 0.3; skips when the TTS engine is absent."""
    if shutil.which(engine) is None:
        pytest.skip(f"{engine} is not installed")
    from hearo.data.synth import synthesise_speech

    speech = synthesise_speech(engine, voice, text, np.random.default_rng(seed))
    return speech * 0.3


def in_room(speech: np.ndarray, seed: int = 0, lead_s: float = 1.0) -> np.ndarray:
    """Speech with ``lead_s`` of quiet room noise either side."""
    rng = np.random.default_rng(seed)
    n = int(lead_s * SR)
    out = (rng.standard_normal(speech.size + 2 * n) * 0.002).astype(np.float32)
    out[n: n + speech.size] += speech
    return out
