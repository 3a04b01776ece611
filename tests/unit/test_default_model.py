"""The embedded default model (mn04 fine-tuned): budget, band mask, training on tiny data, the shipped file."""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import torch

from services.inference.models.default import (
    SILENCE,
    DefaultClassifier,
    DefaultNet,
    band_mask,
    count_flops,
    count_parameters,
    for_serving,
    load_default_model,
)
from services.inference.models.efficientat import load_efficientat
from services.inference.registry import default_registry
from services.inference.settings import DEFAULT_WEIGHTS, InferenceSettings
from services.inference.training.default_model import DefaultTrainingConfig, train_default_model
from shared.features.spec import EFFICIENTAT_MEL
from shared.taxonomy import CLASSES, NUM_CLASSES

EMERGENCY_KEYS = {c.key for c in CLASSES if c.is_emergency}
MN04 = InferenceSettings().efficientat_weights


def _window(batch: int = 1) -> torch.Tensor:
    return torch.randn(batch, EFFICIENTAT_MEL.window_frames, EFFICIENTAT_MEL.n_mels)


def test_budget_two_million_parameters_and_100_mflop_per_window() -> None:
    model = DefaultNet()
    assert count_parameters(model) <= 2_000_000
    assert count_flops(model, _window()) <= 100_000_000


def test_band_mask_hides_what_16_khz_training_audio_never_held() -> None:
    mask = band_mask()
    assert not mask[:100].any() and mask[-20:].all()  # low bins kept, the top (above 7.6 kHz) masked
    model = DefaultNet().eval()
    x = _window(2)
    changed_top = x.clone()
    changed_top[:, :, mask] = torch.randn_like(changed_top[:, :, mask]) * 5
    with torch.no_grad():
        assert torch.allclose(model(x)[0], model(changed_top)[0])
        silent_top = x.clone()
        silent_top[:, :, mask] = SILENCE
        assert torch.allclose(model(x)[1], model(silent_top)[1])


@pytest.mark.skipif(not MN04.is_file(), reason="needs ../shared/models/efficientat_mn04_as")
def test_the_audioset_head_starts_as_the_published_mn04() -> None:
    model = DefaultNet().eval()
    model.backbone.load_state_dict(load_efficientat(MN04).state_dict())
    reference = load_efficientat(MN04)
    x = _window(2)
    x[:, :, band_mask()] = SILENCE  # the band the default model hides
    with torch.no_grad():
        assert torch.allclose(model(x)[1], reference.forward_features(x)[0], atol=1e-5)


def _tiny_dataset(root: Path) -> None:
    """Clips of a beeping 3 kHz tone (fire), a 500 Hz hum burst (help) and noise (normal), on
    both sides of the split, with source paths the manifest reader splits on."""
    rng = np.random.default_rng(0)
    rows = []
    for split, count in (("train", 8), ("val", 8)):
        for class_id, freq in ((0, None), (5, 3000.0), (8, 500.0)):
            for i in range(count):
                t = np.arange(48_000) / 16_000
                audio = 0.05 * rng.standard_normal(t.size)
                if freq is not None:
                    audio += 0.5 * np.sin(2 * np.pi * freq * t) * (np.sin(2 * np.pi * 2 * t) > 0)
                name = f"audio/{split}/{class_id}_{i}.wav"
                (root / name).parent.mkdir(parents=True, exist_ok=True)
                sf.write(str(root / name), audio.astype(np.float32), 16_000)
                rows.append({"file": name, "class_id": class_id, "split": split, "source_package": "test",
                             "source_path": name})
    with open(root / "manifest.csv", "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=["file", "class_id", "split", "source_package", "source_path"])
        writer.writeheader()
        writer.writerows(rows)


@pytest.mark.slow
@pytest.mark.skipif(not MN04.is_file(), reason="needs ../shared/models/efficientat_mn04_as")
def test_a_tiny_run_writes_a_strictly_loadable_model_with_its_operating_point(tmp_path: Path) -> None:
    _tiny_dataset(tmp_path / "data")
    household = tmp_path / "household"
    household.mkdir()
    sf.write(str(household / "room.wav"), (0.01 * np.random.default_rng(1).standard_normal(16_000 * 8)).astype(np.float32), 16_000)
    out = tmp_path / "model.pt"
    config = DefaultTrainingConfig(data=tmp_path / "data", out=out, household=household, epochs=1, batch_size=8, threads=1)
    result = train_default_model(config)
    assert set(result["operating_point"]["thresholds"]) == EMERGENCY_KEYS
    model, info = load_default_model(out)
    assert info["recipe"]["epochs_run"] == 1 and "macro_f1" in info["metrics"]
    assert info["operating_point"]["smoothing_windows"] == 3
    assert set(info["operating_point"]["notes"]["household_peak"]) == EMERGENCY_KEYS
    assert len(info["tag_labels"]) == 527
    assert (tmp_path / "data" / ".train" / "checkpoint-mn04.pt").is_file()
    # Resuming a finished run trains nothing more and writes the same kind of file.
    assert train_default_model(config)["operating_point"]["thresholds"].keys() == EMERGENCY_KEYS


def test_a_file_of_another_model_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "other.pt"
    torch.save({"format": "something-else"}, path)
    with pytest.raises(ValueError, match="not a Hear-o default model file"):
        load_default_model(path)


@pytest.mark.skipif(not DEFAULT_WEIGHTS.is_file(), reason="no shipped default model yet")
def test_the_shipped_model_loads_strictly_through_the_registry_and_tags() -> None:
    assert DEFAULT_WEIGHTS.stat().st_size <= 10 * 1024 * 1024
    load_default_model(DEFAULT_WEIGHTS)  # strict: every key present and shaped
    entry = default_registry().get("default")
    assert entry.spec == EFFICIENTAT_MEL
    classifier = entry.load(InferenceSettings(), torch.device("cpu"))
    assert isinstance(classifier, DefaultClassifier) and len(classifier.tag_labels) == 527
    prediction = classifier.predict(_window(3))
    assert prediction.scores.shape == (3, NUM_CLASSES) and prediction.tags is not None
    assert ((prediction.scores >= 0) & (prediction.scores <= 1)).all()
    assert set(classifier.thresholds) == EMERGENCY_KEYS
    assert all(0 < t <= 1 for t in classifier.thresholds.values())


def test_the_served_network_scores_as_the_eager_one_at_any_batch_and_refuses_other_shapes() -> None:
    model, _ = load_default_model(DEFAULT_WEIGHTS)
    served = for_serving(model, torch.device("cpu"))
    assert served is not model  # traced and frozen on the CPU
    with torch.inference_mode():
        for batch in (1, 3, 8, 17):
            windows = _window(batch)
            (eager_classes, eager_tags), (classes, tags) = model(windows), served(windows)
            torch.testing.assert_close(classes, eager_classes, rtol=0, atol=1e-4)
            torch.testing.assert_close(tags, eager_tags, rtol=0, atol=1e-4)
    classifier = DefaultClassifier(DEFAULT_WEIGHTS, torch.device("cpu"))
    for shape in ((2, 199, 128), (2, 200, 64), (200, 128)):
        with pytest.raises(ValueError, match="expected windows"):
            classifier.predict(torch.zeros(shape))
