"""Choosing the default model's operating point against a household false-alarm budget.

A per-clip rule alone cannot see the tail that fires in a home (``../shared/data/operating-point.md``):
an hour of streaming holds 7,200 windows, a 4 s clip five. So each class's threshold is chosen
on two kinds of material at once, both kept apart from training and from the held-out figures:

- the calibration clips (half of the data build's validation sources): per class, the best F1
  for "the clip fires this class" among thresholds that fire on at most
  ``max_clip_false_alarm`` of the normal clips;
- household calibration audio (``hearo data household --part calibration``, hours of composed
  household sound): the threshold must lie above the class's highest smoothed score anywhere in
  it by ``household_margin`` in logit units. A few hours cannot show a rate of 0.1 per hour, so
  the rule asks for no firing with room to spare, not for a measured rate.

The detector's smoothing (a mean over ``smoothing_windows`` windows) is part of the operating
point and is stored with the thresholds; ``hop_s`` is the stream hop it assumes.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import soundfile as sf
import soxr
import torch
from rich.console import Console
from torch import nn

from services.inference.training.manifest import ManifestClip
from services.inference.training.metrics import detection_metrics
from shared.detector import Detector, DetectorConfig, clip_decision
from shared.features.spec import EFFICIENTAT_MEL
from shared.features.stream import clip_windows, end_padding
from shared.taxonomy import CLASSES, NUM_CLASSES

__all__ = [
    "THRESHOLD_GRID", "CalibrationBudget", "OperatingPoint", "calibrate", "clip_scores", "count_alarms", "household_clips", "household_files",
    "score_household", "score_windows", "stream_windows",
]

HOP_S = 0.5
HOUSEHOLD_SUFFIXES = (".wav", ".flac")
# Fine at both ends: zero-shot AudioSet evidence scores (docs/audioset-map.md) rarely reach
# 0.5, and a fine-tuned sigmoid head's household tail sits above 0.9.
THRESHOLD_GRID = np.round(
    np.concatenate([[0.02, 0.03, 0.04], np.arange(0.05, 0.95, 0.01), [0.95, 0.97, 0.98, 0.99, 0.995, 0.998]]), 3
)


@dataclass(frozen=True)
class CalibrationBudget:
    max_clip_false_alarm: float = 0.005  # per class, of the normal calibration clips
    household_margin: float = 1.0  # logit units above the household track's highest smoothed score
    smoothing_windows: int = 3


@dataclass(frozen=True)
class OperatingPoint:
    thresholds: dict[str, float]
    smoothing_windows: int
    hop_s: float = HOP_S
    notes: dict[str, Any] = field(default_factory=dict)

    def detector(self) -> DetectorConfig:
        return DetectorConfig(thresholds=self.thresholds, smoothing_windows=self.smoothing_windows, hop_s=self.hop_s)

    def evaluate(self, scores: Sequence[np.ndarray], targets: Sequence[int]) -> dict[str, Any]:
        """``detection_metrics`` of the clip decisions this operating point makes."""
        config = self.detector()
        predicted = torch.tensor([clip_decision(s, config)[0] for s in scores])
        return detection_metrics(torch.tensor(list(targets)), predicted)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def _smoothed(scores: np.ndarray, k: int) -> np.ndarray:
    """[W - k + 1, 9] moving means, or one row of zeros for fewer than ``k`` windows."""
    if len(scores) < k:
        return np.zeros((1, NUM_CLASSES))
    cumulative = np.cumsum(np.vstack([np.zeros((1, NUM_CLASSES)), scores]), axis=0)
    return (cumulative[k:] - cumulative[:-k]) / k


def _logit(p: float) -> float:
    p = min(max(p, 1e-6), 1 - 1e-6)
    return math.log(p / (1 - p))


def calibrate(
    clip_scores: Sequence[np.ndarray],
    targets: Sequence[int],
    household: Sequence[np.ndarray],
    budget: CalibrationBudget = CalibrationBudget(),
) -> OperatingPoint:
    """Per emergency class, the grid threshold with the best clip F1 that keeps both budgets
    (ties go to the higher threshold); when none does, the highest grid value, noted as
    ``deaf`` in ``notes``. ``clip_scores``: one [windows, 9] array per calibration clip;
    ``household``: one per household file."""
    k = budget.smoothing_windows
    peaks = np.stack([_smoothed(s, k).max(axis=0) for s in clip_scores])
    household_peak = np.max([_smoothed(s, k).max(axis=0) for s in household], axis=0) if household else np.zeros(NUM_CLASSES)
    labels = np.asarray(targets)
    normal = labels == 0
    thresholds: dict[str, float] = {}
    notes: dict[str, Any] = {"household_peak": {}, "calibration_f1": {}, "deaf": []}
    for c in CLASSES:
        if not c.is_emergency:
            continue
        floor = _logit(float(household_peak[c.id])) + budget.household_margin if household else -math.inf
        positive = labels == c.id
        best, best_t = -1.0, None
        for t in THRESHOLD_GRID:
            if _logit(float(t)) < floor:
                continue
            fired = peaks[:, c.id] >= t
            if normal.any() and fired[normal].mean() > budget.max_clip_false_alarm:
                continue
            tp = float(np.sum(fired & positive))
            f1 = 2 * tp / (fired.sum() + positive.sum()) if fired.sum() + positive.sum() else 0.0
            if f1 >= best:
                best, best_t = f1, float(t)
        if best_t is None:
            best_t = float(THRESHOLD_GRID[-1])
            notes["deaf"].append(c.key)
        thresholds[c.key] = best_t
        notes["household_peak"][c.key] = round(float(household_peak[c.id]), 4)
        notes["calibration_f1"][c.key] = round(float(max(best, 0.0)), 4)
    return OperatingPoint(thresholds, k, HOP_S, notes)


def count_alarms(scores: np.ndarray, config: DetectorConfig) -> int:
    """How many detections the gateway's detector makes on a stream that scored ``scores``."""
    detector = Detector(config)
    return sum(len(detector.update(row, 2.0 + i * config.hop_s)) for i, row in enumerate(np.asarray(scores, np.float64)))


