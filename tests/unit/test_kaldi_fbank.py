"""BEATs' Kaldi filterbank against the reference (torchaudio's kaldi.py), kaldi-native-fbank and the spec's facts.

The reference is the file BEATs itself calls, fetched from PyPI at test time (``tests.kaldi_oracle``);
those tests skip, saying why, where no package registry is reachable.
"""

from __future__ import annotations

import kaldi_native_fbank as knf
import numpy as np
import pytest
import torch

from shared.features.kaldi_fbank import (
    BEATS_FBANK_MEAN,
    BEATS_FBANK_STD,
    beats_fbank,
    beats_normalise,
    fbank_from_frames,
    kaldi_fbank,
    kaldi_mel_bank,
)
from shared.features import efficientat_mel
from shared.features.spec import EFFICIENTAT_MEL
from tests.kaldi_oracle import PARITY_KINDS, parity_signal, reference_beats_fbank, reference_fbank, reference_kaldi

SAMPLE_RATE = 16_000
SILENCE_VALUE = -2.39169  # (ln(FLT_EPSILON) - 15.41663) / 13.11164


def _test_signal(n: int, seed: int = 0) -> np.ndarray:
    """A tone in noise with a very quiet stretch and a stretch of digital silence, float32."""
    rng = np.random.default_rng(seed)
    t = np.arange(n) / SAMPLE_RATE
    x = 0.3 * np.sin(2 * np.pi * 440 * t) + 0.05 * rng.standard_normal(n)
    x[n // 3 : n // 2] *= 1e-3
    x[n // 2 : n // 2 + min(2000, n // 4)] = 0.0
    return x.astype(np.float32)


def _mel_bank_f64(num_bins: int, n_fft: int, sample_rate: float, low_hz: float, high_hz: float) -> np.ndarray:
    """Spec step (6) in float64: Kaldi triangles in mel, Nyquist column zero."""

    def mel(f: np.ndarray | float) -> np.ndarray:
        return 1127.0 * np.log1p(np.asarray(f, dtype=np.float64) / 700.0)

    low, high = mel(low_hz), mel(high_hz)
    delta = (high - low) / (num_bins + 1)
    m = np.arange(num_bins)[:, None]
    left, centre, right = low + m * delta, low + (m + 1) * delta, low + (m + 2) * delta
    fft_mel = mel(sample_rate / n_fft * np.arange(n_fft // 2))[None]
    bank = np.maximum(0.0, np.minimum((fft_mel - left) / (centre - left), (right - fft_mel) / (right - centre)))
    return np.pad(bank, ((0, 0), (0, 1)))


def _frame_options() -> knf.FrameExtractionOptions:
    opts = knf.FrameExtractionOptions()
    opts.samp_freq = SAMPLE_RATE
    opts.frame_length_ms = 25
    opts.frame_shift_ms = 10
    opts.dither = 0.0
    opts.window_type = "povey"
    opts.preemph_coeff = 0.97
    opts.remove_dc_offset = True
    opts.snip_edges = True
    return opts


def _knf_log_fbank(x: np.ndarray) -> np.ndarray:
    """Kaldi's fbank via kaldi-native-fbank's framing, windowing and FFT, raw log [T, 128].

    kaldi-native-fbank (like Kaldi) refuses 128 bins at 16 kHz with a 512 FFT because filter 3
    covers no FFT bin (see test_beats_mel_bank_has_an_empty_filter), so its OnlineFbank cannot
    run BEATs' configuration. Its frame extraction (DC removal, pre-emphasis, Povey window) and
    its FFT can; the mel bank comes from the float64 formula.
    """
    opts = _frame_options()
    # Kaldi pads to 512 before the FFT; OnlineRawAudioSamples would have to return the padded
    # frame, which this version mishandles, so it returns 400 samples and we pad here.
    opts.round_to_power_of_two = False
    raw = knf.OnlineRawAudioSamples(knf.RawAudioSamplesOptions(frame_opts=opts))
    raw.accept_waveform(SAMPLE_RATE, (x * 32768).tolist())
    raw.input_finished()
    frames = [np.array(raw.get_frame(i), dtype=np.float32) for i in range(raw.num_frames_ready)]
    rfft = knf.Rfft(512)
    power = np.zeros((len(frames), 257), dtype=np.float32)
    for i, frame in enumerate(frames):
        packed = np.array(rfft.compute(np.pad(frame, (0, 112)).tolist()), dtype=np.float32)
        real = np.concatenate([packed[:1], packed[2::2], packed[1:2]])
        imag = np.concatenate([[0.0], packed[3::2], [0.0]]).astype(np.float32)
        power[i] = real * real + imag * imag
    bank = _mel_bank_f64(128, 512, SAMPLE_RATE, 20.0, 8000.0).astype(np.float32)
    return np.log(np.maximum(power @ bank.T, np.float32(1.1920929e-07)))


@pytest.mark.parametrize("seconds", [0.175, 0.625, 1, 2, 10])
@pytest.mark.parametrize("kind", PARITY_KINDS)
def test_matches_torchaudio_kaldi_fbank(kind: str, seconds: float) -> None:
    x = parity_signal(kind, seconds)
    reference = reference_fbank(x)
    ours = kaldi_fbank(torch.from_numpy(x)[None])[0]
    assert ours.shape == reference.shape == (1 + (len(x) - 400) // 160, 128)
    # The same float32 ops in the same order, so bit-identical (measured: 0.0 on all 20 cases),
    # including the bins of a tone that hold almost no energy.
    difference = (ours - reference).abs().max().item()
    assert torch.equal(ours, reference), f"max abs difference {difference:.3g}"


def test_batch_matches_torchaudio_kaldi_fbank_clip_by_clip() -> None:
    """BEATs' normalised input for a batch equals the reference's per-clip call, stacked."""
    clips = torch.from_numpy(np.stack([parity_signal(kind, 1) for kind in PARITY_KINDS]))
    reference = reference_beats_fbank(clips)
    ours = beats_fbank(clips)
    assert ours.shape == reference.shape == (4, 98, 128)
    # Measured 0.0: one matrix product over all clips' frames rounds like one per clip here. MKL
    # may round the last bit differently for products of fewer than 12 frames (< 2e-7 normalised).
    assert (ours - reference).abs().max().item() <= 1e-5


@pytest.mark.parametrize(
    ("num_bins", "n_fft", "sample_rate", "low_hz", "high_hz"),
    [
        (128, 512, SAMPLE_RATE, 20.0, 8_000.0),  # BEATs
        (
            EFFICIENTAT_MEL.n_mels,
            efficientat_mel.N_FFT,
            EFFICIENTAT_MEL.sample_rate,
            efficientat_mel.FMIN,
            efficientat_mel.FMAX,
        ),
    ],
)
def test_mel_bank_equals_torchaudio_get_mel_banks(
    num_bins: int, n_fft: int, sample_rate: int, low_hz: float, high_hz: float
) -> None:
    bank, _ = reference_kaldi().get_mel_banks(num_bins, n_fft, sample_rate, low_hz, high_hz, 100.0, -500.0, 1.0)
    reference = torch.nn.functional.pad(bank, (0, 1), mode="constant", value=0)
    ours = kaldi_mel_bank(num_bins, n_fft, sample_rate, low_hz, high_hz)
    assert ours.dtype == reference.dtype == torch.float32
    assert torch.equal(ours, reference)


@pytest.mark.parametrize("n", [400, 2800, 10_000, 32_000, 160_000])
def test_matches_kaldi_native_fbank(n: int) -> None:
    x = _test_signal(n)
    ours = beats_fbank(torch.from_numpy(x)[None])[0]
    reference = beats_normalise(torch.from_numpy(_knf_log_fbank(x)))
    assert ours.shape == reference.shape == (1 + (n - 400) // 160, 128)
    # Measured: 3.5e-6 (N=400) to 2.2e-5 (N=160,000): float32 rounding in the two FFTs and frame sums.
    assert (ours - reference).abs().max().item() < 1e-4


@pytest.mark.parametrize(
    ("num_bins", "sample_rate", "low_hz", "high_hz", "n_fft"),
    [(80, 16_000, 20.0, 8_000.0, 512), (128, 32_000, 0.0, 15_000.0, 1024)],
)
def test_mel_bank_matches_kaldi_native_fbank(
    num_bins: int, sample_rate: int, low_hz: float, high_hz: float, n_fft: int
) -> None:
    mel_opts = knf.MelBanksOptions()
    mel_opts.num_bins, mel_opts.low_freq, mel_opts.high_freq = num_bins, low_hz, high_hz
    frame_opts = knf.FrameExtractionOptions()
    frame_opts.samp_freq = sample_rate
    frame_opts.frame_length_ms = 25
    reference = knf.MelBanks(mel_opts, frame_opts).get_matrix()
    ours = kaldi_mel_bank(num_bins, n_fft, sample_rate, low_hz, high_hz)
    assert ours.dtype == torch.float32 and ours.shape == reference.shape
    # Kaldi computes the mel positions with single-precision libm calls; torch differs in the last
    # bits (kaldi-native-fbank 1.23 differs from us by up to 2.1e-5 on two weights of 20,560).
    np.testing.assert_allclose(ours.numpy(), reference, atol=5e-5, rtol=0)


def test_beats_mel_bank_has_an_empty_filter() -> None:
    """Filter 3 of BEATs' bank covers no FFT bin: Kaldi refuses, torchaudio (and we) keep a zero row."""
    bank = kaldi_mel_bank(128, 512, SAMPLE_RATE, 20.0, 8000.0)
    assert bank.shape == (128, 257)
    assert (bank.sum(dim=1) == 0).nonzero().flatten().tolist() == [3]
    assert bank[:, 256].abs().max().item() == 0.0
    mel_opts = knf.MelBanksOptions()
    mel_opts.num_bins, mel_opts.low_freq, mel_opts.high_freq = 128, 20.0, 0.0
    with pytest.raises(ValueError, match="num_mel_bins too large"):
        knf.MelBanks(mel_opts, _frame_options())
    # So feature 3 is always the floor, whatever the audio.
    fbank = beats_fbank(torch.from_numpy(_test_signal(4000))[None])
    assert torch.allclose(fbank[0, :, 3], torch.tensor(SILENCE_VALUE), atol=1e-5)


def test_silence_normalises_to_the_floor() -> None:
    fbank = beats_fbank(torch.zeros(2, 32_000))
    assert fbank.shape == (2, 198, 128)
    assert torch.allclose(fbank, torch.tensor(SILENCE_VALUE), atol=1e-5)


@pytest.mark.parametrize(("n", "frames"), [(400, 1), (559, 1), (560, 2), (2_800, 16), (16_000, 98), (32_000, 198)])
def test_frame_count(n: int, frames: int) -> None:
    assert kaldi_fbank(torch.zeros(1, n)).shape == (1, frames, 128)


def test_too_short_is_rejected() -> None:
    with pytest.raises(ValueError, match="at least 400 samples"):
        kaldi_fbank(torch.zeros(1, 399))
    with pytest.raises(ValueError, match=r"\[B, N\]"):
        kaldi_fbank(torch.zeros(400))
    with pytest.raises(ValueError, match=r"\[F, 400\]"):
        fbank_from_frames(torch.zeros(3, 401))


def test_batch_equals_single_clips_and_leaves_input_alone() -> None:
    clips = torch.from_numpy(np.stack([_test_signal(32_000, seed=s) for s in range(3)]))
    before = clips.clone()
    batched = kaldi_fbank(clips)
    assert torch.equal(clips, before)
    for i in range(3):
        assert torch.equal(batched[i], kaldi_fbank(clips[i : i + 1])[0])


def test_batch_is_frames_then_fbank_from_frames() -> None:
    x = torch.from_numpy(_test_signal(8_000))
    frames = (x * 32768).unfold(0, 400, 160)
    assert torch.equal(kaldi_fbank(x[None])[0], fbank_from_frames(frames))


def test_normalisation_constants_and_overrides() -> None:
    x = torch.from_numpy(_test_signal(4_000))[None]
    raw = kaldi_fbank(x)
    assert torch.equal(beats_fbank(x), (raw - BEATS_FBANK_MEAN) / (2 * BEATS_FBANK_STD))
    assert torch.equal(beats_fbank(x, fbank_mean=1.0, fbank_std=0.5), raw - 1.0)
