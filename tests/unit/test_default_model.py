"""The embedded default model: size budget, training on tiny generated data, the shipped file."""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import torch
import torch.nn.functional as F

from services.inference.models.default import (
    DefaultClassifier,
    DefaultNet,
    count_flops,
    count_parameters,
    load_default_model,
)
from services.inference.registry import default_registry
from services.inference.settings import DEFAULT_WEIGHTS, InferenceSettings
from services.inference.training.default_model import DefaultTrainingConfig, train_default_model
from services.inference.training.thresholds import choose_thresholds
from shared.features.spec import BEATS_FBANK
from shared.taxonomy import CLASSES, NUM_CLASSES


def test_budget_two_million_parameters_and_100_mflop_per_window() -> None:
    model = DefaultNet()
    assert count_parameters(model) <= 2_000_000
    assert count_flops(model) <= 100_000_000


def test_a_few_training_steps_reduce_the_loss() -> None:
    torch.manual_seed(0)
    model = DefaultNet()
    windows = torch.randn(16, BEATS_FBANK.window_frames, BEATS_FBANK.n_mels)
    labels = torch.arange(16) % NUM_CLASSES
    windows[:, :, :] += labels.view(-1, 1, 1).float() * 0.3  # separable by level
    optimizer = torch.optim.AdamW(model.parameters(), lr=3e-3)
    losses = []
    for _ in range(8):
        loss = F.cross_entropy(model(windows)[0], labels)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        losses.append(loss.item())
    assert losses[-1] < losses[0] * 0.8


def _tiny_dataset(root: Path) -> None:
    rng = np.random.default_rng(0)
    rows = []
    for split, count in (("train", 6), ("val", 2)):
        for class_id, freq in ((0, None), (5, 3000.0), (8, 500.0)):
            for i in range(count):
                t = np.arange(48_000) / 16_000
                audio = 0.05 * rng.standard_normal(t.size)
                if freq is not None:
                    audio += 0.5 * np.sin(2 * np.pi * freq * t) * (np.sin(2 * np.pi * t) > 0)
                name = f"audio/{split}/{class_id}_{i}.wav"
                (root / name).parent.mkdir(parents=True, exist_ok=True)
                sf.write(str(root / name), audio.astype(np.float32), 16_000)
                rows.append({"file": name, "class_id": class_id, "split": split, "source_path": name})
    with open(root / "manifest.csv", "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=["file", "class_id", "split", "source_path"])
        writer.writeheader()
        writer.writerows(rows)


@pytest.mark.slow
def test_a_tiny_run_writes_a_loadable_model_with_thresholds(tmp_path: Path) -> None:
    _tiny_dataset(tmp_path / "data")
    out = tmp_path / "model.pt"
    config = DefaultTrainingConfig(data=tmp_path / "data", out=out, epochs=2, batch_size=6, distill_weight=0.0, threads=1)
    result = train_default_model(config)
    assert set(result["thresholds"]) == {c.key for c in CLASSES if c.is_emergency}
    model, info = load_default_model(out)
    assert info["recipe"]["epochs_run"] == 2 and "macro_f1" in info["metrics"]
    assert (tmp_path / "data" / ".train" / "checkpoint.pt").is_file()
    # Resuming a finished run trains nothing more and writes the same kind of file.
    assert train_default_model(config)["thresholds"].keys() == result["thresholds"].keys()


def test_thresholds_separate_a_class_on_its_smoothed_peak() -> None:
    quiet = np.full((5, NUM_CLASSES), 0.05)
    fire = quiet.copy()
    fire[1:4, 5] = 0.8
    thresholds = choose_thresholds([quiet, fire], np.array([0, 5]), smoothing_windows=3)
    assert 0.05 < thresholds["fire"] <= 0.8


@pytest.mark.skipif(not DEFAULT_WEIGHTS.is_file(), reason="no shipped default model yet")
def test_the_shipped_model_loads_through_the_registry_and_runs() -> None:
    assert DEFAULT_WEIGHTS.stat().st_size <= 10 * 1024 * 1024
    entry = default_registry().get("default")
    assert entry.spec == BEATS_FBANK
    classifier = entry.load(InferenceSettings(), torch.device("cpu"))
    assert isinstance(classifier, DefaultClassifier) and classifier.tag_labels is None
    prediction = classifier.predict(torch.randn(3, BEATS_FBANK.window_frames, BEATS_FBANK.n_mels))
    assert prediction.scores.shape == (3, NUM_CLASSES)
    assert torch.allclose(prediction.scores.sum(dim=1), torch.ones(3), atol=1e-4)
    assert set(classifier.thresholds) == {c.key for c in CLASSES if c.is_emergency}
