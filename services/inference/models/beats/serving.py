"""BEATs as a served ``Classifier``: an AudioSet fine-tuned checkpoint or a Hear-o 9-class head.

``load_beats_classifier(path, device)`` reads either kind of file:

- an official fine-tuned AudioSet checkpoint (``cfg``, ``model``, ``label_dict`` of 527
  AudioSet ids): an ``AudioSetTagger`` (``beats_audioset_tagger``), whose nine scores are the AudioSet map
  (``services.inference.audioset_map``) applied to BEATs' sigmoid probabilities, and whose
  tags are those probabilities;
- a head file written by ``hearo train --backbone beats`` (``head.HEAD_FILE_FORMAT``):
  ``BEATsHeadClassifier``, whose nine scores are the head's softmax; no tags.

Both take the gateway's normalised filterbank windows ``[B, 198, 128]`` (``BEATS_FBANK``),
so features are never recomputed. Gateway windows are always complete, so no padding mask
is passed. On the CPU everything is float32; on CUDA the encoder runs under bf16 autocast
with fused attention (``BEATs.autocast_dtype``; tolerances in ``docs/beats.md``).
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch
from torch import Tensor

from services.inference.audioset_map import AudioSetClassMap, read_labels_csv
from services.inference.models.beats.checkpoint import beats_from_official
from services.inference.models.beats.head import BEATsHeadModel, head_model_from_dict, is_head_file
from services.inference.models.beats.model import BEATs
from services.inference.models.audioset_tagger import AudioSetTagger
from services.inference.models.base import ModelLoadError, Prediction

# Tag display names are read from an AudioSet label list beside the checkpoint, if there is one.
LABELS_CSV_NAME = "class_labels_indices.csv"


def beats_audioset_tagger(
    model: BEATs, class_map: AudioSetClassMap, tag_labels: tuple[str, ...], device: torch.device
) -> AudioSetTagger:
    """A fine-tuned AudioSet BEATs made a 9-class ``Classifier`` by ``AudioSetClassMap``.

    BEATs already returns sigmoid probabilities (mean of the token logits, then sigmoid), so
    they go to the map as they are. ``tag_labels`` name the model's outputs in index order.
    """
    if model.predictor is None:
        raise ValueError("a pre-trained BEATs has no AudioSet outputs")
    if not model.cfg.predictor_class == class_map.num_labels == len(tag_labels):
        raise ValueError(
            f"{model.cfg.predictor_class} outputs, a {class_map.num_labels}-label map "
            f"and {len(tag_labels)} tag labels do not match"
        )
    network = model.to(device).eval()
    return AudioSetTagger(
        lambda windows: network.extract_features_from_fbank(windows)[0], class_map, tag_labels, device
    )


class BEATsHeadClassifier:
    """A ``BEATsHeadModel`` (trained by ``hearo train``) as a ``Classifier``: softmax scores, no tags."""

    tag_labels = None
    thresholds = None

    def __init__(self, model: BEATsHeadModel, device: torch.device) -> None:
        self._model = model.to(device).eval()
        self._device = device

    @torch.inference_mode()
    def predict(self, windows: Tensor) -> Prediction:
        logits = self._model(windows.to(self._device))
        return Prediction(torch.softmax(logits.float(), dim=-1).cpu())


def load_beats_classifier(
    path: str | os.PathLike[str], device: torch.device
) -> AudioSetTagger | BEATsHeadClassifier:
    """The classifier of a BEATs file (see the module docstring), on ``device``, in eval mode.

    Raises ModelLoadError naming the file when it is unreadable, is neither kind (a
    pre-trained checkpoint has no classifier), or does not load strictly.
    """
    try:
        checkpoint = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # torch raises several unrelated types for a bad file
        raise ModelLoadError(f"{path}: cannot read a BEATs checkpoint: {exc}") from exc
    try:
        if is_head_file(checkpoint):
            return BEATsHeadClassifier(head_model_from_dict(checkpoint, source=str(path))[0], device)
        model = beats_from_official(checkpoint, source=str(path))
        if model.predictor is None:
            raise ValueError(
                "a pre-trained BEATs checkpoint has no classifier; serve an AudioSet fine-tuned one "
                "or a 9-class head trained with `hearo train --backbone beats`"
            )
        if model.label_dict is None:
            raise ValueError("a fine-tuned checkpoint without 'label_dict' cannot be mapped to our classes")
        labels = _index_to_mid(model.label_dict)
        return beats_audioset_tagger(
            model,
            AudioSetClassMap.from_label_dict(labels),
            _tag_labels(labels, Path(path).with_name(LABELS_CSV_NAME)),
            device,
        )
    except ValueError as exc:
        raise ModelLoadError(str(exc) if str(path) in str(exc) else f"{path}: {exc}") from exc


def _index_to_mid(label_dict: Mapping[Any, Any]) -> dict[int, str]:
    return {int(index): str(mid) for index, mid in label_dict.items()}


def _tag_labels(labels: Mapping[int, str], labels_csv: Path) -> tuple[str, ...]:
    """Display names by index where ``labels_csv`` (index, mid, display_name) knows the mid, else mids."""
    names: dict[str, str] = {}
    if labels_csv.is_file():
        names = {label.mid: label.display_name for label in read_labels_csv(labels_csv) if label.display_name}
    return tuple(names.get(labels[i], labels[i]) for i in sorted(labels))
