"""EfficientAT's log-mel frontend (eval mode of its ``AugmentMelSTFT``), without learnable parts.

Steps: "valid" pre-emphasis ``y[n] = x[n+1] - 0.97 x[n]`` (length N-1); STFT with n_fft 1024, hop
320 and the 800-sample symmetric Hann window centred in each 1024 frame, after reflect-padding
``y`` by 512 on both sides; power ``re^2 + im^2``; a Kaldi-style mel bank (128 bands, 0 to 15 kHz,
float32); ``(ln(mel + 1e-5) + 4.5) / 5``. The ops repeat the reference's, so the output is
bit-identical to it on CPU in float32.

Plain functions, no ``nn.Module``: a model that calls ``efficientat_logmel`` in its forward gains
no buffers, so the official state dict still loads strictly.

``logmel_from_preemphasised`` is the per-frame computation on an already padded signal, and
``efficientat_logmel`` pads a batch and calls it: the reference, in torch, on any device.
``logmel_frames`` is the same computation for the live path (``shared.features.stream``), which
computes a hop's 50 frames per call for every session: there torch's fixed cost per op was half
the time and the dense mel matmul most of the rest, so it multiplies each band group only over
the FFT bins its triangles cover (an eighth of the dense products) and does the elementwise work
in numpy. It agrees with the reference to about 2e-6 (float32 rounding).
"""

from __future__ import annotations

from functools import lru_cache

import numpy as np
import torch
import torch.nn.functional as F

from shared.features.kaldi_fbank import kaldi_mel_bank
from shared.features.spec import EFFICIENTAT_MEL

__all__ = [
    "MIN_SAMPLES",
    "N_FFT",
    "efficientat_logmel",
    "efficientat_mel_bank",
    "logmel_frames",
    "logmel_from_preemphasised",
    "preemphasis",
]

N_FFT = 1024
HOP = EFFICIENTAT_MEL.frame_shift  # 320 samples = 10 ms at 32 kHz
WIN_LENGTH = EFFICIENTAT_MEL.frame_length  # 800 samples = 25 ms
CENTRE_PAD = N_FFT // 2
PREEMPHASIS = 0.97
FMIN = 0.0
FMAX = 15_000.0  # 16 kHz Nyquist minus half of the 2 kHz training jitter range
MEL_FLOOR = 1e-5
# Reflect padding by 512 needs at least 513 pre-emphasised samples, hence 514 raw samples.
MIN_SAMPLES = CENTRE_PAD + 2
# The 800-sample window sits in the middle of each 1024-sample frame (as torch.stft puts it).
_WINDOW_OFFSET = (N_FFT - WIN_LENGTH) // 2
# logmel_frames's band groups: 8 groups of 16 bands take 8,048 products per frame against the
# dense bank's 65,664; more groups cost more in calls than they save (bench_features.py).
_MEL_GROUPS = 8


def efficientat_mel_bank() -> torch.Tensor:
    """EfficientAT's eval mel bank, float32 ``[128, 513]`` (a fresh tensor on the CPU).

    Kaldi triangles in mel between 0 and 15 kHz for a 1024-point FFT at 32 kHz, no normalisation;
    948 non-zero weights, row 0 sums to 0.18860, row 127 to 11.8328, the Nyquist column is zero.
    """
    return kaldi_mel_bank(EFFICIENTAT_MEL.n_mels, N_FFT, EFFICIENTAT_MEL.sample_rate, FMIN, FMAX)


@lru_cache(maxsize=8)
def _constants(device: torch.device, dtype: torch.dtype) -> tuple[torch.Tensor, torch.Tensor]:
    """Hann window and mel bank on one device; cached, never modified in place."""
    window = torch.hann_window(WIN_LENGTH, periodic=False, dtype=torch.float32)
    return window.to(device=device, dtype=dtype), efficientat_mel_bank().to(device=device, dtype=dtype)


@lru_cache(maxsize=1)
def _frame_constants() -> tuple[torch.Tensor, tuple[tuple[int, int, int, int, np.ndarray], ...]]:
    """The window, and per band group (first band, end band, first bin, end bin, weights
    ``[bins, bands]``): the bank's non-zero columns for those bands. Cached, never modified."""
    window = torch.zeros(N_FFT)
    window[_WINDOW_OFFSET : _WINDOW_OFFSET + WIN_LENGTH] = torch.hann_window(WIN_LENGTH, periodic=False)
    bank = efficientat_mel_bank().numpy()
    size = bank.shape[0] // _MEL_GROUPS
    groups = []
    for first in range(0, bank.shape[0], size):
        rows = bank[first : first + size]
        bins = np.flatnonzero(rows.any(axis=0))
        lo, hi = int(bins[0]), int(bins[-1]) + 1
        groups.append((first, first + size, lo, hi, np.ascontiguousarray(rows[:, lo:hi].T)))
    return window, tuple(groups)


