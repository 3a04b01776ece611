"""Single-label classification metrics over the nine classes, as stored in a model file."""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor

from shared.taxonomy import CLASS_KEYS, NUM_CLASSES


def classification_metrics(targets: Tensor, predictions: Tensor) -> dict[str, Any]:
    """Accuracy, macro-F1 and per-class precision / recall / F1 / support of class ids.

    ``targets`` and ``predictions`` are 1-D class ids (taxonomy order). The macro average
    runs over the classes that occur in ``targets`` (a class absent from the data has no
    meaningful recall). A class never predicted has precision 0.
    """
    targets = targets.long().cpu()
    predictions = predictions.long().cpu()
    confusion = torch.zeros(NUM_CLASSES, NUM_CLASSES, dtype=torch.long)
    confusion.index_put_((targets, predictions), torch.ones_like(targets), accumulate=True)
    per_class: dict[str, dict[str, float | int]] = {}
    f1s = []
    for class_id, key in enumerate(CLASS_KEYS):
        hits = int(confusion[class_id, class_id])
        support = int(confusion[class_id].sum())
        predicted = int(confusion[:, class_id].sum())
        precision = hits / predicted if predicted else 0.0
        recall = hits / support if support else 0.0
        f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
        per_class[key] = {"precision": precision, "recall": recall, "f1": f1, "support": support}
        if support:
            f1s.append(f1)
    total = int(targets.numel())
    return {
        "accuracy": int(confusion.diagonal().sum()) / total if total else 0.0,
        "macro_f1": sum(f1s) / len(f1s) if f1s else 0.0,
        "windows": total,
        "per_class": per_class,
        "confusion": confusion.tolist(),
    }


def detection_metrics(targets: Tensor, predictions: Tensor) -> dict[str, Any]:
    """``classification_metrics`` of clip decisions plus the two operating figures:

    ``emergency_recall``: of the clips of classes 1-8, the share predicted as any emergency;
    ``false_alarm_rate``: of the class-0 clips, the share predicted as any emergency.
    """
    metrics = classification_metrics(targets, predictions)
    targets, predictions = targets.long().cpu(), predictions.long().cpu()
    emergency, normal = targets != 0, targets == 0
    metrics["emergency_recall"] = float((predictions[emergency] != 0).float().mean()) if emergency.any() else 0.0
    metrics["false_alarm_rate"] = float((predictions[normal] != 0).float().mean()) if normal.any() else 0.0
    metrics["clips"] = metrics.pop("windows")
    return metrics
