"""The settings of one training run (``hearo train --backbone beats``)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from services.inference.training.dataset import LAYOUTS
from shared.features.spec import BEATS_FBANK

MONITORS = ("f1", "loss")


@dataclass(frozen=True)
class TrainingConfig:
    """Everything one training run needs; ``run_training`` validates nothing else.

    ``checkpoint`` is an official BEATs checkpoint (pre-trained, or AudioSet fine-tuned:
    its AudioSet predictor is dropped). ``top_layers`` encoder layers are trained besides
    the head (0: head only, on cached features), at ``backbone_lr`` (default ``lr / 10``);
    the relative-position table shared by all layers stays frozen. ``hop_seconds`` is the
    window hop used to cut the training clips. ``monitor`` picks the early-stopping score:
    "f1" (validation macro-F1, ties broken by the loss) or "loss". ``run_dir`` defaults to
    ``out`` with the suffix ``.run``. ``device`` is "auto" (CUDA when available), "cpu",
    "cuda" ... With ``val_fraction`` 0 there is no validation: the training loss is
    monitored and the model file has no validation metrics.
    """

    checkpoint: Path
    data: Path
    out: Path
    epochs: int = 30
    top_layers: int = 0
    batch_size: int = 32
    lr: float = 1e-3
    backbone_lr: float | None = None
    weight_decay: float = 0.01
    patience: int = 5
    monitor: str = "f1"
    seed: int = 0
    val_fraction: float = 0.2
    hop_seconds: float = 0.5
    layout: str = "auto"
    head_dropout: float = 0.1
    run_dir: Path | None = None
    resume: bool = False
    device: str = "auto"

    def __post_init__(self) -> None:
        problems = []
        if self.epochs < 1:
            problems.append(f"epochs must be >= 1, got {self.epochs}")
        if self.top_layers < 0:
            problems.append(f"top_layers must be >= 0, got {self.top_layers}")
        if self.batch_size < 1:
            problems.append(f"batch_size must be >= 1, got {self.batch_size}")
        if self.lr <= 0 or (self.backbone_lr is not None and self.backbone_lr <= 0):
            problems.append("learning rates must be positive")
        if self.patience < 1:
            problems.append(f"patience must be >= 1, got {self.patience}")
        if self.monitor not in MONITORS:
            problems.append(f"monitor must be one of {MONITORS}, got {self.monitor!r}")
        if not 0.0 <= self.val_fraction < 1.0:
            problems.append(f"val_fraction must be in [0, 1), got {self.val_fraction}")
        if BEATS_FBANK.frames_for(self.hop_seconds) < 1:
            problems.append(f"hop_seconds {self.hop_seconds} is shorter than one frame")
        if self.layout not in LAYOUTS:
            problems.append(f"layout must be one of {LAYOUTS}, got {self.layout!r}")
        if not 0.0 <= self.head_dropout < 1.0:
            problems.append(f"head_dropout must be in [0, 1), got {self.head_dropout}")
        if problems:
            raise ValueError("bad training config: " + "; ".join(problems))

    @property
    def run_folder(self) -> Path:
        return self.run_dir if self.run_dir is not None else self.out.with_suffix(".run")

    @property
    def hop_frames(self) -> int:
        return BEATS_FBANK.frames_for(self.hop_seconds)

    def identity(self) -> dict[str, Any]:
        """The fields a resumed run must share with the run it continues."""
        return {
            "checkpoint": str(Path(self.checkpoint).resolve()),
            "data": str(Path(self.data).resolve()),
            "top_layers": self.top_layers,
            "seed": self.seed,
            "val_fraction": self.val_fraction,
            "hop_frames": self.hop_frames,
            "layout": self.layout,
            "head_dropout": self.head_dropout,
        }
