"""Model registry: the models this service can serve, each with its feature spec and loader.

A served model is a ``Classifier``: feature windows [B, window_frames, n_mels] in, nine class
scores per window out (taxonomy id order), plus tag probabilities when the model has a tag
vocabulary. Adding a model is one loader function and one line in ``default_registry``::

    def _load_mine(settings: InferenceSettings, device: torch.device) -> Classifier:
        return MyClassifier(settings.mine_weights, device)

    ModelEntry("mine", MY_SPEC, _load_mine),
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path

import torch

from services.inference.audioset_map import AudioSetClassMap, read_labels_csv
from services.inference.models.audioset_tagger import AudioSetTagger
from services.inference.models.base import Classifier, ModelLoadError
from services.inference.models.beats.serving import load_beats_classifier
from services.inference.models.default import BAND_LIMIT_HZ, DefaultClassifier
from services.inference.models.efficientat import load_efficientat
from services.inference.models.small_cnn import SmallCNNClassifier
from services.inference.settings import InferenceSettings
from shared.features.spec import BEATS_FBANK, EFFICIENTAT_MEL, FeatureSpec
from shared.taxonomy import CLASS_KEYS


Loader = Callable[[InferenceSettings, torch.device], Classifier]


class UnknownModelError(LookupError):
    """No model of that name is registered."""


@dataclass(frozen=True)
class ModelEntry:
    """A servable model. ``band_limit_hz``: the highest frequency the model uses, when it
    discards part of its spec's band (None: all of it); clients may capture at the lowest rate
    that keeps it (``shared.features.spec.capture_sample_rate``)."""

    name: str
    spec: FeatureSpec
    load: Loader
    classes: tuple[str, ...] = CLASS_KEYS
    band_limit_hz: float | None = None


class ModelRegistry:
    """Model entries by name."""

    def __init__(self, entries: Iterable[ModelEntry] = ()) -> None:
        self._entries: dict[str, ModelEntry] = {}
        for entry in entries:
            self.register(entry)

    def register(self, entry: ModelEntry) -> None:
        if entry.name in self._entries:
            raise ValueError(f"model {entry.name!r} is already registered")
        if entry.classes != CLASS_KEYS:
            raise ValueError(f"model {entry.name!r}: classes must be the taxonomy's {CLASS_KEYS}")
        self._entries[entry.name] = entry

    def get(self, name: str) -> ModelEntry:
        try:
            return self._entries[name]
        except KeyError:
            raise UnknownModelError(
                f"unknown model {name!r}; registered: {', '.join(self._entries) or 'none'}"
            ) from None

    def names(self) -> tuple[str, ...]:
        return tuple(self._entries)


def _required_file(path: Path, what: str, setting: str) -> Path:
    if not path.is_file():
        raise ModelLoadError(f"{what} not found at {path}; set {setting} to its location")
    return path


def _load_efficientat(settings: InferenceSettings, device: torch.device) -> Classifier:
    setting = "HEARO_INFERENCE_EFFICIENTAT_WEIGHTS"
    weights = _required_file(settings.efficientat_weights, "EfficientAT mn04 weights", setting)
    labels_csv = _required_file(
        weights.with_name("class_labels_indices.csv"), "AudioSet label list (beside the weights)", setting
    )
    labels = read_labels_csv(labels_csv)
    network = load_efficientat(weights).to(device)
    return AudioSetTagger(
        lambda windows: torch.sigmoid(network.forward_features(windows)[0]),
        AudioSetClassMap(labels),
        tuple(label.display_name or label.mid for label in labels),
        device,
    )


def _load_beats(settings: InferenceSettings, device: torch.device) -> Classifier:
    setting = "HEARO_INFERENCE_BEATS_CHECKPOINT"
    if settings.beats_checkpoint is None:
        raise ModelLoadError(
            f"no BEATs checkpoint configured; set {setting} to an AudioSet fine-tuned BEATs checkpoint "
            "or a head file from `hearo train --backbone beats`"
        )
    return load_beats_classifier(_required_file(settings.beats_checkpoint, "BEATs checkpoint", setting), device)


def _model_file(load: Callable[[Path, torch.device], Classifier], path: Path, what: str, setting: str,
                device: torch.device) -> Classifier:
    """A classifier from one of our model files; a file of another kind is a ModelLoadError."""
    try:
        return load(_required_file(path, what, setting), device)
    except ValueError as exc:
        raise ModelLoadError(str(exc)) from exc


def _load_default(settings: InferenceSettings, device: torch.device) -> Classifier:
    return _model_file(DefaultClassifier, settings.default_weights, "default model weights",
                       "HEARO_INFERENCE_DEFAULT_WEIGHTS", device)


def _load_small_cnn(settings: InferenceSettings, device: torch.device) -> Classifier:
    return _model_file(SmallCNNClassifier, settings.small_cnn_weights, "small CNN weights",
                       "HEARO_INFERENCE_SMALL_CNN_WEIGHTS", device)


def default_registry() -> ModelRegistry:
    """Every model this service knows how to load."""
    return ModelRegistry(
        [
            ModelEntry("efficientat", EFFICIENTAT_MEL, _load_efficientat),
            ModelEntry("beats", BEATS_FBANK, _load_beats),
            ModelEntry("default", EFFICIENTAT_MEL, _load_default, band_limit_hz=BAND_LIMIT_HZ),
            ModelEntry("small_cnn", BEATS_FBANK, _load_small_cnn),
        ]
    )
