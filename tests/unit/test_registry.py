from __future__ import annotations

from pathlib import Path

import pytest
import torch

from services.gateway.settings import GatewaySettings
from services.inference.models.base import Classifier, ModelLoadError, Prediction
from services.inference.registry import ModelEntry, ModelRegistry, UnknownModelError, default_registry
from services.inference.settings import InferenceSettings
from shared.features.spec import BEATS_FBANK, EFFICIENTAT_MEL
from shared.taxonomy import CLASS_KEYS, NUM_CLASSES


class MeanClassifier:
    """Every class scores the sigmoid of the window mean; no tags."""

    tag_labels = None
    thresholds = None

    def predict(self, windows: torch.Tensor) -> Prediction:
        return Prediction(torch.sigmoid(windows.mean(dim=(1, 2)))[:, None].expand(-1, NUM_CLASSES).contiguous())


def load_mean(settings: InferenceSettings, device: torch.device) -> Classifier:
    return MeanClassifier()


def test_unknown_model_names_the_registered_ones() -> None:
    registry = ModelRegistry([ModelEntry("tiny", BEATS_FBANK, load_mean)])
    with pytest.raises(UnknownModelError, match="unknown model 'nope'; registered: tiny"):
        registry.get("nope")


def test_registered_model_loads_and_predicts() -> None:
    registry = ModelRegistry()
    registry.register(ModelEntry("tiny", BEATS_FBANK, load_mean))
    entry = registry.get("tiny")
    assert entry.spec == BEATS_FBANK and entry.classes == CLASS_KEYS
    classifier = entry.load(InferenceSettings(), torch.device("cpu"))
    prediction = classifier.predict(torch.zeros(3, BEATS_FBANK.window_frames, BEATS_FBANK.n_mels))
    assert prediction.scores.shape == (3, NUM_CLASSES)
    assert torch.allclose(prediction.scores, torch.full((3, NUM_CLASSES), 0.5))
    assert prediction.rows(1, 3).scores.shape == (2, NUM_CLASSES)


def test_duplicate_names_and_foreign_class_order_are_refused() -> None:
    registry = ModelRegistry([ModelEntry("tiny", BEATS_FBANK, load_mean)])
    with pytest.raises(ValueError, match="already registered"):
        registry.register(ModelEntry("tiny", EFFICIENTAT_MEL, load_mean))
    with pytest.raises(ValueError, match="classes must be the taxonomy's"):
        registry.register(ModelEntry("shuffled", BEATS_FBANK, load_mean, tuple(reversed(CLASS_KEYS))))


def test_default_model_is_served_and_the_gateway_takes_its_spec_from_the_handshake() -> None:
    """No user sets HEARO_GATEWAY_FEATURE_SPEC: the gateway asks for none and takes the served one."""
    assert InferenceSettings().model == "default"
    assert default_registry().get("default").spec == EFFICIENTAT_MEL
    assert GatewaySettings().feature_spec is None


def test_previous_default_is_served_as_small_cnn_on_the_beats_fbank() -> None:
    entry = default_registry().get("small_cnn")
    classifier = entry.load(InferenceSettings(), torch.device("cpu"))
    assert entry.spec == BEATS_FBANK
    assert classifier.predict(torch.zeros(2, BEATS_FBANK.window_frames, BEATS_FBANK.n_mels)).scores.shape == (2, NUM_CLASSES)


def test_default_registry_serves_efficientat_on_its_spec() -> None:
    entry = default_registry().get("efficientat")
    assert entry.spec == EFFICIENTAT_MEL


def test_missing_efficientat_weights_name_the_setting(tmp_path: Path) -> None:
    settings = InferenceSettings(efficientat_weights=tmp_path / "absent.pt")
    with pytest.raises(ModelLoadError, match="HEARO_INFERENCE_EFFICIENTAT_WEIGHTS") as info:
        default_registry().get("efficientat").load(settings, torch.device("cpu"))
    assert str(tmp_path / "absent.pt") in str(info.value)


def test_device_auto_follows_cuda_availability() -> None:
    expected = "cuda" if torch.cuda.is_available() else "cpu"
    assert InferenceSettings(device="auto").torch_device().type == expected
    assert InferenceSettings(device="cpu").torch_device().type == "cpu"


def test_efficientat_from_shared_weights_scores_windows_in_unit_range() -> None:
    settings = InferenceSettings()
    if not settings.efficientat_weights.is_file():
        pytest.skip(f"EfficientAT weights not at {settings.efficientat_weights}")
    classifier = default_registry().get("efficientat").load(settings, torch.device("cpu"))
    assert classifier.tag_labels is not None and len(classifier.tag_labels) == 527
    assert classifier.tag_labels[0] == "Speech"
    # Digital silence in EfficientAT's log-mel; its top tag is "Silence" (spec check 4).
    silence = torch.full((2, EFFICIENTAT_MEL.window_frames, EFFICIENTAT_MEL.n_mels), -1.4025851)
    prediction = classifier.predict(silence)
    assert prediction.scores.shape == (2, NUM_CLASSES) and prediction.scores.dtype == torch.float32
    assert prediction.tags is not None and prediction.tags.shape == (2, 527)
    assert bool(((prediction.scores >= 0) & (prediction.scores <= 1)).all())
    assert classifier.tag_labels[int(prediction.tags[0].argmax())] == "Silence"
