"""BEATs' Kaldi filterbank: ``torchaudio.compliance.kaldi.fbank`` with BEATs' arguments, without torchaudio.

The steps and their order follow torchaudio's ``fbank`` op for op, so the result is bit-identical
to it in float32: frames of 400 samples every 160 (snip_edges: only complete frames), per-frame DC
removal, pre-emphasis 0.97 inside the frame, Povey window, zero-pad to 512, ``|rfft|^2``, 128
triangular mel filters between 20 Hz and 8 kHz, ``ln(max(E, FLT_EPSILON))``. Dither is 0. The
tests check bit-identity against torchaudio 2.11.0's own ``compliance/kaldi.py`` (fetched at test
time, ``tests/kaldi_oracle.py``) on tonal, noisy, silent and clipped clips.

``fbank_from_frames`` is the per-frame computation; ``kaldi_fbank`` frames a batch and calls it,
and the streaming path (``shared.features.stream``) calls it on the frames it completes, so both
share one computation. ``kaldi_mel_bank`` also builds EfficientAT's filterbank.

With 128 bins on a 512-point FFT, filter 3 (63 to 93 Hz) contains no FFT bin (62.5, 93.75 Hz) and
is all zero, so feature 3 is always ``ln(FLT_EPSILON)`` (normalised: -2.39169). Kaldi itself
refuses this configuration ("num_mel_bins too large"); torchaudio, and so BEATs, keep the filter.
"""

from __future__ import annotations

import math
from functools import lru_cache

import torch
import torch.nn.functional as F

from shared.features.spec import BEATS_FBANK

__all__ = [
    "BEATS_FBANK_MEAN",
    "BEATS_FBANK_STD",
    "beats_fbank",
    "beats_normalise",
    "fbank_from_frames",
    "kaldi_fbank",
    "kaldi_mel_bank",
]

BEATS_FBANK_MEAN = 15.41663
BEATS_FBANK_STD = 6.55582

FRAME_LENGTH = BEATS_FBANK.frame_length  # 400 samples = 25 ms at 16 kHz
FRAME_SHIFT = BEATS_FBANK.frame_shift  # 160 samples = 10 ms
N_FFT = 512  # the frame length rounded up to a power of two
PREEMPHASIS = 0.97
LOW_FREQ = 20.0
# numeric_limits<float>::epsilon(): Kaldi's floor before the log.
LOG_FLOOR = torch.finfo(torch.float32).eps
# BEATs feeds int16-scaled samples to the fbank.
INT16_SCALE = 2**15


def kaldi_mel_bank(
    num_bins: int, n_fft: int, sample_rate: float, low_freq: float, high_freq: float
) -> torch.Tensor:
    """Kaldi's triangular mel filterbank, float32 ``[num_bins, n_fft // 2 + 1]``.

    Triangles are drawn in mel (``1127 ln(1 + f/700)``) with edges equally spaced between
    ``mel(low_freq)`` and ``mel(high_freq)``; there is no area normalisation. The Nyquist column is
    zero. The arithmetic repeats ``torchaudio.compliance.kaldi.get_mel_banks`` (no VTLN) in float32,
    so the weights are bit-identical to it.
    """
    num_fft_bins = n_fft / 2
    fft_bin_width = sample_rate / n_fft
    mel_low = 1127.0 * math.log(1.0 + low_freq / 700.0)
    mel_high = 1127.0 * math.log(1.0 + high_freq / 700.0)
    mel_delta = (mel_high - mel_low) / (num_bins + 1)

    # Integer arange times a Python float, exactly as torchaudio does it: the rounding matches.
    bin_index = torch.arange(num_bins).unsqueeze(1)
    left = mel_low + bin_index * mel_delta
    centre = mel_low + (bin_index + 1.0) * mel_delta
    right = mel_low + (bin_index + 2.0) * mel_delta
    mel = (1127.0 * (1.0 + fft_bin_width * torch.arange(num_fft_bins) / 700.0).log()).unsqueeze(0)
    up = (mel - left) / (centre - left)
    down = (right - mel) / (right - centre)
    bank = torch.max(torch.zeros(1), torch.min(up, down))
    return F.pad(bank, (0, 1), mode="constant", value=0.0)


