"""``hearo eval``: a registered model scored on labelled clips the way the service would score them.

The manifest is a CSV with ``file`` (relative to the CSV's folder) and ``class_id`` (0-8); other
columns are ignored. Each clip is streamed, offline, through the gateway's own audio path as
``hearo stream`` would send it (mono PCM16 at the file's rate, or 16 kHz for a rate the protocol
does not take): ``AudioPipeline`` resamples it, cuts the model's 2 s windows at the service hop
and, unless ``alarm_patterns`` is off (``--no-patterns``; default: the gateway's
``HEARO_GATEWAY_ALARM_PATTERNS``), runs the alarm pattern detector over its 16 kHz audio. The
windows are scored and, with the pattern matches, fed through the gateway's detector
(``shared.detector.clip_decision``, the fusion the live session uses): the clip is ``normal``
if nothing fires, else the class detected first. The clip ends as the gateway ends a stream at
``stop`` (``AudioPipeline.hear_end``: ``shared.features.stream.end_padding``): silence completes
the windows that hold its last audio, so its end lies in every window the smoothing averages,
and a clip shorter than a window is padded centred to the detector's minimum (``2 s +
(smoothing_windows - 1) x hop``), so a short event lies in every one; ``hearo stream`` of the
file is judged the same. Thresholds are the model file's own (chosen on its validation split
by the trainer) when it has them, else the gateway's default.
"""

from __future__ import annotations

import csv
import json
from collections.abc import Iterator
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

from hearo.audio_sources import FALLBACK_RATE
from shared.alarm_patterns import AlarmPatternDetector, AlarmPatternMatch
from services.gateway.audio import RING_SAMPLE_RATE, AudioPipeline, Window
from services.gateway.settings import GatewaySettings
from services.inference.models.base import Classifier
from services.inference.models.default import FORMAT as DEFAULT_FORMAT
from services.inference.models.small_cnn import FORMAT as SMALL_CNN_FORMAT
from services.inference.registry import ModelEntry, default_registry
from services.inference.settings import InferenceSettings
from services.inference.training.calibration import CalibrationBudget, calibrate, household_files
from services.inference.training.metrics import detection_metrics
from services.gateway.novelty_gate import GateCounts, GatePolicy, NoveltyGate, gated_scores
from shared.detector import Detector, DetectorConfig, clip_decision
from shared.features.spec import FeatureSpec
from shared.protocol import SAMPLE_RATES
from shared.spoken import SpokenFusion, SpokenHit, WindowTags, listen
from shared.taxonomy import CLASS_KEYS, NUM_CLASSES

__all__ = [
    "EvalReport", "HouseholdReport", "evaluate", "evaluate_household", "load_model", "read_eval_manifest",
    "ServedModel", "predict_windows", "stream_clip", "tune_thresholds",
]


@dataclass(frozen=True)
class EvalReport:
    model: str
    manifest: str
    thresholds: dict[str, float]
    alarm_patterns: bool  # whether the alarm pattern detector was fused with the model
    metrics: dict[str, Any]  # detection_metrics: per_class, macro_f1, emergency_recall, false_alarm_rate, confusion
    clips: list[dict[str, Any]]  # per clip, in manifest order: file, class_id, predicted
    gate: dict[str, Any] | None = None  # behind the novelty gate: its policy and the share judged
    spoken_languages: tuple[str, ...] = ()  # spoken words fused (none: off, the gateway's default)

    def to_json(self) -> dict[str, Any]:
        return {
            "model": self.model, "manifest": self.manifest, "thresholds": self.thresholds,
            "alarm_patterns": self.alarm_patterns, "spoken_languages": list(self.spoken_languages), **self.metrics,
            "predictions": self.clips, "gate": self.gate,
        }  # fmt: skip


