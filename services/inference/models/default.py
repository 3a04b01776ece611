"""Hear-o's embedded default model: EfficientAT mn04 (AudioSet) fine-tuned for the nine classes.

``DefaultNet`` is the mn04 network (``efficientat.EfficientAT``, initialised from the published
AudioSet weights by ``hearo train``) with a second head: nine independent sigmoid class
scores, so that two confusable classes never split one probability. The AudioSet head is kept,
distilled from the frozen original during training, and served as the "what it hears" tags.

- Input: the wire's time-major ``efficientat_mel`` windows ``[B, 200, 128]`` (32 kHz, 2 s).
- Band: mel bins above ``BAND_LIMIT_HZ`` are set to the spec's digital-silence value before
  the network, in training and serving alike. Training material is 16 kHz, so those bins were
  always empty; a 48 kHz phone must not show the model a band it never learned.
- Class head: frequency-pooled feature maps, mean and max over time (a short bang in a 2 s
  window still counts), one linear layer.

A model file (``save_default_model``) is a plain dict loaded with ``weights_only=True``: the
state dict (half precision), the AudioSet tag names, the operating point (per-class
thresholds and the detector's smoothing), its calibration figures and the recipe.
"""

from __future__ import annotations

import logging
import math
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn

from services.inference.models.base import Prediction
from services.inference.models.efficientat import EMBEDDING_DIM, NUM_AUDIOSET_LABELS, EfficientAT
from shared.features.spec import EFFICIENTAT_MEL
from shared.taxonomy import CLASS_KEYS, NUM_CLASSES

__all__ = [
    "BAND_LIMIT_HZ",
    "FORMAT",
    "DefaultClassifier",
    "DefaultNet",
    "count_flops",
    "count_parameters",
    "for_serving",
    "load_default_model",
    "save_default_model",
]

log = logging.getLogger(__name__)

FORMAT = "hearo-default-mn04-v1"
BAND_LIMIT_HZ = 7_600.0
# (ln(0 + 1e-5) + 4.5) / 5: what the efficientat_mel spec gives for digital silence.
SILENCE = (math.log(1e-5) + 4.5) / 5


def _mel(hz: float) -> float:
    return 1127.0 * math.log(1.0 + hz / 700.0)


def band_mask(limit_hz: float = BAND_LIMIT_HZ) -> Tensor:
    """bool [128]: the efficientat_mel bins whose filter reaches above ``limit_hz``."""
    step = _mel(15_000.0) / (EFFICIENTAT_MEL.n_mels + 1)
    right_edges = torch.arange(2, EFFICIENTAT_MEL.n_mels + 2, dtype=torch.float64) * step
    return right_edges > _mel(limit_hz)


class DefaultNet(nn.Module):
    """Windows [B, 200, 128] -> (class logits [B, 9], AudioSet logits [B, 527])."""

    def __init__(self, dropout: float = 0.3) -> None:
        super().__init__()
        self.backbone = EfficientAT()
        self.dropout = nn.Dropout(dropout)
        self.classes = nn.Linear(2 * EMBEDDING_DIM, NUM_CLASSES)
        self.band_mask: Tensor
        self.register_buffer("band_mask", band_mask(), persistent=False)

    def forward(self, windows: Tensor) -> tuple[Tensor, Tensor]:
        if windows.dim() != 3 or windows.shape[2] != EFFICIENTAT_MEL.n_mels:
            raise ValueError(f"expected windows [B, T, {EFFICIENTAT_MEL.n_mels}], got {tuple(windows.shape)}")
        mel = windows.transpose(1, 2).masked_fill(self.band_mask[:, None], SILENCE)
        maps = self.backbone.features(mel.unsqueeze(1))  # [B, 384, mel', time']
        audioset = self.backbone.classifier[2:](maps.mean(dim=(2, 3)))
        over_time = maps.mean(dim=2)
        pooled = torch.cat([over_time.mean(dim=2), over_time.amax(dim=2)], dim=1)
        return self.classes(self.dropout(pooled)), audioset