def logmel_frames(padded: np.ndarray) -> np.ndarray:
    """Normalised log-mel frames ``[T, 128]`` (time-major float32) of a pre-emphasised 1-D
    float32 signal: ``logmel_from_preemphasised`` of it, transposed, to about 2e-6.

    Frame ``t`` is ``padded[320 t : 320 t + 1024]``; ``T = 1 + (L - 1024) // 320``, and an
    empty ``[0, 128]`` when ``L < 1024``. For the live path, on the CPU (see the module docstring).
    """
    if padded.ndim != 1:
        raise ValueError(f"pre-emphasised signal must be 1-D, got shape {padded.shape}")
    count = 1 + (padded.shape[0] - N_FFT) // HOP if padded.shape[0] >= N_FFT else 0
    if count == 0:
        return np.zeros((0, EFFICIENTAT_MEL.n_mels), np.float32)
    window, groups = _frame_constants()
    # torch's unfold and multiply: a view and one op, several times cheaper than numpy's as_strided.
    frames = torch.from_numpy(np.ascontiguousarray(padded, dtype=np.float32)).unfold(0, N_FFT, HOP)
    spectrum = torch.fft.rfft(frames * window, dim=1).numpy()
    power = np.square(spectrum.real)
    power += np.square(spectrum.imag)
    mel = np.empty((count, EFFICIENTAT_MEL.n_mels), np.float32)
    for first, end, lo, hi, weights in groups:
        np.matmul(power[:, lo:hi], weights, out=mel[:, first:end])
    mel += MEL_FLOOR
    np.log(mel, out=mel)
    mel += 4.5
    mel /= 5.0
    return mel


def preemphasis(waveform: torch.Tensor) -> torch.Tensor:
    """Valid 2-tap pre-emphasis along the last axis: ``y[n] = x[n+1] - 0.97 x[n]``, one sample shorter.

    Each output depends on two neighbouring inputs only, so a stream can apply it chunk by chunk
    (carrying the last sample over) and get the same values.
    """
    return waveform[..., 1:] - PREEMPHASIS * waveform[..., :-1]


def logmel_from_preemphasised(padded: torch.Tensor) -> torch.Tensor:
    """Normalised log-mel ``[B, 128, T]`` of a pre-emphasised signal ``[B, L]``, frames not centred.

    Frame ``t`` is ``padded[:, 320 t : 320 t + 1024]`` (the window covers its middle 800 samples),
    ``T = 1 + (L - 1024) // 320``. The caller supplies any centring padding; ``L >= 1024``.
    """
    if padded.dim() != 2 or padded.shape[1] < N_FFT:
        raise ValueError(f"pre-emphasised signal must be [B, L] with L >= {N_FFT}, got {list(padded.shape)}")
    window, bank = _constants(padded.device, padded.dtype)
    spectrum = torch.stft(
        padded,
        N_FFT,
        hop_length=HOP,
        win_length=WIN_LENGTH,
        window=window,
        center=False,
        normalized=False,
        onesided=True,
        return_complex=True,
    )
    # Two rounded squares and one rounded add: the same bits as the reference's
    # view_as_real(...).pow(2).sum(-1), several times faster.
    power = spectrum.real.square() + spectrum.imag.square()
    mel = torch.matmul(bank, power)
    return ((mel + MEL_FLOOR).log() + 4.5) / 5.0


def efficientat_logmel(waveform: torch.Tensor) -> torch.Tensor:
    """EfficientAT's model input ``[B, 128, T]`` (mel, time) of ``[B, N]`` float audio at 32 kHz.

    ``T = 1 + (N - 1) // 320`` centred frames (frame ``t`` centred at sample ``320 t`` of the
    pre-emphasised signal, reflect padding at both clip edges). The caller's tensor is not modified.
    Raises ``ValueError`` for ``N < 514`` (too short to reflect-pad) or a tensor that is not 2-D.
    Add the channel axis (``unsqueeze(1)``) for the network.
    """
    if waveform.dim() != 2:
        raise ValueError(f"waveform must be [B, N], got shape {list(waveform.shape)}")
    if waveform.shape[1] < MIN_SAMPLES:
        raise ValueError(
            f"efficientat_logmel needs at least {MIN_SAMPLES} samples at 32 kHz "
            f"(reflect padding of {CENTRE_PAD} after pre-emphasis), got {waveform.shape[1]}"
        )
    emphasised = preemphasis(waveform)
    padded = F.pad(emphasised.unsqueeze(0), (CENTRE_PAD, CENTRE_PAD), mode="reflect").squeeze(0)
    return logmel_from_preemphasised(padded)
