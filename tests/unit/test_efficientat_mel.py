"""EfficientAT's log-mel frontend against the spec's checks (section 6) and a float64 re-derivation."""

from __future__ import annotations

from collections.abc import Callable

import kaldi_native_fbank as knf
import numpy as np
import pytest
import torch

from shared.features.efficientat_mel import (
    efficientat_logmel,
    efficientat_mel_bank,
    logmel_from_preemphasised,
    preemphasis,
)

SAMPLE_RATE = 32_000


def _tone() -> np.ndarray:
    """Spec section 6: 0.5 sin(2 pi 1000 t), 1 s, built in float64 then cast."""
    t = np.arange(SAMPLE_RATE, dtype=np.float64) / SAMPLE_RATE
    return (0.5 * np.sin(2 * np.pi * 1000 * t)).astype(np.float32)


def _noise() -> np.ndarray:
    """Spec section 6: 0.3 (2u - 1), u from splitmix64(n + 1) >> 40 over 2^24, 1 s."""
    z = np.arange(1, SAMPLE_RATE + 1, dtype=np.uint64) + np.uint64(0x9E3779B97F4A7C15)
    z = (z ^ (z >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
    z = (z ^ (z >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
    z = z ^ (z >> np.uint64(31))
    u = (z >> np.uint64(40)).astype(np.float64) / 2**24
    return (0.3 * (2 * u - 1)).astype(np.float32)


def _logmel_f64(x: np.ndarray) -> np.ndarray:
    """Spec section 1 in float64 numpy with an rfft STFT, [128, T]."""

    def mel(f: np.ndarray | float) -> np.ndarray:
        return 1127.0 * np.log1p(np.asarray(f, dtype=np.float64) / 700.0)

    x = x.astype(np.float64)
    padded = np.pad(x[1:] - 0.97 * x[:-1], 512, mode="reflect")
    n_frames = 1 + (len(padded) - 1024) // 320
    window = np.zeros(1024)
    window[112:912] = 0.5 - 0.5 * np.cos(2 * np.pi * np.arange(800) / 799)
    frames = padded[320 * np.arange(n_frames)[:, None] + np.arange(1024)[None]] * window
    power = np.abs(np.fft.rfft(frames, axis=1)) ** 2
    delta = mel(15_000.0) / 129
    m = np.arange(128)[:, None]
    fft_mel = mel(31.25 * np.arange(512))[None]
    bank = np.maximum(0.0, np.minimum((fft_mel - m * delta) / delta, ((m + 2) * delta - fft_mel) / delta))
    bank = np.pad(bank, ((0, 0), (0, 1)))
    return ((np.log(power @ bank.T + 1e-5) + 4.5) / 5).T


def test_mel_bank_facts() -> None:
    bank = efficientat_mel_bank()
    assert bank.shape == (128, 513) and bank.dtype == torch.float32
    assert int((bank != 0).sum()) == 948
    assert bank[0].sum().item() == pytest.approx(0.18860, abs=1e-5)
    assert bank[127].sum().item() == pytest.approx(11.8328, abs=1e-4)
    assert bank[:, 512].abs().max().item() == 0.0


def test_mel_bank_matches_kaldi_native_fbank() -> None:
    mel_opts = knf.MelBanksOptions()
    mel_opts.num_bins, mel_opts.low_freq, mel_opts.high_freq = 128, 0.0, 15_000.0
    frame_opts = knf.FrameExtractionOptions()
    frame_opts.samp_freq = SAMPLE_RATE
    frame_opts.frame_length_ms = 25  # 800 samples, padded to a 1024 FFT
    reference = knf.MelBanks(mel_opts, frame_opts).get_matrix()
    np.testing.assert_allclose(efficientat_mel_bank().numpy(), reference, atol=2e-5, rtol=0)


def test_mel_bank_is_a_fresh_tensor() -> None:
    bank = efficientat_mel_bank()
    bank.zero_()
    assert efficientat_mel_bank().sum().item() > 0


@pytest.mark.parametrize(("n", "frames"), [(32_000, 100), (320_000, 1000), (31_200, 98), (514, 2), (833, 3)])
def test_frame_count(n: int, frames: int) -> None:
    assert efficientat_logmel(torch.zeros(1, n)).shape == (1, 128, frames)


def test_too_short_or_wrong_shape_is_rejected() -> None:
    with pytest.raises(ValueError, match="at least 514 samples"):
        efficientat_logmel(torch.zeros(1, 513))
    with pytest.raises(ValueError, match=r"\[B, N\]"):
        efficientat_logmel(torch.zeros(32_000))
    with pytest.raises(ValueError, match="L >= 1024"):
        logmel_from_preemphasised(torch.zeros(1, 1023))


def test_silence() -> None:
    mel = efficientat_logmel(torch.zeros(1, 320_000))
    assert mel.shape == (1, 128, 1000)
    assert torch.allclose(mel, torch.tensor(-1.4025851), rtol=0, atol=1e-6)


def test_tone_mel_mean() -> None:
    mel = efficientat_logmel(torch.from_numpy(_tone())[None])
    assert mel.mean().item() == pytest.approx(-1.16651, abs=1e-4)


@pytest.mark.parametrize("signal", [_tone, _noise])
def test_matches_float64_derivation(signal: Callable[[], np.ndarray]) -> None:
    x = signal()
    ours = efficientat_logmel(torch.from_numpy(x)[None])[0].numpy()
    # Measured: 2.4e-5 (tone), 3.1e-5 (noise); float32 STFT vs float64 rfft.
    np.testing.assert_allclose(ours, _logmel_f64(x), atol=1e-4, rtol=0)


def test_batch_independent_and_input_untouched() -> None:
    batch = torch.from_numpy(np.stack([_tone(), _noise()]))
    before = batch.clone()
    mel = efficientat_logmel(batch)
    assert torch.equal(batch, before)
    for i in range(2):
        torch.testing.assert_close(mel[i], efficientat_logmel(batch[i : i + 1])[0], rtol=0, atol=1e-6)


def test_preemphasis_is_valid_and_shorter() -> None:
    x = torch.tensor([[1.0, 2.0, 4.0]])
    torch.testing.assert_close(preemphasis(x), torch.tensor([[2.0 - 0.97, 4.0 - 1.94]]))


def test_model_using_it_has_no_state() -> None:
    """A network that calls the frontend in forward keeps a strict-loadable state dict."""

    class Frontend(torch.nn.Module):
        def forward(self, waveform: torch.Tensor) -> torch.Tensor:
            return efficientat_logmel(waveform).unsqueeze(1)

    module = Frontend()
    assert module(torch.zeros(1, 1000)).shape == (1, 1, 128, 4)
    assert module.state_dict() == {} and list(module.buffers(recurse=True)) == []