def count_parameters(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


def count_flops(model: nn.Module, window: Tensor) -> int:
    """FLOPs (2 x multiply-adds of every convolution and linear layer) for one ``window`` [1, T, F]."""
    total = 0

    def hook(module: nn.Module, _inputs: Any, output: Tensor) -> None:
        nonlocal total
        if isinstance(module, nn.Conv2d):
            fan_in = module.kernel_size[0] * module.kernel_size[1] * module.in_channels // module.groups
            total += 2 * fan_in * output.numel()
        elif isinstance(module, nn.Linear):
            total += 2 * module.in_features * output.numel()

    hooks = [m.register_forward_hook(hook) for m in model.modules() if isinstance(m, (nn.Conv2d, nn.Linear))]
    was_training = model.training
    model.eval()
    try:
        with torch.no_grad():
            model(window)
    finally:
        for handle in hooks:
            handle.remove()
        model.train(was_training)
    return total


def save_default_model(
    path: Path,
    model: DefaultNet,
    tag_labels: tuple[str, ...],
    operating_point: dict[str, Any],
    metrics: dict[str, Any],
    recipe: dict[str, Any],
) -> None:
    """Write a model file. ``operating_point``: ``thresholds`` (class key -> threshold) and the
    detector parameters they were chosen with (``smoothing_windows``, ``hop_s``)."""
    if len(tag_labels) != NUM_AUDIOSET_LABELS:
        raise ValueError(f"{len(tag_labels)} tag labels, expected {NUM_AUDIOSET_LABELS}")
    state = {k: (v.half() if v.is_floating_point() else v) for k, v in model.state_dict().items()}
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.save(
        {"format": FORMAT, "spec": EFFICIENTAT_MEL.to_dict(), "classes": list(CLASS_KEYS), "state_dict": state,
         "tag_labels": list(tag_labels), "thresholds": dict(operating_point["thresholds"]),
         "operating_point": operating_point, "metrics": metrics, "recipe": recipe},
        path,
    )


def load_default_model(path: Path) -> tuple[DefaultNet, dict[str, Any]]:
    """(the network in eval mode, the file's other fields), loaded strictly. ValueError if
    ``path`` is not a default model file or its weights do not fit ``DefaultNet``."""
    data = torch.load(path, map_location="cpu", weights_only=True)
    if not isinstance(data, dict) or data.get("format") != FORMAT:
        raise ValueError(f"{path} is not a Hear-o default model file ({FORMAT})")
    if tuple(data["classes"]) != CLASS_KEYS or data["spec"]["name"] != EFFICIENTAT_MEL.name:
        raise ValueError(f"{path}: classes or feature spec differ from this build's")
    model = DefaultNet()
    state = {k: v.float() if v.is_floating_point() else v for k, v in data["state_dict"].items()}
    try:
        model.load_state_dict(state, strict=True)
    except RuntimeError as exc:
        raise ValueError(f"{path}: weights do not fit DefaultNet: {exc}") from exc
    return model.eval(), {k: v for k, v in data.items() if k != "state_dict"}


def for_serving(model: DefaultNet, device: torch.device) -> Callable[[Tensor], tuple[Tensor, Tensor]]:
    """``model`` as the service runs it. On the CPU: traced, frozen (batch norm folded into the
    convolutions) and optimised for inference (oneDNN convolutions on prepacked weights), which
    on the 2-core VM ran 1.5 times the eager windows/s at batch 1-4 and 2.6 times at batch 32,
    and turned the batching gain from 1.8 to 3.3 times (``bench/bench_default_model.py``);
    scores within 2e-5 of eager. Elsewhere, or if tracing fails, the eager network."""
    if device.type != "cpu":
        return model
    example = torch.zeros(8, EFFICIENTAT_MEL.window_frames, EFFICIENTAT_MEL.n_mels)
    try:
        with warnings.catch_warnings():
            # torch.jit is deprecated for torch.compile, which on the CPU needs a C++ compiler at
            # run time; torch is pinned, and this path is measured. The traced shape check is
            # replaced by DefaultClassifier.predict's.
            warnings.simplefilter("ignore", DeprecationWarning)
            warnings.simplefilter("ignore", torch.jit.TracerWarning)
            traced = torch.jit.trace(model.eval(), example, check_trace=False)
            return torch.jit.optimize_for_inference(torch.jit.freeze(traced))
    except RuntimeError as exc:  # an op the tracer or oneDNN does not take: serve eager, slower
        log.warning("serving the default model eager (tracing failed: %s)", exc)
        return model


class DefaultClassifier:
    """The default model as the registry's ``Classifier``: sigmoid class scores and AudioSet tags."""

    def __init__(self, path: Path, device: torch.device) -> None:
        model, info = load_default_model(path)
        self._model = for_serving(model.to(device), device)
        self._device = device
        self._tag_labels = tuple(info["tag_labels"])
        self.thresholds: dict[str, float] = dict(info["thresholds"])

    @property
    def tag_labels(self) -> tuple[str, ...]:
        return self._tag_labels

    @torch.inference_mode()
    def predict(self, windows: Tensor) -> Prediction:
        if windows.dim() != 3 or windows.shape[1:] != (EFFICIENTAT_MEL.window_frames, EFFICIENTAT_MEL.n_mels):
            expected = f"[B, {EFFICIENTAT_MEL.window_frames}, {EFFICIENTAT_MEL.n_mels}]"
            raise ValueError(f"expected windows {expected}, got {tuple(windows.shape)}")
        logits, audioset = self._model(windows.to(self._device))
        return Prediction(torch.sigmoid(logits.float()).cpu(), torch.sigmoid(audioset.float()).cpu())