@torch.inference_mode()
def score_windows(model: nn.Module, windows: torch.Tensor, batch: int = 128) -> np.ndarray:
    """The nine class probabilities of each window: [windows, 9]."""
    rows = [torch.sigmoid(model(windows[lo: lo + batch])[0]) for lo in range(0, len(windows), batch)]
    return torch.cat(rows).numpy() if rows else np.zeros((0, NUM_CLASSES), np.float32)


def stream_windows(audio: np.ndarray, rate: int, smoothing_windows: int) -> torch.Tensor:
    """The windows the gateway cuts from ``audio`` streamed and then stopped (its end padded by
    the one rule, ``end_padding``), at the model's rate."""
    hop_frames = EFFICIENTAT_MEL.frames_for(HOP_S)
    resampled = soxr.resample(audio, rate, EFFICIENTAT_MEL.sample_rate)
    padded = np.pad(resampled, end_padding(EFFICIENTAT_MEL, hop_frames, smoothing_windows, resampled.size))
    return clip_windows(EFFICIENTAT_MEL, padded, hop_frames)


def clip_scores(model: nn.Module, clips: Sequence[ManifestClip], rate: int = 16_000, smoothing_windows: int = 3) -> list[np.ndarray]:
    """Each clip padded and streamed as ``hearo eval`` does, scored: one [windows, 9] array each."""
    model.eval()
    return [score_windows(model, stream_windows(c.audio.astype(np.float32) / 32768, rate, smoothing_windows)) for c in clips]


def household_files(folder: Path) -> list[Path]:
    files = sorted(p for p in folder.rglob("*") if p.suffix.lower() in HOUSEHOLD_SUFFIXES)
    if not files:
        raise ValueError(f"{folder}: no household audio (.wav/.flac); make it with `hearo data household`")
    return files


def household_clips(folder: Path, rate: int, seconds: float) -> list[ManifestClip]:
    """Every household file cut into ``seconds``-long normal clips (int16 at ``rate``)."""
    clips = []
    for path in household_files(folder):
        audio, file_rate = sf.read(str(path), dtype="float32", always_2d=True)
        mono = audio.mean(axis=1)
        if file_rate != rate:
            mono = soxr.resample(mono, file_rate, rate)
        pcm = (np.clip(mono, -1.0, 32767 / 32768) * 32768).astype(np.int16)
        step = int(seconds * rate)
        clips += [ManifestClip(pcm[lo: lo + step], 0, 0.0, seconds, f"household:{path.name}", f"{path.name}@{lo / rate:.0f}s")
                  for lo in range(0, pcm.size - step + 1, step)]
    return clips


def score_household(model: nn.Module, folder: Path, console: Console | None = None) -> list[np.ndarray]:
    """Every household file streamed and scored, one [windows, 9] array per file."""
    model.eval()
    out = []
    for path in household_files(folder):
        audio, rate = sf.read(str(path), dtype="float32", always_2d=True)
        out.append(score_windows(model, stream_windows(audio.mean(axis=1), rate, 3)))
        if console is not None:
            console.print(f"household: {path.name} scored ({len(out[-1])} windows)")
    return out
