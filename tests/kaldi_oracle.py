"""The reference filterbank for parity tests: torchaudio's own ``compliance/kaldi.py``, fetched at test time.

BEATs computes its input with ``torchaudio.compliance.kaldi.fbank``. That file is pure torch, but
torchaudio's compiled parts do not load next to our torch, and the file is not ours to copy into
the repository. So ``reference_kaldi()`` downloads the torchaudio wheel from PyPI with pip (once:
it is cached under ``~/.cache/hearo/oracles``), extracts only that file, checks its digest, and
loads it by path while a stand-in ``torchaudio`` module sits in ``sys.modules`` (kaldi.py uses the
package only in ``mfcc``, which the tests never call).

Without a reachable registry and no cached wheel, the tests that need the oracle skip and say why;
a file with the wrong digest fails them.

``parity_signal`` builds the inputs that stress parity: a siren-like tone (little energy in most
bins), white noise, digital silence and a sine clipped at full scale.
"""

from __future__ import annotations

import hashlib
import importlib.util
import math
import subprocess
import sys
import tempfile
import types
import zipfile
from functools import lru_cache
from pathlib import Path

import numpy as np
import pytest
import torch

__all__ = [
    "PARITY_KINDS",
    "TORCHAUDIO_VERSION",
    "parity_signal",
    "reference_beats_fbank",
    "reference_fbank",
    "reference_kaldi",
]

TORCHAUDIO_VERSION = "2.11.0"
# sha256 of torchaudio/compliance/kaldi.py in the torchaudio 2.11.0 wheels.
KALDI_PY_SHA256 = "5cbea1a584ddea748f6f68a621d794e13334e88d9faa1d40986f7af32f196d29"
ORACLE_CACHE = Path.home() / ".cache" / "hearo" / "oracles"
KALDI_PY = "torchaudio/compliance/kaldi.py"

# BEATs' preprocess, from shared/specs/beats.md section 1 (written out here, not imported, so the
# product's constants are checked too).
BEATS_FBANK_MEAN = 15.41663
BEATS_FBANK_STD = 6.55582
SAMPLE_RATE = 16_000

PARITY_KINDS = ("tonal", "noisy", "silent", "clipped")


# Why the download failed, once it has: later tests skip at once instead of waiting on pip again.
_unavailable: list[str] = []


def _download_wheel() -> Path:
    """The cached torchaudio wheel, downloaded with pip on first use (skips the test if pip cannot)."""
    ORACLE_CACHE.mkdir(parents=True, exist_ok=True)
    pattern = f"torchaudio-{TORCHAUDIO_VERSION}-*.whl"
    cached = sorted(ORACLE_CACHE.glob(pattern))
    if cached:
        return cached[0]
    if _unavailable:
        pytest.skip(_unavailable[0])
    # Any platform's wheel carries the same kaldi.py; naming one lets pip fetch it on any host
    # without building anything. Short network timeouts so an offline run skips quickly.
    with tempfile.TemporaryDirectory(dir=ORACLE_CACHE) as staging:
        command = [
            sys.executable, "-m", "pip", "download", "--no-deps", "--only-binary=:all:",
            "--python-version", "3.11", "--platform", "manylinux_2_28_x86_64",
            "--timeout", "20", "--retries", "1", "--disable-pip-version-check", "--quiet",
            "-d", staging, f"torchaudio=={TORCHAUDIO_VERSION}",
        ]  # fmt: skip
        try:
            result = subprocess.run(command, capture_output=True, text=True, timeout=300)
        except subprocess.TimeoutExpired:
            _unavailable.append(f"reference fbank unavailable: pip download torchaudio=={TORCHAUDIO_VERSION} timed out")
            pytest.skip(_unavailable[0])
        wheels = sorted(Path(staging).glob(pattern))
        if result.returncode != 0 or not wheels:
            reason = (result.stderr.strip().splitlines() or ["no wheel written"])[-1]
            _unavailable.append(
                f"reference fbank unavailable: pip download torchaudio=={TORCHAUDIO_VERSION} failed "
                f"(needs a package registry): {reason}"
            )
            pytest.skip(_unavailable[0])
        # Moved in one step, so a concurrent or interrupted run never sees half a wheel.
        return wheels[0].replace(ORACLE_CACHE / wheels[0].name)