def _behind_gate(served: ServedModel, policy: GatePolicy | None, counts: GateCounts, features: list[torch.Tensor],
                 end_times: list[float], scores: np.ndarray) -> np.ndarray:
    """``scores`` as the detector sees them behind the gate (``policy`` None: no gate)."""
    if policy is None:
        return scores
    gate = NoveltyGate.for_detector(policy, served.spec, served.detector)
    seen, _ = gated_scores(gate, features, end_times, scores)
    counts.add(gate.counts)
    return seen


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
        data = torch.load(path, map_location="cpu", weights_only=False)
        kind = data.get("format") if isinstance(data, dict) else None
        if kind == DEFAULT_FORMAT:
            name, settings = "default", settings.model_copy(update={"default_weights": path})
        elif kind == SMALL_CNN_FORMAT:
            name, settings = "small_cnn", settings.model_copy(update={"small_cnn_weights": path})
        else:
            name, settings = "beats", settings.model_copy(update={"beats_checkpoint": path})
    entry = registry.get(name)
    return str(model), entry, entry.load(settings, torch.device("cpu"))


def stream_clip(
    audio: np.ndarray,
    rate: int,
    spec: FeatureSpec,
    hop_frames: int,
    smoothing_windows: int,
    alarm_patterns: bool,
    ring_seconds: float,
) -> tuple[list[Window], list[AlarmPatternMatch]]:
    """What the gateway makes of a client streaming ``audio`` (float mono at ``rate``) and then
    ``stop``: its model windows, with those its end completes for a detector averaging
    ``smoothing_windows`` windows, and, when ``alarm_patterns``, the pattern matches heard
    (``ring_seconds``: the gateway's ring buffer, which the pipeline fills as it goes).
    """
    if rate not in SAMPLE_RATES:  # as ``hearo stream`` sends such a file
        audio, rate = soxr.resample(audio, rate, FALLBACK_RATE), FALLBACK_RATE
    pcm16 = (np.clip(audio, -1.0, 32767 / 32768) * 32768).astype("<i2").tobytes()
    patterns = AlarmPatternDetector(RING_SAMPLE_RATE) if alarm_patterns else None
    pipeline = AudioPipeline(rate, 1, spec, hop_frames, ring_seconds, patterns)
    heard = pipeline.hear(pcm16) + pipeline.hear_end(smoothing_windows)
    # Apart, for scoring every window in one batch; the detector takes the matches back in
    # stream order (``Detector.hear_patterns``).
    return ([item for item in heard if isinstance(item, Window)],
            [item for item in heard if isinstance(item, AlarmPatternMatch)])


def evaluate(
    manifest: Path,
    model: str | Path = "default",
    json_out: Path | None = None,
    png_out: Path | None = None,
    hop_s: float = 0.5,
    smoothing_windows: int = 3,
    alarm_patterns: bool | None = None,
    thresholds: dict[str, float] | None = None,
    console: Console | None = None,
    gate: GatePolicy | None = None,
    spoken_languages: tuple[str, ...] = (),
) -> EvalReport:
    """Score every clip of ``manifest``, print the table, write the JSON report and the
    confusion-matrix PNG (default: beside ``json_out``, else beside the manifest).

    ``alarm_patterns``: fuse the alarm pattern detector's matches, as the gateway does;
    None follows the gateway's settings (``HEARO_GATEWAY_ALARM_PATTERNS``, on by default).
    ``thresholds``: per class, in place of the gateway's settings (``tune_thresholds``' output).
    ``gate``: judge the clips behind the novelty gate (``services.gateway.novelty_gate``).
    ``spoken_languages``: fuse spoken distress words in these languages (``shared.spoken``), as
    a gateway with ``HEARO_GATEWAY_SPOKEN`` enabled does, the model's tags gating the
    recogniser and marking shouts.
    """
    console = console or Console()
    served = ServedModel.load(model, hop_s, smoothing_windows, alarm_patterns, thresholds)
    label, detector, patterns_on = served.label, served.detector, served.alarm_patterns
    rows = read_eval_manifest(manifest)
    counts = GateCounts()
    predictions = [
        clip_decision(_behind_gate(served, gate, counts, clip.features, clip.end_times, clip.scores), detector,
                      clip.end_times, clip.matches, _fusion(clip.hits, spoken_languages))[0]
        for clip in _scored_clips(rows, label, served.spec, served.classifier, served.hop_frames, smoothing_windows,
                                  patterns_on, served.gateway, console, spoken_languages)
    ]
    metrics = detection_metrics(torch.tensor([c for _, c in rows]), torch.tensor(predictions))
    clips = [{"file": str(path), "class_id": c, "predicted": int(p)} for (path, c), p in zip(rows, predictions)]
    report = EvalReport(label, str(manifest), dict(detector.thresholds), patterns_on, metrics, clips,
                        None if gate is None else counts.report(gate), spoken_languages)
    console.print(report_table(report))
    if report.gate is not None:
        console.print(f"behind the novelty gate: the model judged {report.gate['judged_share']:.1%} of the windows")
    if json_out is not None:
        json_out.parent.mkdir(parents=True, exist_ok=True)
        json_out.write_text(json.dumps(report.to_json(), indent=2))
    png = png_out or (json_out.with_suffix(".png") if json_out else manifest.with_name(f"confusion-{Path(label).stem}.png"))
    save_confusion_png(metrics["confusion"], png, f"{label} on {manifest.name}")
    console.print(f"confusion matrix: {png}")
    return report


