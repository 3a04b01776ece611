"""Model registry: the models this service can serve, each with its feature spec and loader.

A served model is a ``Classifier``: feature windows [B, window_frames, n_mels] in, nine class
scores per window out (taxonomy id order), plus tag probabilities when the model has a tag
vocabulary. Adding a model is one loader function and one line in ``default_registry``::

    def _load_mine(settings: InferenceSettings, device: torch.device) -> Classifier:
        return MyClassifier(settings.mine_weights, device)

    ModelEntry("mine", MY_SPEC, _load_mine),
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

import torch
from torch import Tensor

from services.inference.audioset_map import AudioSetClassMap, read_labels_csv
from services.inference.models.efficientat import load_efficientat
from services.inference.settings import InferenceSettings
from shared.features.spec import BEATS_FBANK, EFFICIENTAT_MEL, FeatureSpec
from shared.taxonomy import CLASS_KEYS


@dataclass(frozen=True)
class Prediction:
    """``scores`` float32 [B, 9] in [0, 1]; ``tags`` float32 [B, len(tag_labels)] or None."""

    scores: Tensor
    tags: Tensor | None = None

    def rows(self, start: int, stop: int) -> Prediction:
        return Prediction(self.scores[start:stop], None if self.tags is None else self.tags[start:stop])


class Classifier(Protocol):
    """A loaded model. ``predict`` takes CPU float32 windows and returns CPU tensors; it is
    only ever called from one thread at a time (the batcher's). ``thresholds`` are the
    detector thresholds stored with the model (emergency class key -> threshold), or None;
    the service advertises them to the gateways."""

    @property
    def tag_labels(self) -> tuple[str, ...] | None: ...

    @property
    def thresholds(self) -> Mapping[str, float] | None: ...

    def predict(self, windows: Tensor) -> Prediction: ...


Loader = Callable[[InferenceSettings, torch.device], Classifier]


class UnknownModelError(LookupError):
    """No model of that name is registered."""


class ModelLoadError(RuntimeError):
    """A registered model could not be loaded (missing or unreadable weights)."""


@dataclass(frozen=True)
class ModelEntry:
    name: str
    spec: FeatureSpec
    load: Loader
    classes: tuple[str, ...] = CLASS_KEYS


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


AudioSetScorer = Callable[[Tensor], Tensor]
"""AudioSet probabilities [B, L] for windows [B, T, n_mels] already on the model's device."""


class AudioSetTagger:
    """An AudioSet tagger made a 9-class Classifier by ``AudioSetClassMap``.

    ``probabilities`` runs the network (already on ``device``) and returns its L sigmoid
    probabilities, which are also the tags; ``tag_labels`` are its L display names.
    """

    def __init__(
        self, probabilities: AudioSetScorer, class_map: AudioSetClassMap, tag_labels: tuple[str, ...], device: torch.device
    ) -> None:
        if len(tag_labels) != class_map.num_labels:
            raise ValueError(f"{len(tag_labels)} tag labels for a {class_map.num_labels}-label map")
        self._probabilities = probabilities
        self._class_map = class_map.to(device)
        self._device = device
        self._tag_labels = tag_labels

    @property
    def tag_labels(self) -> tuple[str, ...]:
        return self._tag_labels

    @property
    def thresholds(self) -> None:
        return None

    @torch.inference_mode()
    def predict(self, windows: Tensor) -> Prediction:
        probs = self._probabilities(windows.to(self._device)).float()
        return Prediction(self._class_map(probs).cpu(), probs.cpu())


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
    # Imported here: the BEATs classifiers build on this module's Prediction.
    from services.inference.models.beats.serving import load_beats_classifier

    setting = "HEARO_INFERENCE_BEATS_CHECKPOINT"
    if settings.beats_checkpoint is None:
        raise ModelLoadError(
            f"no BEATs checkpoint configured; set {setting} to an AudioSet fine-tuned BEATs checkpoint "
            "or a head file from `hearo train --backbone beats`"
        )
    return load_beats_classifier(_required_file(settings.beats_checkpoint, "BEATs checkpoint", setting), device)


def _load_default(settings: InferenceSettings, device: torch.device) -> Classifier:
    # Imported here: the default classifier builds on this module's Prediction.
    from services.inference.models.default import DefaultClassifier

    path = _required_file(settings.default_weights, "default model weights", "HEARO_INFERENCE_DEFAULT_WEIGHTS")
    try:
        return DefaultClassifier(path, device)
    except ValueError as exc:
        raise ModelLoadError(str(exc)) from exc


def default_registry() -> ModelRegistry:
    """Every model this service knows how to load."""
    return ModelRegistry(
        [
            ModelEntry("efficientat", EFFICIENTAT_MEL, _load_efficientat),
            ModelEntry("beats", BEATS_FBANK, _load_beats),
            ModelEntry("default", BEATS_FBANK, _load_default),
        ]
    )
