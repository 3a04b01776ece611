"""Fine-tuning Hear-o's 9-class head on BEATs (``hearo train --backbone beats``).

    from services.inference.training import TrainingConfig, run_training
    model_file = run_training(TrainingConfig(checkpoint=ckpt, data=folder, out=Path("beats9.pt")))

``labelled_clips``: the clip and scan types the readers produce; ``dataset``: the dataset
layouts, the split by source file and window cutting; ``aihub``: the AI Hub emergency audio
data set and its class map; ``finetune``: the training run;
``metrics``: the validation metrics stored in the model file. Layouts and choices:
``docs/training.md``.
"""

from __future__ import annotations

from services.inference.training.aihub import AIHUB_CLASS_MAP, AIHubLabelError, read_aihub_label, scan_aihub
from services.inference.training.dataset import (
    clip_to_windows,
    read_clip,
    scan_class_folders,
    scan_dataset,
    split_by_source,
)
from services.inference.training.config import TrainingConfig
from services.inference.training.labelled_clips import DatasetScan, LabelledClip
from services.inference.training.finetune import run_training
from services.inference.training.metrics import classification_metrics

__all__ = [
    "AIHUB_CLASS_MAP",
    "AIHubLabelError",
    "DatasetScan",
    "LabelledClip",
    "TrainingConfig",
    "classification_metrics",
    "clip_to_windows",
    "read_aihub_label",
    "read_clip",
    "run_training",
    "scan_aihub",
    "scan_class_folders",
    "scan_dataset",
    "split_by_source",
]