@lru_cache(maxsize=8)
def _constants(device: torch.device, dtype: torch.dtype) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Povey window, mel bank and log floor on one device; cached, never modified in place."""
    window = torch.hann_window(FRAME_LENGTH, periodic=False, dtype=torch.float32).pow(0.85)
    nyquist = 0.5 * BEATS_FBANK.sample_rate
    bank = kaldi_mel_bank(BEATS_FBANK.n_mels, N_FFT, BEATS_FBANK.sample_rate, LOW_FREQ, nyquist)
    floor = torch.tensor(LOG_FLOOR, dtype=torch.float32)
    return (
        window.to(device=device, dtype=dtype).unsqueeze(0),
        bank.to(device=device, dtype=dtype),
        floor.to(device=device, dtype=dtype),
    )


def fbank_from_frames(frames: torch.Tensor) -> torch.Tensor:
    """Raw log fbank ``[F, 128]`` of ``F`` frames ``[F, 400]`` of int16-scaled samples (x 32768).

    Each row is one 25 ms frame of 16 kHz audio; rows are independent, so any set of frames may be
    passed (a whole clip's, or the few a stream has just completed).
    """
    if frames.dim() != 2 or frames.shape[1] != FRAME_LENGTH:
        raise ValueError(f"frames must be [F, {FRAME_LENGTH}], got {list(frames.shape)}")
    window, bank, floor = _constants(frames.device, frames.dtype)
    frames = frames - torch.mean(frames, dim=1).unsqueeze(1)
    # Pre-emphasis inside the frame with x[-1] := x[0], as Kaldi does. Shifting by cat and
    # letting rfft zero-pad to 512 copy the same values as torchaudio's replicate/constant pads,
    # with fewer ops (the streaming path calls this for two frames at a time).
    previous = torch.cat([frames[:, :1], frames[:, :-1]], dim=1)
    frames = (frames - PREEMPHASIS * previous) * window
    power = torch.fft.rfft(frames, n=N_FFT).abs().pow(2.0)
    return torch.max(torch.mm(power, bank.T), floor).log()


def kaldi_fbank(waveform: torch.Tensor) -> torch.Tensor:
    """Raw log Kaldi fbank ``[B, T, 128]`` of ``[B, N]`` float audio in [-1, 1] at 16 kHz.

    ``T = 1 + (N - 400) // 160``; trailing samples that do not fill a frame are ignored. Scales by
    2**15 inside (BEATs' convention). Batched, and bit-identical to BEATs' per-clip torchaudio call
    (MKL's matrix product may round the last bit differently when one call holds fewer than 12
    frames: measured up to 1.9e-6 in log energy, 1.5e-7 after normalisation).
    Raises ``ValueError`` for ``N < 400`` (no complete frame) or a tensor that is not 2-D.
    """
    if waveform.dim() != 2:
        raise ValueError(f"waveform must be [B, N], got shape {list(waveform.shape)}")
    batch, samples = waveform.shape
    if samples < FRAME_LENGTH:
        raise ValueError(
            f"kaldi_fbank needs at least {FRAME_LENGTH} samples (one 25 ms frame at 16 kHz), got {samples}"
        )
    frames = (waveform * INT16_SCALE).unfold(-1, FRAME_LENGTH, FRAME_SHIFT)
    n_frames = frames.shape[1]
    return fbank_from_frames(frames.reshape(batch * n_frames, FRAME_LENGTH)).reshape(batch, n_frames, -1)


def beats_normalise(
    fbank: torch.Tensor, fbank_mean: float = BEATS_FBANK_MEAN, fbank_std: float = BEATS_FBANK_STD
) -> torch.Tensor:
    """BEATs' normalisation of a raw log fbank: ``(fbank - mean) / (2 * std)``."""
    return (fbank - fbank_mean) / (2 * fbank_std)


def beats_fbank(
    waveform: torch.Tensor, fbank_mean: float = BEATS_FBANK_MEAN, fbank_std: float = BEATS_FBANK_STD
) -> torch.Tensor:
    """BEATs' model input ``[B, T, 128]`` (time, mel): the normalised ``kaldi_fbank`` of ``waveform``."""
    return beats_normalise(kaldi_fbank(waveform), fbank_mean, fbank_std)
