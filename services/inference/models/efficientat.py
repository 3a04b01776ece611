"""EfficientAT mn04 (AudioSet): our own PyTorch implementation, loading the published weights.

MobileNetV3-Large at width 0.4 on a one-channel log-mel image, as published by
fschmid56/EfficientAT (``mn04_as_mAP_432.pt``, MIT). Facts: ``shared/specs/efficientat-mn04.md``.

Three entry points, one network:

- ``forward(waveform [B, N])`` computes the reference log-mel inside (32 kHz input);
- ``forward_mel(mel [B, 128, T])`` takes log-mel as ``efficientat_logmel`` returns it;
- ``forward_features(windows [B, T, 128])`` takes the gateway's time-major windows, so the
  inference service never recomputes features.

Each returns ``(logits [B, 527], embedding [B, 384])``: raw AudioSet logits (apply sigmoid for
probabilities, class order as ``class_labels_indices.csv``) and the pooled last-conv output.
"""

from __future__ import annotations

from pathlib import Path
from typing import ClassVar

import torch
from torch import Tensor, nn

from shared.features.efficientat_mel import efficientat_logmel
from shared.features.spec import EFFICIENTAT_MEL, FeatureSpec

FEATURE_SPEC = EFFICIENTAT_MEL
NUM_AUDIOSET_LABELS = 527
EMBEDDING_DIM = 384

# One row per inverted-residual block (features.1 .. features.15), channels already scaled
# by the 0.4 width multiplier and rounded as the reference does:
# (in, kernel, expanded, out, squeeze (0 = no SE), hardswish, stride).
_BLOCKS: tuple[tuple[int, int, int, int, int, bool, int], ...] = (
    (8, 3, 8, 8, 0, False, 1),
    (8, 3, 24, 16, 0, False, 2),
    (16, 3, 32, 16, 0, False, 1),
    (16, 5, 32, 16, 8, False, 2),
    (16, 5, 48, 16, 16, False, 1),
    (16, 5, 48, 16, 16, False, 1),
    (16, 3, 96, 32, 0, True, 2),
    (32, 3, 80, 32, 0, True, 1),
    (32, 3, 72, 32, 0, True, 1),
    (32, 3, 72, 32, 0, True, 1),
    (32, 3, 192, 48, 48, True, 1),
    (48, 3, 272, 48, 72, True, 1),
    (48, 5, 272, 64, 72, True, 2),
    (64, 5, 384, 64, 96, True, 1),
    (64, 5, 384, 64, 96, True, 1),
)
_STEM_CHANNELS = 8
_HIDDEN = 512


class ConvBN(nn.Sequential):
    """Conv2d (no bias, 'same'-style padding) + BatchNorm2d (eps 1e-3) + optional activation.

    Laid out as a Sequential so the checkpoint's ``<p>.0.weight`` / ``<p>.1.*`` names match;
    the activation at index 2 has no weights and adds no keys.
    """

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        kernel_size: int,
        stride: int = 1,
        groups: int = 1,
        activation: type[nn.Module] | None = None,
    ) -> None:
        layers: list[nn.Module] = [
            nn.Conv2d(
                in_channels,
                out_channels,
                kernel_size,
                stride=stride,
                padding=(kernel_size - 1) // 2,
                groups=groups,
                bias=False,
            ),
            # eps 1e-3, not PyTorch's 1e-5: the weights were trained with it.
            nn.BatchNorm2d(out_channels, eps=1e-3, momentum=0.01),
        ]
        if activation is not None:
            layers.append(activation())
        super().__init__(*layers)


class _ExcitationGate(nn.Module):
    """Per-channel gate in (0, 1): mean over (mel, time) -> fc1 -> ReLU -> fc2 -> sigmoid."""

    def __init__(self, channels: int, squeeze: int) -> None:
        super().__init__()
        self.fc1 = nn.Linear(channels, squeeze)
        self.fc2 = nn.Linear(squeeze, channels)

    def forward(self, x: Tensor) -> Tensor:
        pooled = x.mean(dim=(2, 3))
        gate = torch.sigmoid(self.fc2(torch.relu(self.fc1(pooled))))
        return gate[:, :, None, None]


class SqueezeExcite(nn.Module):
    """Squeeze-and-excitation with ReLU and a logistic sigmoid (not torchvision's hard-sigmoid)."""

    def __init__(self, channels: int, squeeze: int) -> None:
        super().__init__()
        # The reference keeps a list of gates and max-combines them; mn04 has exactly one, so the
        # list only survives as the ``conc_se_layers.0`` level in the checkpoint's key names.
        self.conc_se_layers = nn.ModuleList([_ExcitationGate(channels, squeeze)])

    def forward(self, x: Tensor) -> Tensor:
        return x * self.conc_se_layers[0](x)


