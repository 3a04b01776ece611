"""``AudioSetTagger``: an AudioSet tagger (mn04, fine-tuned BEATs) served as a nine-class
``Classifier`` through ``AudioSetClassMap``."""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import Tensor

from services.inference.audioset_map import AudioSetClassMap
from services.inference.models.base import Prediction

__all__ = ["AudioSetScorer", "AudioSetTagger"]

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
