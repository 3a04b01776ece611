"""``hearo eval``: a registered model scored on labelled clips the way the service would score them.

The manifest is a CSV with ``file`` (relative to the CSV's folder) and ``class_id`` (0-8); other
columns are ignored. Each clip is read, made mono and resampled to the model's feature spec,
cut into 2 s windows at the service hop with the streaming feature code (``clip_windows``),
scored, and fed through the gateway's detector (``shared.detector.clip_decision``): the clip
is ``normal`` if the detector never fires, else the class it fires with first. A clip too
short for the detector to decide (``2 s + (smoothing_windows - 1) x hop``) is padded with
silence to that length, as if the stream had gone quiet. Thresholds are the model file's own
(chosen on its validation split by the trainer) when it has them, else the gateway's default.
"""

from __future__ import annotations

import csv
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import soundfile as sf
import soxr
import torch
from rich.console import Console
from rich.progress import Progress
from rich.table import Table

from services.inference.registry import Classifier, ModelEntry, default_registry
from services.inference.settings import InferenceSettings
from services.inference.training.metrics import detection_metrics
from shared.detector import DetectorConfig, clip_decision
from shared.features.stream import clip_windows, samples_for_frames
from shared.taxonomy import CLASS_KEYS, CLASSES, NUM_CLASSES

__all__ = ["EvalReport", "evaluate", "load_model", "read_eval_manifest"]

DEFAULT_THRESHOLD = 0.5  # the gateway's detector_default_threshold


@dataclass(frozen=True)
class EvalReport:
    model: str
    manifest: str
    thresholds: dict[str, float]
    metrics: dict[str, Any]  # detection_metrics: per_class, macro_f1, emergency_recall, false_alarm_rate, confusion

    def to_json(self) -> dict[str, Any]:
        return {"model": self.model, "manifest": self.manifest, "thresholds": self.thresholds, **self.metrics}


def read_eval_manifest(manifest: Path) -> list[tuple[Path, int]]:
    """(audio path, class id) per row; ValueError naming the row for a bad class id or missing column."""
    with open(manifest, newline="", encoding="utf-8") as f:
        reader = csv.DictReader(f)
        if not reader.fieldnames or not {"file", "class_id"} <= set(reader.fieldnames):
            raise ValueError(f"{manifest}: needs columns file and class_id")
        rows = []
        for line, row in enumerate(reader, start=2):
            class_id = int(row["class_id"])
            if not 0 <= class_id < NUM_CLASSES:
                raise ValueError(f"{manifest}:{line}: class_id {class_id} is not 0-{NUM_CLASSES - 1}")
            rows.append((manifest.parent / row["file"], class_id))
    return rows


def load_model(model: str | Path, settings: InferenceSettings | None = None) -> tuple[str, ModelEntry, Classifier]:
    """A registry name ("default", "efficientat", "beats") or a model file: a default-model file
    (``hearo train --backbone default``) or a BEATs checkpoint / head file."""
    settings = settings or InferenceSettings()
    registry = default_registry()
    name = str(model)
    if name not in registry.names():
        path = Path(model)
        if not path.is_file():
            raise ValueError(f"{model}: neither a registered model ({', '.join(registry.names())}) nor a file")
        from services.inference.models.default import FORMAT

        data = torch.load(path, map_location="cpu", weights_only=False)
        if isinstance(data, dict) and data.get("format") == FORMAT:
            name, settings = "default", settings.model_copy(update={"default_weights": path})
        else:
            name, settings = "beats", settings.model_copy(update={"beats_checkpoint": path})
    entry = registry.get(name)
    return str(model), entry, entry.load(settings, torch.device("cpu"))


