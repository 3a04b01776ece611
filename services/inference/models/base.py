"""The serving contract every model implements, in a module of types only so that model
modules and the registry can both import it: ``Classifier``, its ``Prediction`` and
``ModelLoadError``.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Protocol

from torch import Tensor

__all__ = ["Classifier", "ModelLoadError", "Prediction"]


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


class ModelLoadError(RuntimeError):
    """A registered model could not be loaded (missing or unreadable weights)."""