@dataclass(frozen=True)
class _ScoredClip:
    scores: np.ndarray  # [windows, 9], stream order
    features: list[torch.Tensor]
    end_times: list[float]
    matches: list[AlarmPatternMatch]
    hits: list[SpokenHit]  # spoken phrases heard (none when spoken words are off)


def _spoken_hits(audio: np.ndarray, rate: int, languages: tuple[str, ...], tags: list[WindowTags]) -> list[SpokenHit]:
    """The phrases a session listening for ``languages`` hears in ``audio`` (float mono at
    ``rate``), its model's ``tags`` gating the recogniser and marking shouts."""
    if not languages:
        return []
    if rate != RING_SAMPLE_RATE:  # the gateway listens to its 16 kHz ring buffer
        audio = soxr.resample(audio, rate, RING_SAMPLE_RATE)
    return listen(np.asarray(audio, dtype=np.float32), languages, tags=tags)[0]


def _fusion(hits: list[SpokenHit], languages: tuple[str, ...]) -> SpokenFusion | None:
    """A session's spoken evidence holding ``hits`` (None when spoken words are off)."""
    if not languages:
        return None
    fusion = SpokenFusion()
    fusion.hear(sorted(hits, key=lambda h: h.end_s))
    return fusion


def _scored_clips(
    rows: list[tuple[Path, int]],
    label: str,
    spec: FeatureSpec,
    classifier: Classifier,
    hop_frames: int,
    smoothing_windows: int,
    alarm_patterns: bool,
    gateway: GatewaySettings,
    console: Console,
    spoken_languages: tuple[str, ...] = (),
) -> Iterator[_ScoredClip]:
    """Each clip streamed as the gateway would and scored by ``classifier``, in manifest order."""
    with Progress(console=console, transient=True) as progress:
        task = progress.add_task(f"eval {label}", total=len(rows))
        for path, _ in rows:
            audio, rate = sf.read(str(path), dtype="float32", always_2d=True)
            windows, matches = stream_clip(
                audio.mean(axis=1), rate, spec, hop_frames, smoothing_windows, alarm_patterns, gateway.ring_buffer_s
            )
            scores, tags = predict_windows(classifier, windows)
            hits = _spoken_hits(audio.mean(axis=1), rate, spoken_languages, [(w.end_s, t) for w, t in zip(windows, tags)])
            yield _ScoredClip(scores, [w.features for w in windows], [w.end_s for w in windows], matches, hits)
            progress.advance(task)