def evaluate(
    manifest: Path,
    model: str | Path = "default",
    json_out: Path | None = None,
    png_out: Path | None = None,
    hop_s: float = 0.5,
    smoothing_windows: int = 3,
    console: Console | None = None,
) -> EvalReport:
    """Score every clip of ``manifest``, print the table, write the JSON report and the
    confusion-matrix PNG (default: beside ``json_out``, else beside the manifest)."""
    console = console or Console()
    label, entry, classifier = load_model(model)
    spec = entry.spec
    stored = getattr(classifier, "thresholds", None)
    thresholds = dict(stored) if stored else {c.key: DEFAULT_THRESHOLD for c in CLASSES if c.is_emergency}
    detector = DetectorConfig(thresholds=thresholds, smoothing_windows=smoothing_windows, hop_s=hop_s)
    hop_frames = spec.frames_for(hop_s)
    min_samples = samples_for_frames(spec, spec.window_frames + (smoothing_windows - 1) * hop_frames)
    rows = read_eval_manifest(manifest)
    predictions = []
    with Progress(console=console, transient=True) as progress:
        task = progress.add_task(f"eval {label}", total=len(rows))
        for path, _ in rows:
            audio, rate = sf.read(str(path), dtype="float32", always_2d=True)
            mono = audio.mean(axis=1)
            if rate != spec.sample_rate:
                mono = soxr.resample(mono, rate, spec.sample_rate).astype(np.float32)
            mono = np.pad(mono, (0, max(min_samples - mono.size, 0)))
            windows = clip_windows(spec, mono, hop_frames)
            scores = torch.cat([classifier.predict(windows[lo: lo + 32]).scores for lo in range(0, len(windows), 32)])
            predictions.append(clip_decision(scores.numpy(), detector)[0])
            progress.advance(task)
    metrics = detection_metrics(torch.tensor([c for _, c in rows]), torch.tensor(predictions))
    report = EvalReport(label, str(manifest), thresholds, metrics)
    console.print(report_table(report))
    if json_out is not None:
        json_out.parent.mkdir(parents=True, exist_ok=True)
        json_out.write_text(json.dumps(report.to_json(), indent=2))
    png = png_out or (json_out.with_suffix(".png") if json_out else manifest.with_name(f"confusion-{Path(label).stem}.png"))
    save_confusion_png(metrics["confusion"], png, f"{label} on {manifest.name}")
    console.print(f"confusion matrix: {png}")
    return report


def report_table(report: EvalReport) -> Table:
    table = Table(title=f"{report.model}: {report.metrics['clips']} clips")
    for column in ("class", "precision", "recall", "F1", "clips"):
        table.add_column(column, justify="left" if column == "class" else "right")
    for key in CLASS_KEYS:
        row = report.metrics["per_class"][key]
        table.add_row(key, f"{row['precision']:.3f}", f"{row['recall']:.3f}", f"{row['f1']:.3f}", str(row["support"]))
    m = report.metrics
    table.add_section()
    table.add_row("macro-F1", "", "", f"{m['macro_f1']:.3f}", "")
    table.add_row("emergency recall", "", f"{m['emergency_recall']:.3f}", "", "")
    table.add_row("false alarms (normal)", "", f"{m['false_alarm_rate']:.3f}", "", "")
    return table


def save_confusion_png(confusion: list[list[int]], path: Path, title: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    matrix = np.asarray(confusion)
    fig, ax = plt.subplots(figsize=(7, 6))
    ax.imshow(matrix, cmap="Blues")
    ax.set_xticks(range(NUM_CLASSES), CLASS_KEYS, rotation=45, ha="right")
    ax.set_yticks(range(NUM_CLASSES), CLASS_KEYS)
    ax.set_xlabel("predicted (first detection)")
    ax.set_ylabel("true class")
    ax.set_title(title)
    for i in range(NUM_CLASSES):
        for j in range(NUM_CLASSES):
            if matrix[i, j]:
                ax.text(j, i, str(matrix[i, j]), ha="center", va="center",
                        color="white" if matrix[i, j] > matrix.max() / 2 else "black", fontsize=8)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=100)
    plt.close(fig)