def _extract_kaldi_py() -> Path:
    """``kaldi.py`` from the wheel, written next to it once and checked against its digest."""
    target = ORACLE_CACHE / f"torchaudio-{TORCHAUDIO_VERSION}" / "compliance_kaldi.py"
    if not target.exists():
        with zipfile.ZipFile(_download_wheel()) as wheel:
            source = wheel.read(KALDI_PY)
        target.parent.mkdir(parents=True, exist_ok=True)
        staged = target.with_suffix(".partial")
        staged.write_bytes(source)
        staged.replace(target)
    digest = hashlib.sha256(target.read_bytes()).hexdigest()
    assert digest == KALDI_PY_SHA256, f"{target} is not torchaudio {TORCHAUDIO_VERSION}'s kaldi.py (sha256 {digest})"
    return target


@lru_cache(maxsize=1)
def reference_kaldi() -> types.ModuleType:
    """torchaudio's ``compliance.kaldi`` module, loaded without torchaudio's compiled parts."""
    path = _extract_kaldi_py()
    spec = importlib.util.spec_from_file_location("torchaudio_compliance_kaldi_oracle", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    # kaldi.py runs ``import torchaudio`` at the top; the stand-in is only seen by that import.
    previous = sys.modules.get("torchaudio")
    sys.modules["torchaudio"] = types.ModuleType("torchaudio")
    try:
        spec.loader.exec_module(module)
    finally:
        if previous is None:
            del sys.modules["torchaudio"]
        else:
            sys.modules["torchaudio"] = previous
    return module


def reference_fbank(waveform: np.ndarray) -> torch.Tensor:
    """BEATs' raw fbank ``[T, 128]`` of one float32 clip in [-1, 1], as BEATs' preprocess calls it."""
    samples = torch.from_numpy(np.ascontiguousarray(waveform, dtype=np.float32)).unsqueeze(0) * 2**15
    return reference_kaldi().fbank(
        samples, num_mel_bins=128, sample_frequency=SAMPLE_RATE, frame_length=25, frame_shift=10
    )


def reference_beats_fbank(waveforms: torch.Tensor) -> torch.Tensor:
    """BEATs' normalised model input ``[B, T, 128]``: clip by clip, stacked, ``(x - mean) / (2 std)``."""
    fbanks = torch.stack([reference_fbank(clip.numpy()) for clip in waveforms])
    return (fbanks - BEATS_FBANK_MEAN) / (2 * BEATS_FBANK_STD)


def parity_signal(kind: str, seconds: float, seed: int = 0) -> np.ndarray:
    """A float32 clip of ``seconds`` at 16 kHz: ``tonal``, ``noisy``, ``silent`` or ``clipped``.

    tonal: 0.5 sin with the frequency swinging 900 +- 500 Hz once per 2 s, plus a 0.1 third
    harmonic (most bins hold little energy). noisy: white noise, std 0.1. silent: digital zeros.
    clipped: a 440 Hz sine of amplitude 2 clipped at +-1 (int16 full scale once scaled).
    """
    n = round(seconds * SAMPLE_RATE)
    t = np.arange(n) / SAMPLE_RATE
    if kind == "tonal":
        # Phase = integral of 2 pi (900 + 500 sin(pi t)).
        phase = 2 * math.pi * 900 * t - 1000 * np.cos(math.pi * t)
        signal = 0.5 * np.sin(phase) + 0.1 * np.sin(3 * phase)
    elif kind == "noisy":
        signal = 0.1 * np.random.default_rng(seed).standard_normal(n)
    elif kind == "silent":
        signal = np.zeros(n)
    elif kind == "clipped":
        signal = np.clip(2 * np.sin(2 * math.pi * 440 * t), -1, 1)
    else:
        raise ValueError(f"unknown parity signal {kind!r}; known: {', '.join(PARITY_KINDS)}")
    return signal.astype(np.float32)