def tune_thresholds(
    manifest: Path,
    model: str | Path = "default",
    hop_s: float = 0.5,
    smoothing_windows: int = 3,
    max_false_alarm: float = CalibrationBudget.max_clip_false_alarm,
    console: Console | None = None,
) -> dict[str, float]:
    """Per-class thresholds for ``model`` chosen on ``manifest``'s clips by the trainer's rule
    without household audio (``calibration.calibrate``: the best clip F1 within the per-clip
    false-alarm bound), from the model's own scores streamed as the service streams them
    (the alarm pattern detector does not depend on them). Tune on clips you will not evaluate on."""
    console = console or Console()
    label, entry, classifier = load_model(model)
    rows = read_eval_manifest(manifest)
    clips = _scored_clips(rows, label, entry.spec, classifier, entry.spec.frames_for(hop_s), smoothing_windows,
                          False, GatewaySettings(), console)
    scores = [clip.scores for clip in clips]
    budget = CalibrationBudget(max_clip_false_alarm=max_false_alarm, smoothing_windows=smoothing_windows)
    return calibrate(scores, [c for _, c in rows], [], budget).thresholds


@dataclass(frozen=True)
class ServedModel:
    """A model as the gateway would serve and judge it: its windows, its classifier, the
    detector configuration the gateway would build for it, and whether patterns are fused."""

    label: str
    spec: FeatureSpec
    classifier: Classifier
    hop_frames: int
    detector: DetectorConfig
    alarm_patterns: bool
    gateway: GatewaySettings

    @classmethod
    def load(cls, model: str | Path, hop_s: float, smoothing_windows: int, alarm_patterns: bool | None,
             thresholds: dict[str, float] | None) -> ServedModel:
        gateway = GatewaySettings()
        label, entry, classifier = load_model(model)
        spec = entry.spec
        hop_frames = spec.frames_for(hop_s)
        # The thresholds the gateway would use with this model: its explicit settings, then the model's.
        detector = DetectorConfig.build(
            gateway.detector_default_threshold, gateway.detector_thresholds if thresholds is None else thresholds,
            getattr(classifier, "thresholds", None),
            smoothing_windows=smoothing_windows, hop_s=hop_frames * spec.frame_shift / spec.sample_rate,
        )
        patterns = gateway.alarm_patterns if alarm_patterns is None else alarm_patterns
        return cls(label, spec, classifier, hop_frames, detector, patterns, gateway)


@dataclass(frozen=True)
class HouseholdReport:
    """False alarms on hours of household audio with no emergency (``hearo data household``)."""

    model: str
    folder: str
    hours: float
    alarms: list[dict[str, Any]]  # file, stream time (s), class, confidence, pattern (None: the model), spoken
    minutes: int  # whole minutes of audio (each file cut into one-minute pieces, the rest dropped)
    minutes_firing: int
    gate: dict[str, Any] | None = None  # as EvalReport.gate

    @property
    def per_hour(self) -> float:
        return len(self.alarms) / self.hours if self.hours else 0.0

    def to_json(self) -> dict[str, Any]:
        return {"model": self.model, "folder": self.folder, "hours": round(self.hours, 3),
                "false_alarms": len(self.alarms), "false_alarms_per_hour": round(self.per_hour, 3),
                "minutes": self.minutes, "minutes_firing": self.minutes_firing, "alarms": self.alarms,
                "gate": self.gate}