class InvertedResidual(nn.Module):
    """MobileNetV3 block: [expand 1x1] -> depthwise kxk -> [SE] -> project 1x1 (+ input)."""

    def __init__(
        self,
        in_channels: int,
        kernel_size: int,
        expanded: int,
        out_channels: int,
        squeeze: int,
        hardswish: bool,
        stride: int,
    ) -> None:
        super().__init__()
        activation: type[nn.Module] = nn.Hardswish if hardswish else nn.ReLU
        steps: list[nn.Module] = []
        # The expand conv is absent (not an identity) when it would not widen: block 1 only.
        if expanded != in_channels:
            steps.append(ConvBN(in_channels, expanded, 1, activation=activation))
        steps.append(
            ConvBN(expanded, expanded, kernel_size, stride=stride, groups=expanded, activation=activation)
        )
        if squeeze:
            steps.append(SqueezeExcite(expanded, squeeze))
        steps.append(ConvBN(expanded, out_channels, 1))
        self.block = nn.Sequential(*steps)
        self.residual = stride == 1 and in_channels == out_channels

    def forward(self, x: Tensor) -> Tensor:
        out = self.block(x)
        return out + x if self.residual else out


class EfficientAT(nn.Module):
    """EfficientAT mn04 AudioSet tagger (527 labels, 384-d embedding, 0.98 M parameters).

    Build it with ``load_efficientat``; a bare instance has random weights. Inputs are never
    modified, the batch dimension is kept for B = 1, and any number of frames T >= 2 works.
    """

    FEATURE_SPEC: ClassVar[FeatureSpec] = EFFICIENTAT_MEL

    def __init__(self) -> None:
        super().__init__()
        layers: list[nn.Module] = [ConvBN(1, _STEM_CHANNELS, 3, stride=2, activation=nn.Hardswish)]
        layers += [InvertedResidual(*row) for row in _BLOCKS]
        last_in = _BLOCKS[-1][3]
        layers.append(ConvBN(last_in, EMBEDDING_DIM, 1, activation=nn.Hardswish))
        self.features = nn.Sequential(*layers)
        # Indices 0-1 pool to the embedding; 2-5 are the head. One Sequential keeps the
        # checkpoint's classifier.2 / classifier.5 names.
        self.classifier = nn.Sequential(
            nn.AdaptiveAvgPool2d(1),
            nn.Flatten(1),
            nn.Linear(EMBEDDING_DIM, _HIDDEN),
            nn.Hardswish(),
            nn.Dropout(0.2),
            nn.Linear(_HIDDEN, NUM_AUDIOSET_LABELS),
        )

    def forward(self, waveform: Tensor) -> tuple[Tensor, Tensor]:
        """Tag a float32 waveform [B, N] at 32 kHz (N >= 514); returns (logits, embedding)."""
        if waveform.dim() != 2:
            raise ValueError(f"expected a waveform [B, N], got shape {tuple(waveform.shape)}")
        return self.forward_mel(efficientat_logmel(waveform))

    def forward_mel(self, mel: Tensor) -> tuple[Tensor, Tensor]:
        """Tag normalised log-mel [B, 128, T] (mel-major, as ``efficientat_logmel`` returns it)."""
        if mel.dim() != 3 or mel.shape[1] != FEATURE_SPEC.n_mels:
            raise ValueError(f"expected log-mel [B, {FEATURE_SPEC.n_mels}, T], got shape {tuple(mel.shape)}")
        return self._tag(mel.unsqueeze(1))

    def forward_features(self, windows: Tensor) -> tuple[Tensor, Tensor]:
        """Tag time-major feature windows [B, T, 128] (the project's wire layout)."""
        if windows.dim() != 3 or windows.shape[2] != FEATURE_SPEC.n_mels:
            raise ValueError(
                f"expected feature windows [B, T, {FEATURE_SPEC.n_mels}], got shape {tuple(windows.shape)}"
            )
        return self._tag(windows.transpose(1, 2).unsqueeze(1))

    def _tag(self, image: Tensor) -> tuple[Tensor, Tensor]:
        embedding = self.classifier[:2](self.features(image))
        logits = self.classifier[2:](embedding)
        return logits, embedding


def load_efficientat(path: str | Path) -> EfficientAT:
    """Load the published mn04 AudioSet weights strictly; returns the model in eval mode.

    Raises ValueError naming the missing, unexpected and mis-shaped keys when ``path`` does not
    hold an mn04 state dict (a different EfficientAT width, a wrapped training checkpoint, ...).
    """
    state = torch.load(Path(path), map_location="cpu", weights_only=True)
    if not isinstance(state, dict):
        raise ValueError(f"{path}: expected a state dict, found {type(state).__name__}")
    model = EfficientAT()
    expected = model.state_dict()
    missing = [k for k in expected if k not in state]
    unexpected = [k for k in state if k not in expected]
    mis_shaped = [
        f"{k} {tuple(state[k].shape)} != {tuple(v.shape)}"
        for k, v in expected.items()
        if k in state and isinstance(state[k], Tensor) and state[k].shape != v.shape
    ]
    if missing or unexpected or mis_shaped:
        raise ValueError(
            f"{path} is not an EfficientAT mn04 state dict: "
            f"{_listing('missing', missing)}; {_listing('unexpected', unexpected)}; "
            f"{_listing('shape mismatch', mis_shaped)}"
        )
    model.load_state_dict(state, strict=True)
    return model.eval()


def _listing(what: str, keys: list[str], limit: int = 8) -> str:
    shown = ", ".join(keys[:limit]) + (f", ... ({len(keys) - limit} more)" if len(keys) > limit else "")
    return f"{len(keys)} {what} [{shown}]"
