"""Parity of our EfficientAT mn04 with the reference (spec efficientat-mn04.md section 6, fp32 CPU)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from scipy.signal import resample_poly

from services.inference.models.efficientat import FEATURE_SPEC, EfficientAT, load_efficientat
from shared.features.efficientat_mel import efficientat_logmel, efficientat_mel_bank
from shared.features.spec import EFFICIENTAT_MEL

SHARED = Path(__file__).resolve().parents[2].parent / "shared"
WEIGHTS = SHARED / "models" / "efficientat_mn04_as" / "mn04_as_mAP_432.pt"
SPEECH = SHARED / "models" / "yamnet" / "speech_test_16k_int16.bin"
SR = 32_000
TOL = 1e-4


@pytest.fixture(scope="module")
def weights() -> Path:
    if not WEIGHTS.is_file():
        pytest.skip(f"EfficientAT mn04 weights not found at {WEIGHTS} (the CEO shared/ folder beside the clone)")
    return WEIGHTS


@pytest.fixture(scope="module")
def model(weights: Path) -> EfficientAT:
    return load_efficientat(weights)


def _splitmix64(z: int) -> int:
    mask = (1 << 64) - 1
    z = (z + 0x9E3779B97F4A7C15) & mask
    z = ((z ^ (z >> 30)) * 0xBF58476D1CE4E5B9) & mask
    z = ((z ^ (z >> 27)) * 0x94D049BB133111EB) & mask
    return z ^ (z >> 31)


def _tone() -> torch.Tensor:
    t = np.arange(SR) / SR
    return torch.from_numpy((0.5 * np.sin(2 * np.pi * 1000 * t)).astype(np.float32))[None]


def _noise() -> torch.Tensor:
    u = np.array([(_splitmix64(n + 1) >> 40) / 2**24 for n in range(SR)])
    return torch.from_numpy((0.3 * (2 * u - 1)).astype(np.float32))[None]


def _speech() -> torch.Tensor:
    pcm = np.fromfile(SPEECH, dtype="<i2").astype(np.float64) / 32768
    return torch.from_numpy(resample_poly(pcm, 2, 1).astype(np.float32))[None]


def _silence() -> torch.Tensor:
    return torch.zeros(1, 10 * SR)


def _run(model: EfficientAT, waveform: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    with torch.inference_mode():
        return model(waveform)


def test_strict_load_matches_the_published_checkpoint(model: EfficientAT, weights: Path) -> None:
    checkpoint = torch.load(weights, map_location="cpu", weights_only=True)
    state = model.state_dict()
    assert len(state) == 312
    assert {k: tuple(v.shape) for k, v in state.items()} == {k: tuple(v.shape) for k, v in checkpoint.items()}
    assert all(torch.equal(state[k], checkpoint[k]) for k in checkpoint)
    assert sum(p.numel() for p in model.parameters() if p.requires_grad) == 983_599
    assert sum(v.numel() for v in state.values()) == 993_485
    assert not any(m.training for m in model.modules())
    assert model.FEATURE_SPEC is FEATURE_SPEC is EFFICIENTAT_MEL


def test_load_names_missing_and_unexpected_keys(weights: Path, tmp_path: Path) -> None:
    state = torch.load(weights, map_location="cpu", weights_only=True)
    del state["features.1.block.0.0.weight"]
    state["features.1.block.2.0.weight"] = torch.zeros(8, 8, 1, 1)
    state["classifier.5.weight"] = torch.zeros(10, 512)
    bad = tmp_path / "bad.pt"
    torch.save(state, bad)
    with pytest.raises(ValueError, match="not an EfficientAT mn04 state dict") as err:
        load_efficientat(bad)
    message = str(err.value)
    assert "1 missing [features.1.block.0.0.weight]" in message
    assert "1 unexpected [features.1.block.2.0.weight]" in message
    assert "classifier.5.weight (10, 512) != (527, 512)" in message

    not_a_dict = tmp_path / "tensor.pt"
    torch.save(torch.zeros(3), not_a_dict)
    with pytest.raises(ValueError, match="expected a state dict, found Tensor"):
        load_efficientat(not_a_dict)


def test_mel_bank_and_frame_counts() -> None:
    bank = efficientat_mel_bank()
    assert int((bank != 0).sum()) == 948
    assert float(bank[0].sum()) == pytest.approx(0.18860, abs=1e-5)
    assert float(bank[127].sum()) == pytest.approx(11.8328, abs=1e-4)
    assert not bank[:, 512].any()
    for n, frames in ((32_000, 100), (320_000, 1000), (31_200, 98), (514, 2)):
        assert efficientat_logmel(torch.zeros(1, n)).shape == (1, 128, frames)
    with pytest.raises(ValueError, match="at least 514 samples"):
        efficientat_logmel(torch.zeros(1, 513))


# (signal, expected top-3 as (index, probability), embedding L2 norm or None)
REFERENCE = {
    "silence": (_silence, [(500, 0.5411)], None),
    "tone": (_tone, [(481, 0.5291), (501, 0.2293), (393, 0.0957)], 5.3780),
    "noise": (_noise, [(515, 0.6500), (520, 0.2184), (453, 0.1117)], 5.3510),
    "speech": (_speech, [(0, 0.6801), (15, 0.1440), (137, 0.1125)], None),
}


@pytest.mark.parametrize("name", REFERENCE)
def test_reference_top_labels(model: EfficientAT, name: str) -> None:
    make, top, norm = REFERENCE[name]
    logits, embedding = _run(model, make())
    probs = torch.sigmoid(logits)[0]
    values, indices = probs.topk(len(top))
    assert indices.tolist() == [i for i, _ in top]
    assert values.tolist() == pytest.approx([p for _, p in top], abs=TOL)
    if norm is not None:
        assert float(embedding.norm()) == pytest.approx(norm, abs=TOL)


def test_reference_logits_and_mel(model: EfficientAT) -> None:
    silence, tone = _silence(), _tone()
    assert torch.allclose(efficientat_logmel(silence), torch.tensor(-1.4025851), atol=1e-6)
    assert float(efficientat_logmel(tone).mean()) == pytest.approx(-1.16651, abs=1e-5)
    assert float(_run(model, silence)[0][0, 500]) == pytest.approx(0.1649, abs=TOL)
    assert float(_run(model, _speech())[0][0, 0]) == pytest.approx(0.7540, abs=TOL)


def test_batch_independence_shapes_and_input_untouched(model: EfficientAT) -> None:
    tone, noise = _tone(), _noise()
    batch = torch.cat([tone, noise])
    before = batch.clone()
    logits, embedding = _run(model, batch)
    assert torch.equal(batch, before)
    for row, single in enumerate((tone, noise)):
        one_logits, one_embedding = _run(model, single)
        assert one_logits.shape == (1, 527) and one_embedding.shape == (1, 384)
        assert torch.allclose(logits[row], one_logits[0], atol=TOL)
        assert torch.allclose(embedding[row], one_embedding[0], atol=TOL)


def test_forward_features_takes_time_major_windows(model: EfficientAT) -> None:
    waveform = torch.cat([_tone(), _noise()]).repeat(1, 2)  # 2 s: one gateway window
    windows = efficientat_logmel(waveform).transpose(1, 2).contiguous()
    assert windows.shape == (2, FEATURE_SPEC.window_frames, FEATURE_SPEC.n_mels)
    before = windows.clone()
    with torch.inference_mode():
        from_features = model.forward_features(windows)
        from_waveform = model(waveform)
        one = model.forward_features(windows[:1])
    assert torch.equal(windows, before)
    for got, want in zip(from_features, from_waveform):
        assert torch.allclose(got, want, atol=1e-6)
    assert one[0].shape == (1, 527) and one[1].shape == (1, 384)


@pytest.mark.parametrize(
    ("call", "shape"),
    [("forward", (32_000,)), ("forward_features", (1, 128, 200)), ("forward_mel", (1, 200, 128))],
)
def test_wrong_layout_is_refused(model: EfficientAT, call: str, shape: tuple[int, ...]) -> None:
    with pytest.raises(ValueError, match="expected"):
        getattr(model, call)(torch.zeros(shape))