def evaluate_household(
    folder: Path,
    model: str | Path = "default",
    hop_s: float = 0.5,
    smoothing_windows: int = 3,
    alarm_patterns: bool | None = None,
    thresholds: dict[str, float] | None = None,
    console: Console | None = None,
    gate: GatePolicy | None = None,
    spoken_languages: tuple[str, ...] = (),
) -> HouseholdReport:
    """Stream every .wav/.flac under ``folder`` through the gateway's audio path and detector,
    as ``evaluate`` streams a clip, and count what fires: every detection is a false alarm.
    ``gate`` and ``spoken_languages``: as ``evaluate``."""
    console = console or Console()
    served = ServedModel.load(model, hop_s, smoothing_windows, alarm_patterns, thresholds)
    label = served.label
    files = household_files(folder)
    alarms: list[dict[str, Any]] = []
    seconds, minutes, firing = 0.0, 0, 0
    counts = GateCounts()
    with Progress(console=console, transient=True) as progress:
        task = progress.add_task(f"household {label}", total=len(files))
        for path in files:
            audio, rate = sf.read(str(path), dtype="float32", always_2d=True)
            windows, matches = stream_clip(audio.mean(axis=1), rate, served.spec, served.hop_frames, smoothing_windows,
                                           served.alarm_patterns, served.gateway.ring_buffer_s)
            scores, tags = predict_windows(served.classifier, windows)
            scores = _behind_gate(served, gate, counts, [w.features for w in windows], [w.end_s for w in windows], scores)
            phrases = _spoken_hits(audio.mean(axis=1), rate, spoken_languages, [(w.end_s, t) for w, t in zip(windows, tags)])
            found = Detector(served.detector, spoken=_fusion(phrases, spoken_languages))
            found.hear_patterns(matches)
            events = [e for row, w in zip(scores, windows) for e in found.update(row, w.end_s)]
            events += found.observe_heard_patterns()
            length = audio.shape[0] / rate
            seconds += length
            whole = int(length // 60)
            minutes += whole
            firing += len({int(e.stream_time_s // 60) for e in events if e.stream_time_s < whole * 60})
            alarms += [{"file": path.name, "time_s": round(e.stream_time_s, 1), "class": e.emergency_class.key,
                        "confidence": round(e.confidence, 3), "pattern": e.pattern, "spoken": e.spoken} for e in events]
            progress.advance(task)
    report = HouseholdReport(label, str(folder), seconds / 3600, alarms, minutes, firing,
                             None if gate is None else counts.report(gate))
    console.print(f"{label} on {folder}: {len(alarms)} false alarms in {report.hours:.2f} h "
                  f"({report.per_hour:.2f} per hour); {firing} of {minutes} minutes fire")
    if report.gate is not None:
        console.print(f"behind the novelty gate: the model judged {report.gate['judged_share']:.1%} of the windows")
    for alarm in alarms[:20]:
        heard = f", {alarm['spoken']}" if alarm["spoken"] else ""
        console.print(f"  {alarm['file']} at {alarm['time_s']} s: {alarm['class']} ({alarm['confidence']}, pattern {alarm['pattern']}{heard})")
    return report


def predict_windows(classifier: Classifier, windows: list[Window]) -> tuple[np.ndarray, list[list[tuple[str, float]]]]:
    """The windows' class scores ``[windows, 9]`` and the AudioSet tags the inference service
    would send with each (its top ``top_tags``; none from a model without tags), judged in batches."""
    labels, top = classifier.tag_labels or (), InferenceSettings().top_tags
    scores: list[np.ndarray] = []
    tags: list[list[tuple[str, float]]] = []
    for lo in range(0, len(windows), 64):
        prediction = classifier.predict(torch.stack([w.features for w in windows[lo: lo + 64]]))
        scores.append(prediction.scores.numpy())
        if prediction.tags is None or not labels or not top:
            tags += [[] for _ in range(prediction.scores.shape[0])]
            continue
        values, ids = torch.topk(prediction.tags, top, dim=1)
        tags += [[(labels[int(j)], round(float(v), 4)) for v, j in zip(vs, js)] for vs, js in zip(values, ids)]
    # No windows (an empty file, as a stream without audio): nothing fires.
    return (np.concatenate(scores) if scores else np.zeros((0, NUM_CLASSES))), tags


def report_table(report: EvalReport) -> Table:
    patterns = "with" if report.alarm_patterns else "without"
    table = Table(title=f"{report.model} {patterns} alarm patterns: {report.metrics['clips']} clips")
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
