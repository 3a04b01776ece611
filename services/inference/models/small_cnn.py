"""Hear-o's previous embedded default (served as ``small_cnn``, kept for comparison): a small
CNN trained from scratch on the BEATs filterbank windows. The current default is
``services.inference.models.default`` (mn04 fine-tuned).

``SmallCNN`` takes the wire's time-major windows ``[B, 198, 128]`` (``BEATS_FBANK``) and
returns nine class logits plus 527 AudioSet logits, the second head only used to distil the
EfficientAT mn04 teacher during training. It is a stem convolution and six depthwise-separable
blocks (MobileNet-style), about 0.3 M parameters and 70 MFLOP per 2 s window
(``count_flops``), so a 2-core CPU scores hundreds of windows a second.

A model file is a plain dict of tensors and numbers, loaded with
``torch.load(weights_only=True)``: the state dict, the per-class detector thresholds chosen on
the validation split, the validation metrics and the recipe. ``SmallCNNClassifier`` serves it
through the inference registry: softmax class scores, no tags.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn

from services.inference.models.base import Prediction
from shared.features.spec import BEATS_FBANK
from shared.taxonomy import CLASS_KEYS, NUM_CLASSES

__all__ = [
    "FORMAT",
    "SmallCNNClassifier",
    "SmallCNN",
    "load_small_cnn",
]

FORMAT = "hearo-default-v1"
NUM_TEACHER_LABELS = 527
_WIDTHS = ((32, 64, 2), (64, 64, 1), (64, 128, 2), (128, 128, 1), (128, 256, 2), (256, 256, 1))


def _separable(c_in: int, c_out: int, stride: int) -> nn.Sequential:
    return nn.Sequential(
        nn.Conv2d(c_in, c_in, 3, stride, 1, groups=c_in, bias=False),
        nn.BatchNorm2d(c_in),
        nn.ReLU(inplace=True),
        nn.Conv2d(c_in, c_out, 1, bias=False),
        nn.BatchNorm2d(c_out),
        nn.ReLU(inplace=True),
    )


class SmallCNN(nn.Module):
    """Windows [B, T, 128] -> (class logits [B, 9], teacher logits [B, 527])."""

    def __init__(self, dropout: float = 0.2) -> None:
        super().__init__()
        self.input_norm = nn.BatchNorm2d(1)
        self.stem = nn.Sequential(nn.Conv2d(1, 32, 3, 2, 1, bias=False), nn.BatchNorm2d(32), nn.ReLU(inplace=True))
        self.blocks = nn.Sequential(*[_separable(i, o, s) for i, o, s in _WIDTHS])
        width = _WIDTHS[-1][1]
        self.dropout = nn.Dropout(dropout)
        self.classes = nn.Linear(2 * width, NUM_CLASSES)
        self.teacher = nn.Linear(2 * width, NUM_TEACHER_LABELS)

    def forward(self, windows: Tensor) -> tuple[Tensor, Tensor]:
        if windows.dim() != 3 or windows.shape[2] != BEATS_FBANK.n_mels:
            raise ValueError(f"expected windows [B, T, {BEATS_FBANK.n_mels}], got {tuple(windows.shape)}")
        x = self.input_norm(windows.transpose(1, 2).unsqueeze(1))  # [B, 1, mel, time]
        x = self.blocks(self.stem(x)).mean(dim=2)  # frequency pooled: [B, C, time]
        # Mean and max over time: a short bang in a long window still counts.
        pooled = self.dropout(torch.cat([x.mean(dim=2), x.amax(dim=2)], dim=1))
        return self.classes(pooled), self.teacher(pooled)


def load_small_cnn(path: Path) -> tuple[SmallCNN, dict[str, Any]]:
    """(the network in eval mode, the file's other fields). ValueError if ``path`` is not a model file."""
    data = torch.load(path, map_location="cpu", weights_only=True)
    if not isinstance(data, dict) or data.get("format") != FORMAT:
        raise ValueError(f"{path} is not a Hear-o default model file ({FORMAT})")
    if tuple(data["classes"]) != CLASS_KEYS or data["spec"]["name"] != BEATS_FBANK.name:
        raise ValueError(f"{path}: classes or feature spec differ from this build's")
    model = SmallCNN()
    state = {k: v.float() if v.is_floating_point() else v for k, v in data["state_dict"].items()}
    missing, unexpected = model.load_state_dict(state, strict=False)
    if unexpected or any(not k.startswith("teacher.") for k in missing):
        raise ValueError(f"{path}: weights do not fit SmallCNN (missing {missing}, unexpected {unexpected})")
    return model.eval(), {k: v for k, v in data.items() if k != "state_dict"}


class SmallCNNClassifier:
    """The small CNN as the registry's ``Classifier``: softmax scores over the nine classes."""

    def __init__(self, path: Path, device: torch.device) -> None:
        model, info = load_small_cnn(path)
        self._model = model.to(device)
        self._device = device
        self.thresholds: dict[str, float] = dict(info["thresholds"])

    @property
    def tag_labels(self) -> None:
        return None

    @torch.inference_mode()
    def predict(self, windows: Tensor) -> Prediction:
        logits, _ = self._model(windows.to(self._device))
        return Prediction(torch.softmax(logits.float(), dim=1).cpu())
